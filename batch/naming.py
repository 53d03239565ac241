"""What a folder run takes and where each result goes: inputs from files, folders and globs,
and one namer for the outputs of images and videos (never onto an input or another output)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from .imageio import FORMATS, IMAGE_SUFFIXES, WriteSettings, output_format
from .videofiles import VIDEO_SUFFIXES

INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)
# An output that would land on an input (same folder) is named NAME_restored(_N).
RESTORED_TAG = "_restored"
RESTORED_NAME = re.compile(rf".*{RESTORED_TAG}(_\d+)?")


def expand_inputs(patterns: list[str], output_folder: Path) -> tuple[list[Path], list[dict]]:
    """Files from files, folders and globs, in order, each once; and report entries for bad patterns.

    A folder that is also the output folder holds this tool's earlier outputs, named
    ``*_restored*``: they are not taken as inputs, so a rerun never restores them again.
    """
    files: list[Path] = []
    problems: list[dict] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
            if path.resolve() == output_folder.resolve():
                found = [p for p in found if not RESTORED_NAME.fullmatch(p.stem)]
            if not found:
                problems.append({"input": pattern, "error": f"folder {pattern} holds no images ({INPUT_SUFFIXES})"})
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                problems.append({"input": pattern, "error": f"{pattern} matches no file"})
        files += [file for file in found if file.resolve() not in {f.resolve() for f in files}]
    return files, problems


def unique_output(folder: Path, stem: str, suffix: str, taken: set[Path]) -> Path:
    """``folder/STEM SUFFIX``, or ``STEM_restored(_N)`` when that is taken; the chosen path is added to ``taken``
    (the inputs and the outputs chosen so far)."""
    candidate, number = folder / f"{stem}{suffix}", 0
    while candidate.resolve() in taken:
        number += 1
        candidate = folder / f"{stem}{RESTORED_TAG}{'' if number == 1 else f'_{number}'}{suffix}"
    taken.add(candidate.resolve())
    return candidate


def output_path(source: Path, folder: Path, settings: WriteSettings, taken: set[Path]) -> tuple[Path, str]:
    """Where an image's result goes, and its format (the input's unless ``settings`` names one)."""
    kind = output_format(source, settings)
    suffix = source.suffix if FORMATS[kind] == ".jpg" and source.suffix.lower() == ".jpeg" else FORMATS[kind]
    return unique_output(folder, source.stem, suffix, taken), kind


def video_destination(source: Path, folder: Path, taken: set[Path]) -> Path:
    """Where a restored clip goes: its own name and container."""
    return unique_output(folder, source.stem, source.suffix, taken)
