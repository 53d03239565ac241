"""Callers' image kinds at the pipeline's edge: PIL images in, and results back in the caller's kind.

A diffusers pipeline hands out PIL images (or a float numpy batch), a script holds uint8 or
uint16 arrays, ComfyUI a float tensor batch; the pipeline works on float (H, W, C) tensors in
[0, 1] (:func:`codeformer_nodes.pipeline.images.as_image_list`). Here PIL images become arrays
on the way in, and :func:`images_like` turns results back into what the caller gave. PIL is
never imported here: a PIL image can only exist once its caller imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Picture: TypeAlias = "torch.Tensor | np.ndarray | PILImage"
ImageInput: TypeAlias = "Picture | Sequence[Picture]"

# PIL modes whose pixels numpy reads as they are, and the mode each other mode is read in
# (given back in its own mode, or in ``RETURNED_MODE`` where its own cannot hold the result).
# Colour spaces other than RGB (CMYK, YCbCr, HSV, LAB) are refused: a round trip through RGB
# would move pixels that no face touched.
DIRECT_MODES = ("RGB", "RGBA", "L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
READ_AS = {"LA": "RGBA", "PA": "RGBA", "1": "L"}
RETURNED_MODE = {"1": "L", "PA": "RGBA"}  # P: RGB, or RGBA with transparency (see _read_mode)
# Integer dtypes read as levels, and their full scale.
INTEGER_LEVELS = {torch.uint8: 255.0, torch.uint16: 65535.0}


class ImageKindError(TypeError):
    """An image of a kind the pipeline cannot read, or results asked back in a kind they do not fit."""


def is_pil_image(value: object) -> bool:
    """Whether ``value`` is a PIL image (without importing PIL: one exists only once PIL is loaded)."""
    image_module = sys.modules.get("PIL.Image")
    return image_module is not None and isinstance(value, image_module.Image)


def pil_levels(image: PILImage, index: int) -> np.ndarray:
    """A PIL image's pixels as a new array: uint8 (H, W) or (H, W, 3 | 4) levels, uint16 (H, W) for
    16-bit modes (``I`` included, its values checked), float32 (H, W) for ``F``."""
    mode = _read_mode(image, index)
    pixels = np.array(image if mode == image.mode else image.convert(mode))
    if mode == "I":  # 32-bit integers: what 16-bit PNGs open as in older Pillow
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > INTEGER_LEVELS[torch.uint16]:
            raise ValueError(
                f"image {index} (PIL mode I) holds values {low}..{high}; it is read as 16-bit levels "
                f"(0..{INTEGER_LEVELS[torch.uint16]:.0f}), so scale it into that range (or to floats in [0, 1]) first"
            )
        pixels = pixels.astype(np.uint16)
    return pixels


def _read_mode(image: PILImage, index: int) -> str:
    if image.mode in DIRECT_MODES:
        return image.mode
    if image.mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    if image.mode in READ_AS:
        return READ_AS[image.mode]
    raise ImageKindError(
        f"image {index} has PIL mode {image.mode!r}, which is not read here (RGB, RGBA, L, LA, P, PA, 1, I;16, I, F); "
        "convert it first, e.g. image.convert('RGB')"
    )


def images_like(images: Sequence[torch.Tensor], like: ImageInput) -> Picture | list[Picture]:
    """Results (float (H, W, C) tensors in [0, 1]) in the kind of ``like``, the input they came from.

    PIL images come back in their own mode (alpha kept; ``1`` as ``L``, ``P`` as RGB or RGBA),
    arrays and tensors in their own dtype (uint8 / uint16 levels rounded; floats at the float32
    precision the pipeline computes in) and layout: a (B, H, W, C) batch as a batch, a list as a
    list, (H, W) grey as (H, W). Results are image-major (a sweep gives each input's outputs one
    after another), so each output takes the kind of its own input. A single image comes back as
    one image, or as a list when the run made several of it. A grey (H, W) array or one-channel
    PIL image that a colorization run made colour comes back in colour ((H, W, 3), RGB). New
    objects throughout: ``like`` is only read.
    """
    if isinstance(like, (torch.Tensor, np.ndarray)) and like.ndim == 4:
        converted = [_like_one(image, like[0]) for image in images]
        return np.stack(converted) if isinstance(like, np.ndarray) else torch.stack(converted)
    if isinstance(like, (torch.Tensor, np.ndarray)) or is_pil_image(like):
        converted = [_like_one(image, like) for image in images]
        return converted[0] if len(converted) == 1 else converted
    if not isinstance(like, Sequence) or isinstance(like, (str, bytes)):
        raise ImageKindError(f"like must be the images the results came from; got {type(like).__name__}")
    if not like or len(images) % len(like):
        raise ImageKindError(
            f"these {len(images)} result(s) did not come from the {len(like)} image(s) given as like: "
            "pass the same images the run was given"
        )
    per_input = len(images) // len(like)
    return [_like_one(image, like[index // per_input]) for index, image in enumerate(images)]


def _like_one(image: torch.Tensor, like: Picture) -> Picture:
    if is_pil_image(like):
        return _as_pil(image, like)
    if isinstance(like, np.ndarray):
        dtype = torch.from_numpy(np.empty(0, like.dtype.newbyteorder("="))).dtype
        return _as_levels(image, dtype, grey_2d=like.ndim == 2).numpy().astype(like.dtype, copy=False)
    if isinstance(like, torch.Tensor):
        return _as_levels(image, like.dtype, grey_2d=like.ndim == 2).to(like.device)
    raise ImageKindError(f"like holds a {type(like).__name__}; give the images, arrays or tensors the run was given")


def _as_levels(image: torch.Tensor, dtype: torch.dtype, grey_2d: bool = False) -> torch.Tensor:
    """Float (H, W, C) pixels as a new CPU tensor of ``dtype``: integer levels rounded, floats cast;
    (H, W) where the input was."""
    image = image.detach().cpu()
    if dtype in INTEGER_LEVELS:
        out = image.mul(INTEGER_LEVELS[dtype]).round_().to(dtype)
    elif dtype.is_floating_point:
        out = image.to(dtype, copy=True)
    else:
        raise ImageKindError(f"results cannot be given back as {dtype}: the input was uint8, uint16 or floats")
    return out[..., 0] if grey_2d and out.shape[2] == 1 else out


def _as_pil(image: torch.Tensor, like: PILImage) -> PILImage:
    from PIL import Image

    read_mode = _read_mode(like, 0)
    grey_in_colour = image.shape[2] != 1 and read_mode not in ("RGB", "RGBA")  # a colorized grey image
    if read_mode.startswith("I") and not grey_in_colour:
        levels = _as_levels(image, torch.uint16, grey_2d=True).numpy()
        if read_mode == "I":
            return Image.fromarray(levels.astype(np.int32))
        byte_order = {"I;16B": ">u2", "I;16N": "=u2"}.get(read_mode, "<u2")
        return Image.frombytes(read_mode, (levels.shape[1], levels.shape[0]), levels.astype(byte_order).tobytes())
    if read_mode == "F" and not grey_in_colour:
        return Image.fromarray(_as_levels(image, torch.float32, grey_2d=True).numpy())
    picture = Image.fromarray(_as_levels(image, torch.uint8, grey_2d=True).numpy())
    if grey_in_colour:
        return picture
    wanted = RETURNED_MODE.get(like.mode, read_mode if like.mode == "P" else like.mode)
    return picture if picture.mode == wanted else picture.convert(wanted)
