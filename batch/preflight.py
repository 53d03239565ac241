"""What a folder run settles before any work: the weights files it needs (found, fetched, or all
named at once when they cannot be had) and the upsamplers it loads once for every image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..models.auxiliary import DETECTOR_WEIGHTS, PARSENET_WEIGHTS, search_folders
from ..models.downloads import FETCH_COMMAND, MIRROR_VARIABLE, PinnedFile, locate, user_cache_dir
from ..models.errors import WeightsFileError
from ..models.official import FACE_RESTORER_NAMES
from ..models.upsamplers import REALESRGAN_X2PLUS
from ..pipeline import RestoreOptions
from ..pipeline.upsampling import load_upsampler


def missing_weights(model: str, options: RestoreOptions, upsampler: str | None, weights_dir: Path | None) -> str | None:
    """Every file of the official releases this run needs, found or fetched before anything loads; where
    some can be had neither way, one message naming them all and the one command that fetches them."""
    needed: list[tuple[PinnedFile, list[Path]]] = []
    if model in FACE_RESTORER_NAMES and not Path(model).exists():
        needed.append((FACE_RESTORER_NAMES[model], [user_cache_dir()]))
    helpers = search_folders(weights_dir)
    if not options.has_aligned and isinstance(options.detector, str):
        needed.append((DETECTOR_WEIGHTS[options.detector].file, helpers))
        if options.uses_parse_mask:
            needed.append((PARSENET_WEIGHTS.file, helpers))
    if upsampler == REALESRGAN_X2PLUS.name and not Path(REALESRGAN_X2PLUS.name).is_file():
        needed.append((REALESRGAN_X2PLUS, helpers))
    missing = []
    for file, folders in needed:
        try:
            locate(file, folders)
        except WeightsFileError as error:
            missing.append((file, folders, error))
    if not missing:
        return None
    listed = "; ".join(f"{file.name} (looked in {', '.join(map(str, folders))})" for file, folders, _ in missing)
    reason = str(missing[0][2].__cause__ or missing[0][2])
    command = f"{FETCH_COMMAND} {' '.join(file.name for file, _, _ in missing)}"
    return (
        f"{len(missing)} weights file(s) missing and not downloadable here ({reason}): {listed}. On a machine "
        f"with internet run `{command}` (add --dir DIR for another folder) and copy the files into one of those "
        f"folders, or set {MIRROR_VARIABLE} to a mirror you can reach."
    )


def with_upsampler(
    options: RestoreOptions, source: str | None, *, background: bool, faces: bool, tile: int, device: torch.device,
    weights_dir: Path | None,
) -> RestoreOptions:  # fmt: skip
    """``options`` with the upsampler of ``source`` loaded once on ``device``, for the background, the
    faces or both; as they are without a source."""
    if source is None:
        return options
    upsampler = load_upsampler(source, device, tile=tile, weights_dir=weights_dir)
    return dataclasses.replace(
        options, upscaler=upsampler if background else None, face_upsampler=upsampler if faces else None
    )
