"""Pasting restored 512x512 crops back into their images with a soft mask.

Torch on the restored crops' device (the network's): one implementation for CPUs and GPUs.
Work is confined to each face's own region, so pixels outside every pasted face come back
bit for bit, the cost follows face area rather than image area, and only the regions
travel between the image (in host memory) and the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import Region, paste_affine, paste_region, source_positions, square_paste_mask, warp_from_crop
from .images import luma
from .options import MAX_OUTPUT_PIXELS, RestoreOptions
from .results import FaceInfo, RestoreResult


def paste_faces(
    pictures: list[torch.Tensor], faces: list[FaceInfo], restored: torch.Tensor, options: RestoreOptions
) -> RestoreResult:
    """Paste restored 512x512 crops into their images with the soft face mask.

    ``restored`` is float (N, 512, 512, 3) in [0, 1], one crop per entry of ``faces``, on any
    device; the paste runs there. Within an image, faces are pasted in ``detection_rank``
    order, as the official flow pastes them (the detector's order, highest score first):
    where faces overlap, the lower-scored face lies on top. The result lists faces in the
    order given; its images and masks are on the CPU.
    """
    if restored.shape[0] != len(faces):
        raise ValueError(f"{restored.shape[0]} restored crops for {len(faces)} faces; give one crop per face")
    paste_order = sorted(range(len(faces)), key=lambda i: (faces[i].image_index, faces[i].detection_rank))
    images, masks = [], []
    for index, picture in enumerate(pictures):
        canvas = _background(picture, options)
        mask = torch.zeros(canvas.shape[:2])
        for face_index in paste_order:
            face = faces[face_index]
            if face.image_index == index:
                _paste_one(canvas, mask, face, restored[face_index].float(), options)
        images.append(canvas)
        masks.append(mask)
    counts = [sum(face.image_index == i for face in faces) for i in range(len(pictures))]
    return RestoreResult(images=images, masks=masks, faces=faces, faces_per_image=counts)


@dataclass(frozen=True)
class FaceLayer:
    """What one face puts into its image: ``pixels`` (h, w, C) over ``region``, with weight ``mask``
    (h, w; the soft mask, visibility included)."""

    region: Region
    pixels: torch.Tensor
    mask: torch.Tensor


def face_layer(face: FaceInfo, crop: torch.Tensor, shape: tuple[int, ...], options: RestoreOptions) -> FaceLayer | None:
    """The layer of a restored (512, 512, 3) crop in an image of ``shape`` (H, W, C); None off the image."""
    inverse = paste_affine(np.array(face.affine), options.upscale)
    region = paste_region(inverse, shape[0], shape[1])
    if region.bottom <= region.top or region.right <= region.left:
        return None
    source = source_positions(inverse, region, crop.device)
    warped = warp_from_crop(crop.permute(2, 0, 1), source).permute(1, 2, 0)
    if options.parse_mask:
        from .parsing import parse_paste_mask

        soft = parse_paste_mask(crop, source, options.weights_dir)
        pixels = warped
    else:
        coverage, soft = square_paste_mask(source, options.upscale)
        pixels = coverage[..., None] * warped
    channels = min(shape[2], 3)
    if face.grey or channels == 1:
        pixels = luma(pixels).expand(-1, -1, channels)
    return FaceLayer(region, pixels, soft * options.visibility)


def face_mask(face: FaceInfo, shape: tuple[int, ...], options: RestoreOptions) -> tuple[Region, torch.Tensor] | None:
    """The region and soft mask a face is pasted through, without its pixels (the square mask only)."""
    inverse = paste_affine(np.array(face.affine), options.upscale)
    region = paste_region(inverse, shape[0], shape[1])
    if region.bottom <= region.top or region.right <= region.left:
        return None
    _, soft = square_paste_mask(source_positions(inverse, region, torch.device("cpu")), options.upscale)
    return region, soft * options.visibility


def _paste_one(
    canvas: torch.Tensor, mask: torch.Tensor, face: FaceInfo, crop: torch.Tensor, options: RestoreOptions
) -> None:
    """Blend one (512, 512, 3) crop into ``canvas`` (H, W, C) and add its soft mask to ``mask``, in place."""
    layer = face_layer(face, crop, tuple(canvas.shape), options)
    if layer is None:
        return
    rows, cols = layer.region.slices
    channels = layer.pixels.shape[2]
    background = canvas[rows, cols, :channels].to(crop.device)
    weight = layer.mask[..., None]
    blended = torch.where(weight > 0, weight * layer.pixels + (1 - weight) * background, background)
    canvas[rows, cols, :channels] = blended.to(canvas.device)
    covered = mask[rows, cols].to(crop.device)
    mask[rows, cols] = (1 - (1 - covered) * (1 - layer.mask)).to(mask.device)


def check_output_size(picture: torch.Tensor, upscale: int) -> None:
    """Refuse, before any work, an output larger than the pixel budget."""
    height, width = picture.shape[:2]
    if height * width * upscale * upscale > MAX_OUTPUT_PIXELS:
        raise ValueError(
            f"upscale {upscale} would make a {width * upscale}x{height * upscale} image, over the "
            f"{MAX_OUTPUT_PIXELS:,}-pixel budget; use a smaller upscale or a smaller input"
        )


def _background(picture: torch.Tensor, options: RestoreOptions) -> torch.Tensor:
    """The image to paste into: a copy of the input, enlarged when upscaling (on the CPU)."""
    height, width = picture.shape[:2]
    scale = options.upscale
    check_output_size(picture, scale)
    if scale == 1:
        return picture.clone()
    import cv2

    size = (width * scale, height * scale)
    if options.upscaler is None:
        enlarged = cv2.resize(picture.numpy(), size, interpolation=cv2.INTER_LANCZOS4).reshape(size[1], size[0], -1)
        return torch.from_numpy(enlarged).clamp(0, 1)
    colour = picture[..., :3] if picture.shape[2] >= 3 else picture.expand(-1, -1, 3)
    enlarged = options.upscaler(colour[None])[0].detach().to("cpu", torch.float32)
    if enlarged.shape[:2] != (size[1], size[0]):
        enlarged = torch.from_numpy(cv2.resize(enlarged.numpy(), size, interpolation=cv2.INTER_LANCZOS4))
    enlarged = enlarged.clamp(0, 1)
    if picture.shape[2] == 1:
        return luma(enlarged)
    if picture.shape[2] == 4:
        alpha = torch.from_numpy(cv2.resize(picture[..., 3].numpy(), size, interpolation=cv2.INTER_LANCZOS4))
        return torch.cat([enlarged, alpha.clamp(0, 1)[..., None]], dim=2)
    return enlarged
