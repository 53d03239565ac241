"""A folder run: images decoded ahead, restored in groups that fill a network chunk, written in
background threads; clips streamed; one report entry per input, appended as soon as it is taken up.

On a CPU, freed memory is kept for reuse until the run ends (``models.cpu_memory``): the scope is
entered once, here, for the whole run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.cpu_memory import keep_freed_cpu_memory
from ..pipeline import RestoreOptions, restore_faces
from ..pipeline.inference import device_of, faces_per_forward
from ..pipeline.video_options import VideoOptions
from .claims import claim, mark_skipped, release
from .formats import VIDEO_SUFFIXES
from .imageio import LoadedImage, WriteSettings, depth_warning, read_image, write_image
from .naming import earlier_outputs, kept_aside, output_path, record_output, video_destination
from .report import ReportEntry
from .videofiles import restore_video_file

# Images decoded ahead of the network, so it never waits on the disk.
PREFETCH = 2
VIDEO_NEEDS_PYAV = "video files need PyAV (pip install 'codeformer-nodes[video]')"


@dataclass
class Pending:
    """An image on its way through a group: its report entry, where it goes, and its decode."""

    entry: ReportEntry
    source: Path
    destination: Path
    kind: str
    decoded: Future[LoadedImage]


def run(
    files: list[Path], model: torch.nn.Module, options: RestoreOptions, folder: Path, settings: WriteSettings,
    skip_existing: bool, entries: list[ReportEntry] | None = None, video: VideoOptions | None = None,
    video_model: torch.nn.Module | None = None,
) -> list[ReportEntry]:  # fmt: skip
    """Restore each file; decoding and encoding happen in background threads.

    Video clips go through ``video_model`` (default ``model``): steady codes need CodeFormer's
    encode and decode, which an onnxruntime network does not split.

    On a CPU, freed memory is kept for reuse until the run ends (``models.cpu_memory``).
    Images go through the pipeline in groups as large as a network chunk, so that the
    faces of several images fill one forward (on a CPU the chunk, and so the group, is 1).
    Each image's report entry is appended to ``entries`` as soon as it is taken up, so a
    report can be written however the run ends. An image another run is restoring right
    now (see ``claims``) is left to it.
    """
    taken = {file.resolve() for file in files}
    entries = [] if entries is None else entries
    progress = Progress(len(files))
    clips = [file for file in files if file.suffix.lower() in VIDEO_SUFFIXES]
    files = [file for file in files if file not in clips]
    device = device_of(model)
    group_size = faces_per_forward(model, options)
    claimed: list[Path] = []
    earlier = earlier_outputs(folder)
    try:
        # one scope for the whole run: freed memory is kept from image to image, not given back after each
        with (
            keep_freed_cpu_memory(device),
            ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="codeformer-io") as pool,
        ):
            writes: list[tuple[ReportEntry, Future]] = []
            group: list[Pending] = []
            for source, decoded in prefetch(pool, files, ahead=max(PREFETCH, group_size)):
                destination, kind = output_path(source, folder, settings, taken, earlier)
                entry: ReportEntry = {"input": str(source), "output": str(destination)}
                note = kept_aside(destination, source, destination.suffix, earlier)
                if note is not None:
                    entry["note"] = note
                entries.append(entry)
                holder = claim(destination)
                if holder is None:
                    claimed.append(destination)
                if holder is not None or (skip_existing and destination.exists()):
                    progress.step(source, mark_skipped(entry, holder))
                    continue
                group.append(Pending(entry, source, destination, kind, decoded))
                if len(group) == group_size:
                    writes += restore_group(group, model, options, settings, pool, progress)
                    group = []
            writes += restore_group(group, model, options, settings, pool, progress)
            for clip in clips:
                destination = video_destination(clip, folder, taken, earlier)
                steady = video or VideoOptions()
                entries.append(restore_clip(clip, destination, video_model or model, options, steady, skip_existing))
                progress.step(clip, entries[-1])
            for entry, write in writes:
                try:
                    write.result()
                    record_output(Path(entry["output"]))
                except (OSError, ValueError) as error:
                    entry.update(error=f"could not write {entry['output']}: {error}", output=None)
    finally:
        for destination in claimed:
            release(destination)
        progress.close()
    return entries


def restore_clip(
    source: Path, destination: Path, model: torch.nn.Module, options: RestoreOptions, video: VideoOptions,
    skip_existing: bool,
) -> ReportEntry:  # fmt: skip
    """Restore one video file (frames streamed) and return its report entry."""
    entry: ReportEntry = {"input": str(source), "output": str(destination)}
    holder = claim(destination)
    try:
        if holder is not None or (skip_existing and destination.exists()):
            return mark_skipped(entry, holder)
        try:
            from av.error import FFmpegError
        except ImportError:
            return {**entry, "error": f"{VIDEO_NEEDS_PYAV} to restore {source.name}", "output": None}
        started = time.perf_counter()
        try:
            report = restore_video_file(source, destination, model, options, video)
        except (ValueError, OSError, FFmpegError, torch.OutOfMemoryError) as error:
            return {**entry, "error": str(error), "output": None}
        record_output(destination)
        entry.update(faces=[], frames=report.frames, faces_restored=report.faces, tracks=report.tracks)
        if report.warning is not None:
            entry["warning"] = report.warning
        return {**entry, "fps": report.fps, "seconds": round(time.perf_counter() - started, 3)}
    finally:
        if holder is None:
            release(destination)


def restore_group(
    group: list[Pending], model: torch.nn.Module, options: RestoreOptions, settings: WriteSettings,
    pool: ThreadPoolExecutor, progress: Progress,
) -> list[tuple[ReportEntry, Future]]:  # fmt: skip
    """Restore a group of images in one call and return the pending writes; each image is reported."""
    started = time.perf_counter()
    decoded: list[tuple[Pending, LoadedImage]] = []
    for item in group:
        try:
            decoded.append((item, item.decoded.result()))
        except (ValueError, OSError) as error:
            item.entry.update(error=str(error), output=None)
    writes = _restore_decoded(decoded, model, options, settings, pool)
    seconds = round((time.perf_counter() - started) / max(len(group), 1), 3)
    for item in group:
        item.entry["seconds"] = seconds
        progress.step(item.source, item.entry)
    return writes


def _restore_decoded(
    decoded: list[tuple[Pending, LoadedImage]], model: torch.nn.Module, options: RestoreOptions,
    settings: WriteSettings, pool: ThreadPoolExecutor,
) -> list[tuple[ReportEntry, Future]]:  # fmt: skip
    """One pipeline call for the group; if it fails, one call per image, so that a bad image fails alone."""
    if not decoded:
        return []
    try:
        result = restore_faces([image.pixels for _, image in decoded], model, options)
    except (ValueError, OSError, torch.OutOfMemoryError) as error:  # out of memory even one face at a time
        if len(decoded) > 1:
            return [write for one in decoded for write in _restore_decoded([one], model, options, settings, pool)]
        decoded[0][0].entry.update(error=str(error), output=None)
        return []
    writes = []
    for index, (item, image) in enumerate(decoded):
        faces = [dataclasses.replace(face, image_index=0) for face in result.faces if face.image_index == index]
        item.entry["faces"] = [face.to_dict() for face in faces]
        warnings = [f"{image.frames} frames (animated or multi-page): only the first was restored"] * (image.frames > 1)
        warnings += filter(None, [depth_warning(image, item.kind)])
        if warnings:
            item.entry["warning"] = "; ".join(warnings)
        write = pool.submit(write_image, result.images[index], item.destination, image, settings, item.kind)
        writes.append((item.entry, write))
    return writes


def prefetch(
    pool: ThreadPoolExecutor, files: list[Path], ahead: int = PREFETCH
) -> Iterator[tuple[Path, Future[LoadedImage]]]:
    """Yield (file, future decode) while the next ``ahead`` files are already being decoded.

    Only the few images in flight are held: a yielded decode is forgotten here.
    """
    pending = deque((file, pool.submit(read_image, file)) for file in files[:ahead])
    for upcoming in files[ahead:]:
        yield pending.popleft()
        pending.append((upcoming, pool.submit(read_image, upcoming)))
    while pending:
        yield pending.popleft()


class Progress:
    """A tqdm bar on a terminal; one quiet line per image otherwise (logs, CI)."""

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="image", file=sys.stderr)

    def step(self, source: Path, entry: ReportEntry) -> None:
        """One input done: the bar moves (a failure is also printed above it), or a line says how it went."""
        self.count += 1
        if entry.get("error"):
            state = f"error: {entry['error']}"
        else:
            state = "skipped" if entry.get("skipped") else f"{len(entry.get('faces', []))} face(s)"
        state += f" ({entry['warning']})" if entry.get("warning") else ""
        if self.bar is None:
            print(f"[{self.count}/{self.total}] {source.name}: {state}", file=sys.stderr)
            return
        if entry.get("error"):
            self.bar.write(f"{source.name}: {state}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
