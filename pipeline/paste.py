"""Pasting restored 512x512 crops back into their images with a soft mask.

Torch on the restored crops' device (the network's): one implementation for CPUs and GPUs.
Work is confined to each face's own region, so pixels outside every pasted face come back
bit for bit, the cost follows face area rather than image area, and only the regions
travel between the image (in host memory) and the device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, OptionError
from .flows import Flow, cv2_interpolation, working_scale
from .geometry import (
    FACE_SIZE,
    Region,
    affine_in_working_pixels,
    box_border,
    crop_face,
    paste_affine,
    paste_region,
    source_positions,
    square_paste_mask,
    warp_from_crop,
)
from .images import enlarged, luma, to_uint8_rgb
from .options import MAX_OUTPUT_PIXELS, RestoreOptions, Upscaler
from .results import FaceInfo, RestoreResult

# CodeFormer's grey conversion of restored faces (R, G, B) and its AdaIN's variance floor.
CODEFORMER_GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])
ADAIN_EPS = 1e-5
# --draw_box's colour.
BOX_RGB = (0.0, 1.0, 0.0)
# Pixels blended at once: a face several thousand pixels wide is blended in bands of rows this size,
# so the blend's temporaries stay at a few tens of MB whatever the face's size.
BLEND_BAND_PIXELS = 1 << 22


@dataclass(frozen=True)
class PasteSettings:
    """What pasting reads of a restore's options (see :class:`RestoreOptions`), with the face parser
    already loaded: made before the network runs, so no weights are read while faces are pasted."""

    flow: Flow
    upscale: int = 1
    visibility: float = 1.0
    keep_size: bool = True
    draw_box: bool = False
    upscaler: Upscaler | None = None
    face_upsampler: Upscaler | None = None
    parser: torch.nn.Module | None = None  # ParseNet, when faces are pasted through a parsed face mask

    @classmethod
    def of(cls, options: RestoreOptions, device: torch.device, faces: bool = True) -> PasteSettings:
        """The paste settings of ``options``, its parser (when it pastes ``faces`` through one) loaded on
        ``device``; with no face to paste, no parser is needed (nor its weights)."""
        from .parsing import load_parser

        if isinstance(options.upscaler, (str, Path)) or isinstance(options.face_upsampler, (str, Path)):
            raise OptionError("upscaler, face_upsampler: files must be loaded first (pipeline.restore.with_upsamplers)")
        return cls(
            flow=options.rules,
            upscale=options.upscale,
            visibility=options.visibility,
            keep_size=options.keep_size,
            draw_box=options.draw_box,
            upscaler=options.upscaler,
            face_upsampler=options.face_upsampler,
            parser=load_parser(device, options.weights_dir) if options.uses_parse_mask and faces else None,
        )


def paste_faces(
    pictures: list[torch.Tensor],
    faces: list[FaceInfo],
    restored: torch.Tensor,
    options: RestoreOptions | PasteSettings,
) -> RestoreResult:
    """Paste restored 512x512 crops into their images with the soft face mask.

    ``restored`` is float (N, 512, 512, 3) in [0, 1], one crop per entry of ``faces``, on any
    device; the paste runs there. Within an image, faces are pasted in ``detection_rank``
    order, as the official flow pastes them (the detector's order, highest score first):
    where faces overlap, the lower-scored face lies on top. The result lists faces in the
    order given; its images and masks are on the CPU.

    Where the flow enlarges small images, the paste happens in the enlarged image, as that
    flow pastes, and ``keep_size`` brings the result back to the input's size.
    """
    check_restored_crops(restored, len(faces))
    options = options if isinstance(options, PasteSettings) else PasteSettings.of(options, restored.device)
    flow = options.flow
    paste_order = sorted(range(len(faces)), key=lambda i: (faces[i].image_index, faces[i].detection_rank))
    images, masks = [], []
    for index, picture in enumerate(pictures):
        scale = working_scale(picture.shape[0], picture.shape[1], flow)
        working = picture if scale == 1.0 else enlarged(picture, scale)
        canvas = _background(picture, working, options)
        enlarged_background = canvas.clone() if scale != 1.0 and options.keep_size else None
        mask = torch.zeros(canvas.shape[:2])
        borders = []
        rgb = input_levels(working, [faces[i] for i in paste_order if faces[i].image_index == index], options)
        for face_index in paste_order:
            face = faces[face_index]
            if face.image_index != index:
                continue
            face = dataclasses.replace(face, affine=affine_in_working_pixels(np.array(face.affine), scale))
            crop = prepared_face(face, restored[face_index], rgb, options)
            border = _paste_one(canvas, mask, face, crop, options)
            if border is not None:
                borders.append(border)
        for region, border in borders:  # drawn over every face, as the official --draw_box draws them
            _blend_colour(canvas, region, border, BOX_RGB)
        if enlarged_background is not None:
            canvas = _back_to_input_size(canvas, enlarged_background, picture, options)
            mask = _resized(mask[..., None], picture, options.upscale)[..., 0].clamp(0, 1)
        images.append(canvas)
        masks.append(mask)
    counts = [sum(face.image_index == i for face in faces) for i in range(len(pictures))]
    return RestoreResult(images=images, masks=masks, faces=faces, faces_per_image=counts)


def check_restored_crops(restored: object, face_count: int) -> None:
    """Refuse, before any paste, crops that are not ``face_count`` float (512, 512, 3) crops in [0, 1]: a
    uint8 crop, a 256x256 one or values such as 5, -3 or NaN would otherwise be pasted as they are."""
    if not isinstance(restored, torch.Tensor):
        raise InputError(f"restored crops must be a (N, 512, 512, 3) float tensor; got {type(restored).__name__}")
    if restored.ndim != 4 or tuple(restored.shape[1:]) != (FACE_SIZE, FACE_SIZE, 3):
        raise InputError(
            f"restored crops must be (N, {FACE_SIZE}, {FACE_SIZE}, 3), RGB crops as the restore returns them; got "
            f"{tuple(restored.shape)}: resize edited crops back to {FACE_SIZE}x{FACE_SIZE}"
        )
    if restored.shape[0] != face_count:
        raise InputError(f"{restored.shape[0]} restored crops for {face_count} faces; give one crop per face")
    if not restored.is_floating_point():
        raise InputError(f"restored crops must be floats in [0, 1]; got {restored.dtype} (levels: divide by 255)")
    bad = (~torch.isfinite(restored) | (restored < 0) | (restored > 1)).flatten(1).any(dim=1)
    if bool(bad.any()):
        numbers = bad.nonzero()[:, 0].tolist()
        raise InputError(
            f"restored crops {numbers} (of {face_count}) hold values outside [0, 1] or NaN; give floats in [0, 1] "
            "(clamp an edit that overshoots)"
        )


def input_levels(image: torch.Tensor, faces: list[FaceInfo], options: PasteSettings) -> np.ndarray | None:
    """``image``'s uint8 colour, once, where the flow gives some of its (grey) faces the input's colour."""
    needed = options.flow.grey_faces_take_input_colour and any(face.grey for face in faces)
    return to_uint8_rgb(image) if needed else None


def prepared_face(face: FaceInfo, crop: torch.Tensor, rgb: np.ndarray | None, options: PasteSettings) -> torch.Tensor:
    """A restored (512, 512, 3) crop as the flow pastes it: rounded to 8-bit levels, a grey image's face
    given the input crop's colour statistics, enlarged by the face upsampler. ``rgb`` is the uint8
    image ``face.affine`` maps (the flow's enlarged one, where it enlarges), from :func:`input_levels`."""
    flow = options.flow
    crop = crop.float()
    if flow.rounds_restored_faces:
        crop = crop.mul(255).round_().div_(255)
    if face.grey and flow.grey_faces_take_input_colour:
        crop = grey_like_input(crop, crop_face(rgb, np.array(face.affine)))
    if options.face_upsampler is not None:
        crop = upsampled_face(crop, options)
    return crop


def upsampled_face(crop: torch.Tensor, options: PasteSettings) -> torch.Tensor:
    """A restored (512, 512, 3) crop enlarged ``upscale`` times by the upsampler (resized, LANCZOS4,
    when the upsampler's own scale differs), as the official ``--face_upsample`` enlarges it."""
    import cv2

    enlarged = options.face_upsampler(crop[None].cpu())[0].to("cpu", torch.float32)
    size = FACE_SIZE * options.upscale
    if enlarged.shape[:2] != (size, size):
        resized = cv2.resize(enlarged.numpy(), (size, size), interpolation=cv2.INTER_LANCZOS4)
        enlarged = torch.from_numpy(resized).clamp(0, 1).mul(255).round().div(255)
    return enlarged.to(crop.device)


def grey_like_input(restored: torch.Tensor, input_crop: np.ndarray) -> torch.Tensor:
    """CodeFormer's grey faces: the restored (512, 512, 3) crop made grey (its own luma weights),
    then each channel given the mean and spread of the input crop's (uint8) channel."""
    levels = restored.detach().to("cpu", torch.float64).numpy() * 255
    grey = levels @ CODEFORMER_GREY_WEIGHTS
    style = input_crop.reshape(-1, 3).astype(np.float64)
    style_mean, style_std = style.mean(axis=0), np.sqrt(style.var(axis=0) + ADAIN_EPS)
    own_std = np.sqrt(grey.var() + ADAIN_EPS)
    coloured = (grey[..., None] - grey.mean()) / own_std * style_std + style_mean
    return torch.from_numpy(np.clip(coloured / 255, 0, 1)).to(restored.device, torch.float32)


@dataclass(frozen=True)
class FaceLayer:
    """What one face puts into its image: ``pixels`` (h, w, C) over ``region``, with weight ``mask``
    (h, w; the soft mask, visibility included), and with ``draw_box`` the weight of its border."""

    region: Region
    pixels: torch.Tensor
    mask: torch.Tensor
    border: torch.Tensor | None = None


def face_layer(face: FaceInfo, crop: torch.Tensor, shape: tuple[int, ...], options: PasteSettings) -> FaceLayer | None:
    """The layer of a restored (S, S, 3) crop in an image of ``shape`` (H, W, C); None off the image.
    S is 512, or 512 * upscale for a face enlarged by the upsampler."""
    flow = options.flow
    size = crop.shape[0]
    inverse = paste_affine(np.array(face.affine), options.upscale, face_upsampled=size != FACE_SIZE)
    region = paste_region(inverse, shape[0], shape[1], size)
    if region.bottom <= region.top or region.right <= region.left:
        return None
    source = source_positions(inverse, region, crop.device)
    coverage, soft = square_paste_mask(source, options.upscale, size)  # before the warp: its peak holds no pixels
    masked_square = True
    if options.parser is not None:
        from .parsing import parse_paste_mask

        parsed = parse_paste_mask(options.parser, crop, source)
        if flow.parse_within_square:
            soft = torch.minimum(parsed, soft)
        else:
            soft, masked_square = parsed, False
    warped = warp_from_crop(crop.permute(2, 0, 1), source).permute(1, 2, 0)
    pixels = warped.mul_(coverage[..., None]) if masked_square else warped  # in place: no second face-sized copy
    channels = min(shape[2], 3)
    if channels == 1 or (face.grey and not flow.grey_faces_take_input_colour):
        pixels = luma(pixels).expand(-1, -1, channels)
    border = box_border(source, coverage, size) if options.draw_box else None
    return FaceLayer(region, pixels, soft * options.visibility, border)


def face_mask(
    face: FaceInfo, shape: tuple[int, ...], upscale: int, visibility: float
) -> tuple[Region, torch.Tensor] | None:
    """The region and soft mask a face is pasted through, without its pixels (the square mask only)."""
    inverse = paste_affine(np.array(face.affine), upscale)
    region = paste_region(inverse, shape[0], shape[1])
    if region.bottom <= region.top or region.right <= region.left:
        return None
    _, soft = square_paste_mask(source_positions(inverse, region, torch.device("cpu")), upscale)
    return region, soft * visibility


def _paste_one(
    canvas: torch.Tensor, mask: torch.Tensor, face: FaceInfo, crop: torch.Tensor, options: PasteSettings
) -> tuple[Region, torch.Tensor] | None:
    """Blend one (512, 512, 3) crop into ``canvas`` (H, W, C) and add its soft mask to ``mask``, in place;
    returns the face's border to draw, if any."""
    layer = face_layer(face, crop, tuple(canvas.shape), options)
    if layer is None:
        return None
    region = layer.region
    channels = layer.pixels.shape[2]
    band = max(BLEND_BAND_PIXELS // (region.right - region.left), 1)
    for start in range(0, region.bottom - region.top, band):  # in bands of rows: temporaries stay small
        local = slice(start, start + band)
        rows, cols = slice(region.top + start, min(region.top + start + band, region.bottom)), region.slices[1]
        background = canvas[rows, cols, :channels].to(crop.device)
        weight = layer.mask[local, :, None]
        blended = torch.where(weight > 0, weight * layer.pixels[local] + (1 - weight) * background, background)
        canvas[rows, cols, :channels] = blended.to(canvas.device)
        covered = mask[rows, cols].to(crop.device)
        mask[rows, cols] = (covered + layer.mask[local] * (1 - covered)).to(mask.device)  # keeps the faintest weights
    return None if layer.border is None else (layer.region, layer.border)


def _blend_colour(canvas: torch.Tensor, region: Region, weight: torch.Tensor, rgb: tuple[float, float, float]) -> None:
    """Blend ``rgb`` into ``canvas`` over ``region`` with ``weight`` (h, w), in place."""
    rows, cols = region.slices
    channels = min(canvas.shape[2], 3)
    colour = torch.tensor(rgb, dtype=canvas.dtype)
    colour = luma(colour) if channels == 1 else colour
    weight = weight.to(canvas.device, canvas.dtype)[..., None]
    canvas[rows, cols, :channels] = weight * colour + (1 - weight) * canvas[rows, cols, :channels]


def _back_to_input_size(
    canvas: torch.Tensor, background: torch.Tensor, picture: torch.Tensor, options: PasteSettings
) -> torch.Tensor:
    """A result pasted in the flow's enlarged image, at ``upscale`` times the input's size: what the
    paste changed, resized (INTER_LINEAR), added to the input's own background, so that pixels away
    from every face stay the input's. With an upsampler the whole result is resized instead."""
    if options.upscaler is not None:
        return _resized(canvas, picture, options.upscale).clamp(0, 1)
    change = _resized(canvas - background, picture, options.upscale)
    return (_background(picture, picture, options) + change).clamp(0, 1)


def _resized(image: torch.Tensor, picture: torch.Tensor, upscale: int) -> torch.Tensor:
    """An (h, w, C) result resized (INTER_LINEAR) to ``upscale`` times ``picture``'s size."""
    import cv2

    size = (picture.shape[1] * upscale, picture.shape[0] * upscale)
    resized = cv2.resize(image.numpy(), size, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized.reshape(size[1], size[0], image.shape[2]))


def check_output_size(picture: torch.Tensor, upscale: int) -> None:
    """Refuse, before any work, an output larger than the pixel budget."""
    height, width = picture.shape[:2]
    if height * width * upscale * upscale > MAX_OUTPUT_PIXELS:
        raise ValueError(
            f"upscale {upscale} would make a {width * upscale}x{height * upscale} image, over the "
            f"{MAX_OUTPUT_PIXELS:,}-pixel budget; use a smaller upscale or a smaller input"
        )


def _background(picture: torch.Tensor, working: torch.Tensor, options: PasteSettings) -> torch.Tensor:
    """The image to paste into: a copy of ``working`` (the input, or the input as the flow enlarged it),
    enlarged when upscaling (on the CPU). An upsampler enlarges the input itself, and its result is
    resized (LANCZOS4) to the canvas, as both helpers do."""
    height, width = working.shape[:2]
    scale = options.upscale
    check_output_size(working, scale)
    if scale == 1 and options.upscaler is None:
        return working.clone()
    import cv2

    size = (width * scale, height * scale)
    if options.upscaler is None:
        interpolation = cv2_interpolation(options.flow.background_interpolation)
        enlarged = cv2.resize(working.numpy(), size, interpolation=interpolation).reshape(size[1], size[0], -1)
        return torch.from_numpy(enlarged).clamp(0, 1)
    colour = picture[..., :3] if picture.shape[2] >= 3 else picture.expand(-1, -1, 3)
    enlarged = options.upscaler(colour[None])[0].detach().to("cpu", torch.float32)
    if enlarged.shape[:2] != (size[1], size[0]):
        enlarged = torch.from_numpy(cv2.resize(enlarged.numpy(), size, interpolation=cv2.INTER_LANCZOS4))
    enlarged = enlarged.clamp(0, 1)
    if working.shape[2] == 1:
        return luma(enlarged)
    if working.shape[2] == 4:
        alpha = torch.from_numpy(cv2.resize(working[..., 3].numpy(), size, interpolation=cv2.INTER_LANCZOS4))
        return torch.cat([enlarged, alpha.clamp(0, 1)[..., None]], dim=2)
    return enlarged
