"""Super-resolution networks for the background and face upsampling (the official ``--bg_upsampler``).

Any file spandrel recognises as a super-resolution model (ESRGAN, Real-ESRGAN, Compact,
...) loads, through the same safe reading as the CodeFormer weights (``read_state_dict``:
no pickle that would run code). ``RealESRGAN_x2plus.pth``, the official command's, is
fetched when first needed (Real-ESRGAN v0.2.1), pinned by size and SHA-256: the release page
gives none, these are the figures model lists and a distribution package agree on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .auxiliary import search_folders
from .downloads import PinnedFile, locate
from .errors import UnsupportedModelError

if TYPE_CHECKING:  # torch loads with a network: the pins are read by the console scripts' --help
    import torch

# The official command's settings for its upsampler (set_realesrgan): tiles of 400 pixels with 40 of context,
# no pre-pad.
DEFAULT_TILE = 400
DEFAULT_TILE_PAD = 40
DEFAULT_PRE_PAD = 0
SPANDREL_INSTALL = "pip install 'codeformer-nodes[upsample]'"


def _check_upsampler(path: Path) -> None:
    _descriptor(path)


REALESRGAN_X2PLUS = PinnedFile(
    "RealESRGAN_x2plus.pth",
    "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
    67_061_725,
    "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
    _check_upsampler,
)
UPSAMPLER_FILES = {REALESRGAN_X2PLUS.name: REALESRGAN_X2PLUS}


def load_upsampler_network(
    source: str | Path, device: torch.device | str = "cpu", weights_dir: str | Path | None = None
):
    """A super-resolution network (a spandrel ``ImageModelDescriptor``, in eval mode on ``device``) from
    a file, or from the bare name ``RealESRGAN_x2plus.pth`` (looked for in ``weights_dir`` and the
    per-user cache, fetched when missing)."""
    import torch

    path = Path(source).expanduser()
    if not path.exists() and str(source) in UPSAMPLER_FILES:
        path = locate(UPSAMPLER_FILES[str(source)], search_folders(weights_dir))
    return _descriptor(path).to(torch.device(device)).eval()


def _descriptor(path: Path):
    """The spandrel descriptor of a super-resolution file, or a named error saying what it is instead."""
    try:
        import spandrel
    except ImportError as error:
        raise ImportError(f"upsamplers load through spandrel, which is not installed: {SPANDREL_INSTALL}") from error
    from .checkpoint import read_state_dict

    state_dict = read_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as error:
        raise UnsupportedModelError(
            f"{path} is no upsampler that spandrel knows (ESRGAN, Real-ESRGAN, Compact, ...); "
            "give a super-resolution model such as RealESRGAN_x2plus.pth"
        ) from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose != "SR":
        raise UnsupportedModelError(
            f"{path} holds a {descriptor.architecture.name} model for {descriptor.purpose}, not super-resolution; "
            "give an upsampler such as RealESRGAN_x2plus.pth"
        )
    return descriptor
