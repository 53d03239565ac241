"""Find (and, when the network allows, download) the helper networks' weights.

The face detector (RetinaFace) and the face parser (ParseNet) come from facexlib's
releases. A file is looked for in the caller's folder (inside ComfyUI, the nodes give
``models/facedetection``), then in a per-user cache. A missing file is downloaded to
a temporary file, checked to load as the expected network, and only then moved into
place, so a half-written file never sits where the next run would trust it.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WeightsFileError
from .pickles import load_pickle_safely

DOWNLOAD_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class AuxiliaryWeights:
    """A helper network's weights: file name, official URL, identifying keys."""

    file_name: str
    url: str
    required_keys: tuple[str, ...]


_FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download"

DETECTOR_WEIGHTS = {
    "retinaface_resnet50": AuxiliaryWeights(
        "detection_Resnet50_Final.pth",
        f"{_FACEXLIB_RELEASES}/v0.1.0/detection_Resnet50_Final.pth",
        ("body.conv1.weight", "ClassHead.0.conv1x1.weight"),
    ),
    "retinaface_mobile0.25": AuxiliaryWeights(
        "detection_mobilenet0.25_Final.pth",
        f"{_FACEXLIB_RELEASES}/v0.1.0/detection_mobilenet0.25_Final.pth",
        ("body.stage1.0.0.weight", "ClassHead.0.conv1x1.weight"),
    ),
}

PARSENET_WEIGHTS = AuxiliaryWeights(
    "parsing_parsenet.pth",
    f"{_FACEXLIB_RELEASES}/v0.2.2/parsing_parsenet.pth",
    ("encoder.0.conv2d.weight",),
)


def user_cache_dir() -> Path:
    """Per-user cache folder for downloaded helper weights (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "codeformer_nodes"


def search_folders(explicit_dir: str | Path | None) -> list[Path]:
    return ([Path(explicit_dir)] if explicit_dir else []) + [user_cache_dir()]


def find_auxiliary_weights(
    weights: AuxiliaryWeights, explicit_dir: str | Path | None = None, download: bool = True
) -> Path:
    """Path of an existing weights file, downloading it into the first writable folder if needed."""
    folders = search_folders(explicit_dir)
    for folder in folders:
        if (folder / weights.file_name).is_file():
            return folder / weights.file_name
    searched = ", ".join(str(folder) for folder in folders)
    if not download:
        raise WeightsFileError(
            f"{weights.file_name} was not found (searched {searched}). Download {weights.url} into one of them."
        )
    target_folder = folders[0]
    try:
        return download_weights(weights, target_folder)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise WeightsFileError(
            f"{weights.file_name} was not found (searched {searched}) and could not be downloaded from "
            f"{weights.url} ({error}). Download it by hand into one of those folders."
        ) from error


def download_weights(weights: AuxiliaryWeights, folder: Path) -> Path:
    """Download to a temporary file in ``folder``, check it, then move it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=folder, prefix=f".{weights.file_name}.", suffix=".partial")
    temporary = Path(temporary_name)
    try:
        with (
            os.fdopen(handle, "wb") as file,
            urllib.request.urlopen(weights.url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,
        ):
            while chunk := response.read(1 << 20):
                file.write(chunk)
        check_auxiliary_weights(weights, temporary)
        destination = folder / weights.file_name
        os.replace(temporary, destination)
        return destination
    finally:
        temporary.unlink(missing_ok=True)


def check_auxiliary_weights(weights: AuxiliaryWeights, path: Path) -> dict[str, torch.Tensor]:
    """Load a helper network's state dict safely and check that it is the expected network."""
    state_dict = load_pickle_safely(path)
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    missing = [key for key in weights.required_keys if key not in state_dict]
    if missing:
        raise WeightsFileError(
            f"{path} does not hold the network {weights.file_name} should (missing {', '.join(missing)}); "
            f"download {weights.url} again."
        )
    return state_dict
