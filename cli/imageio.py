"""Reading and writing image files for the command line, with their metadata.

Reading applies EXIF orientation as ComfyUI's LoadImage does and keeps 8- and 16-bit
depth, grey, RGB and RGBA. Writing carries PNG text chunks (where ComfyUI keeps its
workflows), the ICC profile and EXIF (orientation reset to upright), and is atomic: a
temporary file in the destination folder is renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class LoadedImage:
    """Pixels as float (H, W, C) in [0, 1], C in {1, 3, 4}, and what the writer should carry over."""

    pixels: torch.Tensor
    text: dict[str, str] = field(default_factory=dict)
    icc_profile: bytes | None = None
    exif: bytes | None = None


@dataclass(frozen=True)
class WriteSettings:
    format: str | None = None  # png, jpeg or webp; None keeps the input's (PNG for others)
    jpeg_quality: int = 95
    jpeg_subsampling: str = "4:2:0"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def read_image(path: Path) -> LoadedImage:
    """Decode an image file; raises ``ValueError`` naming the file when it is not a usable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            pixels = _to_float(upright)
            exif = opened.getexif()
            if EXIF_ORIENTATION_TAG in exif:
                exif[EXIF_ORIENTATION_TAG] = 1
            return LoadedImage(
                pixels=pixels,
                text={k: v for k, v in opened.info.items() if isinstance(k, str) and isinstance(v, str)},
                icc_profile=opened.info.get("icc_profile"),
                exif=exif.tobytes() if len(exif) else None,
            )
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} could not be decoded as an image ({error})") from error


def _to_float(image) -> torch.Tensor:
    """8-bit and 16-bit, grey, RGB and RGBA to float (H, W, C)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
        return torch.from_numpy(np.clip(array, 0, 1)[..., None])
    if image.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array if array.ndim == 3 else array[..., None])


def output_format(source: Path, settings: WriteSettings) -> str:
    return settings.format or SUFFIX_FORMATS.get(source.suffix.lower(), "png")


def write_image(pixels: torch.Tensor, destination: Path, loaded: LoadedImage, settings: WriteSettings, kind: str):
    """Encode float (H, W, C) pixels as 8-bit ``kind`` (png/jpeg/webp) at ``destination``, atomically."""
    from PIL import Image, PngImagePlugin

    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    if kind == "jpeg" and image.mode == "RGBA":
        image = image.convert("RGB")
    options: dict[str, object] = {}
    if loaded.icc_profile:
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
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".partial")
    os.close(handle)
    try:
        image.save(temporary, format=kind.upper(), **options)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes files private; outputs are ordinary files
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)
