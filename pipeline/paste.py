"""Pasting restored 512x512 crops back into their images with a soft mask.

Work is confined to each face's own region, so pixels outside every pasted face come back
bit for bit and the cost follows face area, not image area.
"""

from __future__ import annotations

import numpy as np
import torch

from .geometry import paste_affine, paste_region, square_paste_mask, warp_to_region
from .images import luma
from .options import MAX_OUTPUT_PIXELS, RestoreOptions
from .results import FaceInfo, RestoreResult


def paste_faces(
    pictures: list[torch.Tensor], faces: list[FaceInfo], restored: torch.Tensor, options: RestoreOptions
) -> RestoreResult:
    """Paste restored 512x512 crops into their images with the soft face mask.

    ``restored`` is float (N, 512, 512, 3) in [0, 1], one crop per entry of ``faces``.
    Within an image, faces are pasted in ``detection_rank`` order, as the official flow
    pastes them (the detector's order, highest score first): where faces overlap, the
    lower-scored face lies on top. The result lists faces in the order given.
    """
    if restored.shape[0] != len(faces):
        raise ValueError(f"{restored.shape[0]} restored crops for {len(faces)} faces; give one crop per face")
    paste_order = sorted(range(len(faces)), key=lambda i: (faces[i].image_index, faces[i].detection_rank))
    images, masks = [], []
    for index, picture in enumerate(pictures):
        canvas = _background(picture, options)
        mask = np.zeros(canvas.shape[:2], np.float32)
        for face_index in paste_order:
            face = faces[face_index]
            if face.image_index == index:
                _paste_one(canvas, mask, face, restored[face_index].numpy().astype(np.float32), options)
        images.append(torch.from_numpy(canvas))
        masks.append(torch.from_numpy(mask))
    counts = [sum(face.image_index == i for face in faces) for i in range(len(pictures))]
    return RestoreResult(images=images, masks=masks, faces=faces, faces_per_image=counts)


def _paste_one(canvas: np.ndarray, mask: np.ndarray, face: FaceInfo, crop: np.ndarray, options: RestoreOptions) -> None:
    inverse = paste_affine(np.array(face.affine), options.upscale)
    region = paste_region(inverse, canvas.shape[0], canvas.shape[1])
    if region.bottom <= region.top or region.right <= region.left:
        return
    warped = warp_to_region(crop, inverse, region)
    if options.parse_mask:
        from .parsing import parse_paste_mask

        soft = parse_paste_mask(crop, inverse, region, options)
        pasted = warped
    else:
        coverage, soft = square_paste_mask(inverse, region, options.upscale)
        pasted = coverage[..., None] * warped
    soft = soft * np.float32(options.visibility)
    channels = min(canvas.shape[2], 3)
    if face.grey or channels == 1:
        pasted = luma(pasted)
        if channels == 3:
            pasted = np.repeat(pasted, 3, axis=2)
    rows, cols = region.slices
    background = canvas[rows, cols, :channels]
    weight = soft[..., None]
    blended = weight * pasted + (1 - weight) * background
    canvas[rows, cols, :channels] = np.where(weight > 0, blended, background)
    mask[rows, cols] = 1 - (1 - mask[rows, cols]) * (1 - soft)


def check_output_size(picture: torch.Tensor, upscale: int) -> None:
    """Refuse, before any work, an output larger than the pixel budget."""
    height, width = picture.shape[:2]
    if height * width * upscale * upscale > MAX_OUTPUT_PIXELS:
        raise ValueError(
            f"upscale {upscale} would make a {width * upscale}x{height * upscale} image, over the "
            f"{MAX_OUTPUT_PIXELS:,}-pixel budget; use a smaller upscale or a smaller input"
        )


def _background(picture: torch.Tensor, options: RestoreOptions) -> np.ndarray:
    """The image to paste into: a copy of the input, enlarged when upscaling."""
    height, width = picture.shape[:2]
    scale = options.upscale
    check_output_size(picture, scale)
    if scale == 1:
        return picture.numpy().copy()
    import cv2

    size = (width * scale, height * scale)
    if options.upscaler is None:
        return np.clip(cv2.resize(picture.numpy(), size, interpolation=cv2.INTER_LANCZOS4), 0, 1).reshape(
            size[1], size[0], -1
        )
    colour = picture[..., :3] if picture.shape[2] >= 3 else picture.expand(-1, -1, 3)
    enlarged = options.upscaler(colour[None])[0].detach().to("cpu", torch.float32).numpy()
    if enlarged.shape[:2] != (size[1], size[0]):
        enlarged = cv2.resize(enlarged, size, interpolation=cv2.INTER_LANCZOS4)
    enlarged = np.clip(enlarged, 0, 1)
    if picture.shape[2] == 1:
        return luma(enlarged)
    if picture.shape[2] == 4:
        alpha = cv2.resize(picture[..., 3].numpy(), size, interpolation=cv2.INTER_LANCZOS4)
        return np.concatenate([enlarged, np.clip(alpha, 0, 1)[..., None]], axis=2)
    return enlarged
