"""The helper networks' weights: the face detectors (RetinaFace) and the face parser (ParseNet).

They come from facexlib's releases, pinned by their published size and SHA-256. A file is
looked for in the caller's folder (inside ComfyUI, the nodes give ``models/facedetection``),
then in a per-user cache, and fetched into the first of them when missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .downloads import PinnedFile, ProgressCallback, locate, user_cache_dir
from .errors import WeightsFileError

if TYPE_CHECKING:  # torch loads when a file is read: the pins are read by the console scripts' --help
    import torch

_FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download"


@dataclass(frozen=True)
class AuxiliaryWeights:
    """A helper network's weights: the pinned file, and the keys that identify the network."""

    file: PinnedFile
    required_keys: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return self.file.name


def _helper(name: str, release: str, size: int, sha256: str, keys: tuple[str, ...]) -> AuxiliaryWeights:
    url = f"{_FACEXLIB_RELEASES}/{release}/{name}"
    return AuxiliaryWeights(PinnedFile(name, url, size, sha256, partial(_state_dict_with, keys, name, url)), keys)


def _state_dict_with(keys: tuple[str, ...], name: str, url: str, path: Path) -> dict[str, torch.Tensor]:
    """The file's state dict (``module.`` prefixes dropped), if it holds ``keys``; else a named error."""
    from .checkpoint import without_module_prefix
    from .pickles import load_pickle_safely

    loaded = load_pickle_safely(path)
    if not isinstance(loaded, Mapping):
        raise WeightsFileError(f"{path} holds {type(loaded).__name__}, not a state dict; download {url} again.")
    state_dict = without_module_prefix({str(key): value for key, value in loaded.items()})
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise WeightsFileError(
            f"{path} does not hold the network {name} should (missing {', '.join(missing)}); download {url} again."
        )
    return state_dict


DETECTOR_WEIGHTS = {
    "retinaface_resnet50": _helper(
        "detection_Resnet50_Final.pth", "v0.1.0", 109_497_761,
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        ("body.conv1.weight", "ClassHead.0.conv1x1.weight"),
    ),
    "retinaface_mobile0.25": _helper(
        "detection_mobilenet0.25_Final.pth", "v0.1.0", 1_789_735,
        "38ec7bb3c9cbfe2f40edabc05fab970a6d648747cbc534092be85d5eb9b37ed0",
        ("body.stage1.0.0.weight", "ClassHead.0.conv1x1.weight"),
    ),
}  # fmt: skip

PARSENET_WEIGHTS = _helper(
    "parsing_parsenet.pth", "v0.2.2", 85_331_193,
    "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
    ("encoder.0.conv2d.weight",),
)  # fmt: skip


def search_folders(explicit_dir: str | Path | None) -> list[Path]:
    """The caller's folder (``~`` expanded), then the per-user cache."""
    return ([Path(explicit_dir).expanduser()] if explicit_dir else []) + [user_cache_dir()]


def find_auxiliary_weights(
    weights: AuxiliaryWeights, explicit_dir: str | Path | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Path of the weights file, fetched (pinned) into the first folder searched if no folder has it."""
    return locate(weights.file, search_folders(explicit_dir), progress)


def check_auxiliary_weights(weights: AuxiliaryWeights, path: Path) -> dict[str, torch.Tensor]:
    """Load a helper network's state dict safely and check that it is the expected network."""
    return _state_dict_with(weights.required_keys, weights.file.name, weights.file.url, path)
