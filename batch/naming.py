"""What a folder run takes and where each result goes: inputs from files, folders and globs,
and one namer for the outputs of images and videos.

An output never lands on an input, on another output of the run, or on a file the user keeps
in the output folder: the per-user cache lists, per output folder, the files runs wrote there
(``outputs/<sha256 of the folder>.txt``, so the folder itself holds only what the user and the
runs put there), and only those are replaced by a later run; another file of the same name is
left alone and the output takes the next free ``NAME_restored(_N)``.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import re
from pathlib import Path

from ..models.downloads import user_cache_dir
from .formats import FORMATS, IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .imageio import WriteSettings, output_format

INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)
# An output that would land on an input (same folder) is named NAME_restored(_N).
RESTORED_TAG = "_restored"
RESTORED_NAME = re.compile(rf".*{RESTORED_TAG}(_\d+)?")
LOG = logging.getLogger("codeformer_nodes")


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


def output_list(folder: Path) -> Path:
    """Where the names of the files runs wrote into ``folder`` are kept."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()
    return user_cache_dir() / "outputs" / f"{key}.txt"


def earlier_outputs(folder: Path) -> frozenset[str]:
    """The names of the files runs have written into ``folder``."""
    try:
        return frozenset(output_list(folder).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return frozenset()


def record_output(destination: Path) -> None:
    """Add a written output to its folder's list (one appended line: runs in parallel do not mix theirs)."""
    listing = output_list(destination.parent)
    try:
        listing.parent.mkdir(parents=True, exist_ok=True)
        with listing.open("a", encoding="utf-8") as file:
            file.write(destination.name + "\n")
    except OSError as error:  # the output is written; a later run will take it for the user's and keep it
        LOG.warning("could not list %s among the outputs in %s (%s)", destination.name, listing, error)


def unique_output(
    folder: Path, stem: str, suffix: str, taken: set[Path], earlier: frozenset[str] | None = None
) -> Path:
    """``folder/STEM SUFFIX``, or ``STEM_restored(_N)`` when that is taken: by ``taken`` (the inputs and the
    outputs chosen so far, to which the chosen path is added) or by a file no run wrote (``earlier``: the
    folder's list, read when not given)."""
    earlier = earlier_outputs(folder) if earlier is None else earlier
    candidate, number = folder / f"{stem}{suffix}", 0
    while candidate.resolve() in taken or (candidate.name not in earlier and candidate.exists()):
        number += 1
        candidate = folder / f"{stem}{RESTORED_TAG}{'' if number == 1 else f'_{number}'}{suffix}"
    taken.add(candidate.resolve())
    return candidate


def output_path(
    source: Path, folder: Path, settings: WriteSettings, taken: set[Path], earlier: frozenset[str] | None = None
) -> tuple[Path, str]:
    """Where an image's result goes, and its format (the input's unless ``settings`` names one)."""
    kind = output_format(source, settings)
    suffix = source.suffix if FORMATS[kind] == ".jpg" and source.suffix.lower() == ".jpeg" else FORMATS[kind]
    return unique_output(folder, source.stem, suffix, taken, earlier), kind


def video_destination(source: Path, folder: Path, taken: set[Path], earlier: frozenset[str] | None = None) -> Path:
    """Where a restored clip goes: its own name and container."""
    return unique_output(folder, source.stem, source.suffix, taken, earlier)


def kept_aside(destination: Path, source: Path, suffix: str, earlier: frozenset[str]) -> str | None:
    """The report's note when ``destination`` took another name because the user's own file holds the natural one."""
    natural = destination.with_name(f"{source.stem}{suffix}")
    if natural == destination or natural.name in earlier or not natural.exists():
        return None
    if natural.resolve() == source.resolve():  # restored in place: the input keeps its name
        return None
    return f"{natural.name} exists and no run wrote it: it was left alone, the output is {destination.name}"
