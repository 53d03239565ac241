"""Image conversions at the pipeline's edge: caller layouts in, float (H, W, C) tensors out."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .conversion import INTEGER_LEVELS, ImageInput, is_pil_image, pil_levels
from .flows import Flow, grey_by_channel_variance

# Channels of an image may differ by this many 8-bit levels and it still counts as grey
# (JPEG chroma noise); grey inputs get grey faces back.
GREY_TOLERANCE_LEVELS = 10
GREY_SAMPLE_STEP = 16
# ITU-R BT.601 luma weights, as OpenCV's RGB-to-grey conversion uses.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def as_image_list(images: ImageInput) -> list[torch.Tensor]:
    """Float32 (H, W, C) tensors in [0, 1] on the CPU, C in {1, 3, 4}.

    Accepts a (B, H, W, C) batch (ComfyUI's IMAGE), one (H, W, C) or (H, W) image, or a list
    of them, as torch tensors or numpy arrays (floats in [0, 1], or uint8 / uint16 levels) or
    PIL images (any common mode: see :mod:`.conversion`; 16-bit modes as levels).
    Float values outside [0, 1] (an upscaler or a VAE can overshoot) are clamped; other
    integer types are refused, not guessed. In-range float CPU tensors come back as views of
    the caller's storage: the pipeline only reads them.
    """
    if isinstance(images, (torch.Tensor, np.ndarray)):
        items: Sequence[object] = list(images) if images.ndim == 4 else [images]
    elif is_pil_image(images):
        items = [images]
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        items = images
    else:
        raise TypeError(f"images must be a tensor, array or PIL image, or a list of them; got {_describe(images)}")
    return [as_float_image(item, index) for index, item in enumerate(items)]


def as_float_image(image: object, index: int, noun: str = "image") -> torch.Tensor:
    """One image as :func:`as_image_list` reads it; errors name it as ``noun`` ``index`` (e.g. "frame 7")."""
    if is_pil_image(image):
        image = pil_levels(image, index)
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image.astype(image.dtype.newbyteorder("=")) if image.dtype.byteorder == ">" else image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{noun} {index} must be a tensor, array or PIL image; got {_describe(image)}")
    tensor = image.detach()
    if tensor.dtype in INTEGER_LEVELS:
        tensor = tensor.to("cpu", torch.float32) / INTEGER_LEVELS[tensor.dtype]
    elif tensor.is_floating_point():
        tensor = tensor.to("cpu", torch.float32)
    else:
        raise TypeError(f"{noun} {index} has dtype {tensor.dtype}; give floats in [0, 1], or uint8 / uint16 levels")
    if tensor.ndim == 2:
        tensor = tensor[..., None]
    if tensor.ndim != 3 or tensor.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{noun} {index}: expected (H, W, C) with C 1, 3 or 4 channels; got shape {tuple(tensor.shape)}"
        )
    if min(tensor.shape[:2]) < 1:
        raise ValueError(f"{noun} {index} is empty: shape {tuple(tensor.shape)}")
    if image.dtype in INTEGER_LEVELS:  # levels over their maximum: finite and in [0, 1] already
        return tensor
    low, high = torch.aminmax(tensor)  # NaN comes out as NaN: no image-sized isfinite temporaries (3 GB at 12000^2)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"{noun} {index} holds NaN or infinite values; fix the node or file that produced it "
            "(a VAE decode in the wrong precision often does this)"
        )
    if low < 0 or high > 1:
        tensor = tensor.clamp(0, 1)
    return tensor


def _describe(value: object) -> str:
    """A value's type, with the fix for the mistakes callers make most."""
    name = type(value).__name__
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return f"a path ({name}); read the file first, e.g. codeformer_nodes.batch.imageio.read_image(path).pixels"
    return name


def to_uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 RGB for detection and cropping (grey replicated, alpha dropped)."""
    colour = image[..., :3] if image.shape[2] >= 3 else image[..., :1].expand(-1, -1, 3)
    return colour.clamp(0, 1).mul_(255).round_().to(torch.uint8).numpy()  # one new float image, not three


def enlarged(picture: torch.Tensor, scale: float) -> torch.Tensor:
    """A small (H, W, C) float image enlarged ``scale`` times as CodeFormer's flow enlarges it (sizes
    rounded from ``scale``): see :func:`resized_levels`."""
    return resized_levels(picture, scale=scale)


def resized_levels(picture: torch.Tensor, size: tuple[int, int] | None = None, scale: float = 1.0) -> torch.Tensor:
    """An (H, W, C) float image's 8-bit levels resized with INTER_LINEAR, as CodeFormer's command resizes
    the uint8 image it read, to ``size`` (width, height) or by ``scale``; float levels again."""
    import cv2

    levels = picture.clamp(0, 1).mul(255).round_().to(torch.uint8).numpy()
    resized = cv2.resize(levels, size or (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized.reshape(*resized.shape[:2], picture.shape[2])).float().div_(255)


def image_is_grey(picture: torch.Tensor, rgb: np.ndarray, flow: Flow) -> bool:
    """Whether the flow takes ``picture`` (and ``rgb``, its uint8 colour) for a grey image."""
    if flow.grey_rule == "channel-variance":
        return picture.shape[2] == 1 or grey_by_channel_variance(rgb)
    return is_grey(picture, rgb)


def is_grey(image: torch.Tensor, rgb: np.ndarray) -> bool:
    """Whether no pixel's channels differ by more than GREY_TOLERANCE_LEVELS; a colour image is
    usually told by a sparse grid of its pixels before the whole image is read."""
    if image.shape[2] == 1:
        return True
    if _channel_spread(rgb[::GREY_SAMPLE_STEP, ::GREY_SAMPLE_STEP]) > GREY_TOLERANCE_LEVELS:
        return False
    return _channel_spread(rgb) <= GREY_TOLERANCE_LEVELS


def _channel_spread(rgb: np.ndarray) -> int:
    """The largest difference between two channels of one pixel, in levels."""
    red, green, blue = (rgb[..., channel].astype(np.int16) for channel in range(3))
    return int(max(np.abs(red - green).max(), np.abs(green - blue).max(), np.abs(blue - red).max()))


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) float -> (..., 1) grey."""
    weights = torch.from_numpy(LUMA_WEIGHTS).to(rgb.device, rgb.dtype)
    return (rgb @ weights)[..., None]


def normalise(crops: torch.Tensor) -> torch.Tensor:
    """(N, 512, 512, 3) uint8 crops -> (N, 3, 512, 512) float32 ``(rgb / 255 - 0.5) / 0.5``, as the official flow."""
    return to_network_range((crops.permute(0, 3, 1, 2).double() / 255.0).float())


def to_network_range(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> [-1, 1], the range CodeFormer and ParseNet take their input in."""
    return (rgb - 0.5) / 0.5


def crops_as_float(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops as the float IMAGE layout callers get."""
    return torch.from_numpy(crops.astype(np.float32) / 255.0)
