"""Reading and writing image files for folder runs, with their metadata.

Reading applies EXIF orientation as ComfyUI's LoadImage does and keeps 8- and 16-bit
depth, 32-bit float (taken as [0, 1]), grey, RGB and RGBA; of an animated or multi-page
file, only the first frame is read, and the count is kept so the report can say so.
Writing carries PNG text chunks (where ComfyUI keeps its workflows), EXIF (orientation
reset to upright) and the ICC profile when it describes the written colour space (a CMYK
profile never rides on RGB pixels), and is atomic (``models.files``). A 16-bit input
written as PNG stays 16-bit (colour through OpenCV, which carries no metadata:
:func:`depth_warning` says so); JPEG and WebP hold 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.files import atomic_destination
from .formats import SUFFIX_FORMATS

EXIF_ORIENTATION_TAG = 0x0112
# The colour space an ICC profile describes (bytes 16-20 of its header), per written Pillow mode.
ICC_SPACES = {"RGB": b"RGB ", "RGBA": b"RGB ", "L": b"GRAY"}


@dataclass
class LoadedImage:
    """Pixels as float (H, W, C) in [0, 1], C in {1, 3, 4}, and what the writer should carry over."""

    pixels: torch.Tensor
    text: dict[str, str] = field(default_factory=dict)
    icc_profile: bytes | None = None
    exif: bytes | None = None
    frames: int = 1
    bits: int = 8  # per sample in the file: 8, or 16 (PNG and TIFF)


@dataclass(frozen=True)
class WriteSettings:
    format: str | None = None  # png, jpeg or webp; None keeps the input's (PNG for others)
    jpeg_quality: int = 95
    jpeg_subsampling: str = "4:2:0"


def read_image(path: Path) -> LoadedImage:
    """Decode an image file; raises ``ValueError`` naming the file when it is not a usable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as opened:
            deep = any(";16" in str(tile.args) for tile in opened.tile)  # Pillow reads 16-bit colour as 8-bit
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            pixels = _deep_colour(path) if deep and opened.mode in ("RGB", "RGBA") else _to_float(upright)
            exif = opened.getexif()
            if EXIF_ORIENTATION_TAG in exif:
                exif[EXIF_ORIENTATION_TAG] = 1
            return LoadedImage(
                pixels=pixels,
                text={k: v for k, v in opened.info.items() if isinstance(k, str) and isinstance(v, str)},
                icc_profile=opened.info.get("icc_profile"),
                exif=exif.tobytes() if len(exif) else None,
                frames=getattr(opened, "n_frames", 1),
                bits=16 if deep else 8,
            )
    # What Pillow's decoders raise on damaged files (TypeError and IndexError from TIFF and GIF headers).
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, TypeError, IndexError) as error:
        raise ValueError(f"{path} could not be decoded as an image ({error})") from error


def _deep_colour(path: Path) -> torch.Tensor:
    """16-bit colour samples, which OpenCV reads (BGR, BGRA) where Pillow would keep 8 bits of each."""
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        raise OSError("its 16-bit colour samples could not be read")
    order = [2, 1, 0, 3][: array.shape[2]]
    return torch.from_numpy(array[..., order].astype(np.float32) / 65535.0)


def _to_float(image) -> torch.Tensor:
    """8-bit and 16-bit, grey, RGB and RGBA to float (H, W, C)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
        return torch.from_numpy(np.clip(array, 0, 1)[..., None])
    if image.mode == "F":  # 32-bit float samples, as scientific and HDR tools write them in [0, 1]
        array = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(np.clip(np.nan_to_num(array), 0, 1)[..., None])
    if image.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array if array.ndim == 3 else array[..., None])


def output_format(source: Path, settings: WriteSettings) -> str:
    return settings.format or SUFFIX_FORMATS.get(source.suffix.lower(), "png")


def depth_warning(loaded: LoadedImage, kind: str) -> str | None:
    """What writing a 16-bit input as ``kind`` loses, for the report; None when nothing is lost."""
    if loaded.bits == 8:
        return None
    if kind != "png":
        return f"16-bit input written as 8-bit {kind.upper()} (it holds 8 bits); use --format png to keep 16"
    colour = loaded.pixels.shape[2] != 1
    return (
        "16-bit colour written through OpenCV: its PNG text, EXIF and ICC profile were not carried" if colour else None
    )


def write_image(pixels: torch.Tensor, destination: Path, loaded: LoadedImage, settings: WriteSettings, kind: str):
    """Encode float (H, W, C) pixels as ``kind`` (png/jpeg/webp) at ``destination``, atomically: 8 bits a
    sample, or 16 in a PNG of a 16-bit input."""
    from PIL import Image, PngImagePlugin

    if kind == "png" and loaded.bits == 16:
        _write_deep_png(pixels, destination, loaded)
        return
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    if kind == "jpeg" and image.mode == "RGBA":
        image = image.convert("RGB")
    options: dict[str, object] = {}
    if loaded.icc_profile and icc_colour_space(loaded.icc_profile) == ICC_SPACES.get(image.mode):
        options["icc_profile"] = loaded.icc_profile
    if loaded.exif:
        options["exif"] = loaded.exif
    if kind == "png":
        text = PngImagePlugin.PngInfo()
        for key, value in loaded.text.items():
            text.add_text(key, value)
        options["pnginfo"] = text
    elif kind == "jpeg":
        options.update(quality=settings.jpeg_quality, subsampling=settings.jpeg_subsampling)
    else:
        options.update(quality=settings.jpeg_quality)
    with atomic_destination(destination) as temporary:
        image.save(temporary, format=kind.upper(), **options)


def _write_deep_png(pixels: torch.Tensor, destination: Path, loaded: LoadedImage) -> None:
    """16-bit PNG: grey through Pillow (with the metadata), colour through OpenCV (Pillow writes no 16-bit RGB)."""
    from PIL import Image, PngImagePlugin

    array = (pixels.clamp(0, 1) * 65535).round().to(torch.int32).numpy().astype(np.uint16)
    with atomic_destination(destination) as temporary:
        if array.shape[2] == 1:
            text = PngImagePlugin.PngInfo()
            for key, value in loaded.text.items():
                text.add_text(key, value)
            Image.fromarray(array[..., 0]).save(temporary, format="PNG", pnginfo=text)
            return
        import cv2

        order = [2, 1, 0, 3][: array.shape[2]]
        encoded, data = cv2.imencode(".png", np.ascontiguousarray(array[..., order]))
        if not encoded:
            raise ValueError(f"OpenCV could not encode {destination} as a 16-bit PNG")
        temporary.write_bytes(data.tobytes())


def icc_colour_space(profile: bytes) -> bytes:
    """The data colour space an ICC profile's header names (b"RGB ", b"GRAY", b"CMYK", ...)."""
    return profile[16:20]
