"""``codeformer-restore``: restore the faces in image files, for unattended pipelines.

    codeformer-restore photos/ extra.jpg 'scans/*.png' -o restored/ --model codeformer.pth --report -

Progress goes to stderr (a bar on a terminal, lines otherwise); a JSON report goes to a
file or to stdout (``-``). A bad input is reported and skipped; the exit status is 0
only when every input succeeded. ``--export-workflow FILE`` writes the equivalent
ComfyUI API workflow instead of restoring.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..models import PRECISION_HELP, PRECISIONS, TASKS, CodeFormerWeightsError, load_codeformer
from ..models.auxiliary import DETECTOR_WEIGHTS, PARSENET_WEIGHTS, search_folders
from ..models.checkpoint import RESTORATION
from ..models.cpu_memory import keep_freed_cpu_memory
from ..models.downloads import FETCH_COMMAND, MIRROR_VARIABLE, PinnedFile, locate, user_cache_dir
from ..models.errors import WeightsFileError
from ..models.official import OFFICIAL_CHECKPOINTS, OFFICIAL_NAMES
from ..models.upsamplers import REALESRGAN_X2PLUS
from ..pipeline import FidelityRamp, RestoreOptions, restore_faces
from ..pipeline.detection import DEFAULT_DETECTION_SIZE, DEFAULT_DETECTOR, DETECTORS
from ..pipeline.flows import DEFAULT_FLOW, FLOW_NAMES
from ..pipeline.inference import auto_chunk_size, device_of
from ..pipeline.options import FACE_SELECTIONS, MAX_UPSCALE
from ..pipeline.tasks import resolve_task, task_adain
from ..pipeline.upsampling import DEFAULT_TILE, load_upsampler
from ..pipeline.video import VideoOptions
from .claims import claim, release
from .imageio import (
    FORMATS,
    IMAGE_SUFFIXES,
    PARTIAL_SUFFIX,
    LoadedImage,
    WriteSettings,
    output_format,
    read_image,
    remove_stale_partials,
    write_image,
)
from .onnx_backend import BACKENDS, onnxruntime_network
from .video import VIDEO_SUFFIXES, restore_video_file, video_destination, video_options_from
from .video import add_arguments as add_video_arguments
from .workflow import export_workflow

# Images decoded ahead of the network, so it never waits on the disk.
PREFETCH = 2
# An output that would land on an input (same folder) is named NAME_restored(_N).
RESTORED_TAG = "_restored"
RESTORED_NAME = re.compile(rf".*{RESTORED_TAG}(_\d+)?")
INTERRUPTED_STATUS = 130
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeformer-restore", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", type=Path, help="output folder")
    model_help = "CodeFormer weights (.pth or .safetensors); default: the official checkpoint of --task "
    model_help += "(codeformer.pth), fetched into the per-user cache when first needed"
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--task", choices=("auto", *TASKS), default="auto",
                        help="what the checkpoint does (auto: read from it); a mismatch is an error")  # fmt: skip
    parser.add_argument("--weights-dir", type=Path, help="folder with detector / parser weights")
    parser.add_argument("--flow", choices=FLOW_NAMES, default=DEFAULT_FLOW,
                        help="codeformer: as CodeFormer's inference_codeformer.py restores (default); facexlib: as "
                             "GFPGAN and AUTOMATIC1111 (facexlib's helper)")  # fmt: skip
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR)
    parser.add_argument("--detection-size", type=int, default=DEFAULT_DETECTION_SIZE, help="0: original size")
    parser.add_argument("--confidence", type=float, help="minimum detector score (default: the flow's, 0.8 or 0.97)")
    parser.add_argument("-w", "--fidelity", type=float, default=0.5, help="0 quality .. 1 fidelity")
    parser.add_argument("--ramp", type=float, nargs=4, metavar=("SMALL_W", "LARGE_W", "SMALL_SIZE", "LARGE_SIZE"),
                        help="fidelity by face size instead of one w")  # fmt: skip
    parser.add_argument("--visibility", type=float, default=1.0)
    parser.add_argument("--face-selection", choices=FACE_SELECTIONS, default="all")
    parser.add_argument("--face-indices", type=int, nargs="+", help="faces by index, left to right")
    parser.add_argument("--min-face-size", type=float, default=0.0)
    parser.add_argument("--max-face-size", type=float)
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("-s", "--upscale", type=int, default=2, choices=range(1, MAX_UPSCALE + 1),
                        help="output size factor (default 2, as the official command)")  # fmt: skip
    parser.add_argument("--keep-size", action="store_true",
                        help="small images (short side under 512), which the codeformer flow enlarges, come back "
                             "at their own size times --upscale instead of the official size")  # fmt: skip
    parser.add_argument("--has-aligned", action="store_true", help="inputs are aligned faces (512x512)")
    parser.add_argument(
        "--parse-mask",
        action=argparse.BooleanOptionalAction,
        help="paste through a ParseNet face mask (default: the flow's: codeformer on, facexlib off)",
    )
    parser.add_argument("--draw-box", action="store_true", help="draw a green border around each restored face")
    parser.add_argument(
        "--bg-upsampler",
        metavar="FILE",
        help="enlarge the background with this super-resolution model (any spandrel knows, e.g. "
        f"{REALESRGAN_X2PLUS.name}, fetched when missing; 'realesrgan' names that one)",
    )
    parser.add_argument(
        "--bg-tile",
        type=int,
        default=DEFAULT_TILE,
        help="tile size of the upsampler, input pixels (default %(default)s; 0: whole images)",
    )
    parser.add_argument("--face-upsample", action="store_true",
                        help="enlarge the restored faces with the upsampler too (the --bg-upsampler, else "
                             f"{REALESRGAN_X2PLUS.name})")  # fmt: skip
    parser.add_argument("--chunk-size", type=int, help="faces per network forward (default: by device, 1 on a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="onnxruntime: the float32 network exported once (cached, checked against torch) and "
                             "run by onnxruntime on the CPU, faster on CPUs without native bf16; images only, "
                             "videos stay on torch (needs the onnx extra)")  # fmt: skip
    parser.add_argument("--format", choices=sorted(FORMATS), help="output format (default: the input's)")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--jpeg-subsampling", choices=("4:4:4", "4:2:2", "4:2:0"), default="4:2:0")
    parser.add_argument("--skip-existing", action="store_true", help="leave outputs that exist (resume a run)")
    parser.add_argument("--report", help="write the JSON report to this file, or - for stdout")
    parser.add_argument("--export-workflow", type=Path, help="write the equivalent ComfyUI API workflow and exit")
    add_video_arguments(parser)
    from .ray_restore import add_arguments as add_ray_arguments  # Ray itself is imported only by a --ray run

    add_ray_arguments(parser)
    return parser


def options_from(args: argparse.Namespace) -> RestoreOptions:
    fidelity: float | FidelityRamp = FidelityRamp(*args.ramp) if args.ramp else args.fidelity
    return RestoreOptions(
        task=None if args.task == "auto" else args.task,
        fidelity=fidelity,
        visibility=args.visibility,
        detector=args.detector,
        detection_size=args.detection_size or None,
        confidence=args.confidence,
        flow=args.flow,
        face_selection=_face_selection(args),
        min_face_size=args.min_face_size,
        max_face_size=args.max_face_size,
        has_aligned=args.has_aligned,
        upscale=args.upscale,
        parse_mask=args.parse_mask,
        keep_size=args.keep_size,
        draw_box=args.draw_box,
        chunk_size=args.chunk_size,
        weights_dir=args.weights_dir,
    )


def fetch_weights_or_say_what_is_missing(model: str, options: RestoreOptions, args: argparse.Namespace) -> str | None:
    """Every file of the official releases this run needs, found or fetched before anything loads; where
    some can be had neither way, one message naming them all and the one command that fetches them."""
    needed: list[tuple[PinnedFile, list[Path]]] = []
    if model in OFFICIAL_NAMES and not Path(model).exists():
        needed.append((OFFICIAL_NAMES[model], [user_cache_dir()]))
    helpers = search_folders(args.weights_dir)
    if not options.has_aligned and isinstance(options.detector, str):
        needed.append((DETECTOR_WEIGHTS[options.detector].file, helpers))
        if options.uses_parse_mask:
            needed.append((PARSENET_WEIGHTS.file, helpers))
    if upsampler_source(args) == REALESRGAN_X2PLUS.name and not Path(REALESRGAN_X2PLUS.name).is_file():
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


def upsampler_source(args: argparse.Namespace) -> str | None:
    """The upsampler file of --bg-upsampler / --face-upsample: the one given, or the official one
    (``realesrgan``, or faces enlarged without a background upsampler); None without either."""
    if args.bg_upsampler is None and not args.face_upsample:
        return None
    return REALESRGAN_X2PLUS.name if args.bg_upsampler in (None, "realesrgan") else args.bg_upsampler


def with_upsampler_files(options: RestoreOptions, args: argparse.Namespace, device: torch.device) -> RestoreOptions:
    """The background and face upsamplers of --bg-upsampler / --face-upsample, loaded once on ``device``."""
    source = upsampler_source(args)
    if source is None:
        return options
    upsampler = load_upsampler(source, device, tile=args.bg_tile, weights_dir=args.weights_dir)
    return dataclasses.replace(
        options,
        upscaler=upsampler if args.bg_upsampler is not None else None,
        face_upsampler=upsampler if args.face_upsample else None,
    )


def _face_selection(args: argparse.Namespace) -> str | tuple[int, ...]:
    """One choice of faces from --face-selection, --face-indices and --only-center-face; two are refused."""
    chosen = [name for name, given in (("--face-indices", bool(args.face_indices)),
              ("--only-center-face", args.only_center_face), ("--face-selection", args.face_selection != "all"))
              if given]  # fmt: skip
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)} both choose faces; give one of them")
    if args.face_indices:
        return tuple(args.face_indices)
    return "center" if args.only_center_face else args.face_selection


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


def output_path(source: Path, folder: Path, settings: WriteSettings, taken: set[Path]) -> tuple[Path, str]:
    """Where a result goes: never onto an input or onto another output of this run.

    ``taken`` holds the inputs and the outputs chosen so far; the chosen path is added.
    """
    kind = output_format(source, settings)
    suffix = source.suffix if FORMATS[kind] == ".jpg" and source.suffix.lower() == ".jpeg" else FORMATS[kind]
    candidate = folder / f"{source.stem}{suffix}"
    number = 0
    while candidate.resolve() in taken:
        number += 1
        candidate = folder / f"{source.stem}{RESTORED_TAG}{'' if number == 1 else f'_{number}'}{suffix}"
    taken.add(candidate.resolve())
    return candidate, kind


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
        video = video_options_from(args)
    except ValueError as error:
        parser.error(str(error))
    if args.export_workflow:
        model_name = Path(args.model).name if args.model else OFFICIAL_CHECKPOINTS[options.task or RESTORATION].name
        workflow = export_workflow(options, model_name, args.precision, "example.png")
        args.export_workflow.write_text(json.dumps(workflow, indent=2) + "\n")
        print(f"wrote {args.export_workflow}", file=sys.stderr)
        return 0
    if args.ray is not None:  # the same run, restored by a Ray cluster's workers
        from .ray_restore import main as ray_main

        return ray_main(args, options, sys.argv[1:] if argv is None else argv, parser)
    if not args.inputs or args.output is None:
        parser.error("give INPUT... and -o OUTDIR (or --export-workflow FILE)")
    weights = args.model or OFFICIAL_CHECKPOINTS[options.task or RESTORATION].name
    missing = fetch_weights_or_say_what_is_missing(weights, options, args)
    if missing is not None:
        print(f"codeformer-restore: {missing}", file=sys.stderr)
        report_file = report_path(args)
        if report_file is not False:
            write_report(args.report, report_file, [], 0.0, cut=True, error=missing)
        return 2
    try:
        device = torch.device(args.device)
        onnx = args.backend == "onnxruntime"
        model = load_codeformer(weights, device=device, precision="fp32" if onnx and args.precision == "auto" else
                                args.precision)  # fmt: skip
        task = resolve_task(model, options)
        options = with_upsampler_files(options, args, device)
        if onnx:
            images_model = onnxruntime_network(model, task_adain(task, options.adain))
    except (CodeFormerWeightsError, ValueError, RuntimeError, AssertionError, ImportError) as error:
        print(f"codeformer-restore: {error}", file=sys.stderr)  # bad weights or device, absent onnx extra, ...
        return 2
    settings = WriteSettings(args.format, args.jpeg_quality, args.jpeg_subsampling)
    files, entries = expand_inputs(args.inputs, args.output)
    network = images_model if onnx else model
    return execute(
        args,
        entries,
        lambda: run(files, network, options, args.output, settings, args.skip_existing, entries, video, model),
    )


def execute(args: argparse.Namespace, entries: list[dict], work: Callable[[], object]) -> int:
    """Run ``work`` (which fills ``entries``), write the report however it ends and sum up; the exit status."""
    report_file = report_path(args)
    if report_file is False:
        return 2
    for stale in remove_stale_partials(args.output):
        print(f"codeformer-restore: removed {stale.name}, left by a run that was killed", file=sys.stderr)
    started = time.perf_counter()
    interrupted = completed = False
    try:
        work()
        completed = True
    except KeyboardInterrupt:
        interrupted = True
    finally:  # the report is written however the run ends
        elapsed = time.perf_counter() - started
        write_report(args.report, report_file, entries, elapsed, cut=not completed)
    failed = [entry for entry in entries if entry.get("error")]
    faces = sum(len(entry.get("faces", [])) for entry in entries)
    done = len([entry for entry in entries if "faces" in entry and not entry.get("error")])
    print(
        f"codeformer-restore: {done} image(s) restored, {len(failed)} failed, {faces} face(s) in {elapsed:.1f} s "
        f"({done / elapsed if elapsed else 0:.2f} images/s, {faces / elapsed if elapsed else 0:.2f} faces/s)"
        + (" - interrupted" if interrupted else ""),
        file=sys.stderr,
    )
    if interrupted:
        return INTERRUPTED_STATUS
    return 1 if failed else 0


def report_path(args: argparse.Namespace) -> Path | None | Literal[False]:
    """The report file (its folder made), None for stdout or no report; False, said on stderr, when the
    folder cannot be made."""
    if args.report in (None, "-"):
        return None
    report_file = Path(args.report)
    try:
        report_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"codeformer-restore: cannot write the report {report_file}: {error}", file=sys.stderr)
        return False
    return report_file


def write_report(
    target: str | None, file: Path | None, entries: list[dict], seconds: float, cut: bool, error: str | None = None
) -> None:
    """The JSON report to stdout (``-``) or atomically to ``file``; its ``interrupted`` says when it is partial,
    its ``error`` why a run could not start."""
    if target is None:
        return
    fields = {"images": entries, "seconds": round(seconds, 3), "interrupted": cut}
    report = json.dumps({**fields, "error": error} if error else fields, indent=2) + "\n"
    if file is None:
        print(report, end="")
        return
    temporary = file.with_name(f".{file.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    temporary.write_text(report)
    os.replace(temporary, file)


@dataclass
class Pending:
    """An image on its way through a group: its report entry, where it goes, and its decode."""

    entry: dict
    source: Path
    destination: Path
    kind: str
    decoded: Future[LoadedImage]


def run(
    files: list[Path], model: torch.nn.Module, options: RestoreOptions, folder: Path, settings: WriteSettings,
    skip_existing: bool, entries: list[dict] | None = None, video: VideoOptions | None = None,
    video_model: torch.nn.Module | None = None,
) -> list[dict]:  # fmt: skip
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
    group_size = options.chunk_size or auto_chunk_size(device)
    claimed: list[Path] = []
    try:
        # one scope for the whole run: freed memory is kept from image to image, not given back after each
        with (
            keep_freed_cpu_memory(device),
            ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="codeformer-io") as pool,
        ):
            writes: list[tuple[dict, Future]] = []
            group: list[Pending] = []
            for source, decoded in prefetch(pool, files, ahead=max(PREFETCH, group_size)):
                destination, kind = output_path(source, folder, settings, taken)
                entry: dict = {"input": str(source), "output": str(destination)}
                entries.append(entry)
                holder = claim(destination)
                if holder is None:
                    claimed.append(destination)
                if holder is not None or (skip_existing and destination.exists()):
                    note = {} if holder is None else {"note": f"another run (process {holder}) is restoring it"}
                    entry.update(skipped=True, faces=[], seconds=0.0, **note)
                    progress.step(source, entry)
                    continue
                group.append(Pending(entry, source, destination, kind, decoded))
                if len(group) == group_size:
                    writes += restore_group(group, model, options, settings, pool, progress)
                    group = []
            writes += restore_group(group, model, options, settings, pool, progress)
            for clip in clips:
                destination = video_destination(clip, folder, taken)
                steady = video or VideoOptions()
                entries.append(restore_clip(clip, destination, video_model or model, options, steady, skip_existing))
                progress.step(clip, entries[-1])
            for entry, write in writes:
                try:
                    write.result()
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
) -> dict:  # fmt: skip
    """Restore one video file (frames streamed) and return its report entry."""
    entry: dict = {"input": str(source), "output": str(destination)}
    holder = claim(destination)
    try:
        if holder is not None or (skip_existing and destination.exists()):
            note = {} if holder is None else {"note": f"another run (process {holder}) is restoring it"}
            return {**entry, "skipped": True, "faces": [], "seconds": 0.0, **note}
        started = time.perf_counter()
        try:
            report = restore_video_file(source, destination, model, options, video)
        except (ValueError, OSError, RuntimeError) as error:
            return {**entry, "error": str(error), "output": None}
        entry.update(faces=[], frames=report.frames, faces_restored=report.faces, tracks=report.tracks)
        return {**entry, "fps": report.fps, "seconds": round(time.perf_counter() - started, 3)}
    finally:
        if holder is None:
            release(destination)


def restore_group(
    group: list[Pending], model: torch.nn.Module, options: RestoreOptions, settings: WriteSettings,
    pool: ThreadPoolExecutor, progress: Progress,
) -> list[tuple[dict, Future]]:  # fmt: skip
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
) -> list[tuple[dict, Future]]:  # fmt: skip
    """One pipeline call for the group; if it fails, one call per image, so that a bad image fails alone."""
    if not decoded:
        return []
    try:
        result = restore_faces([image.pixels for _, image in decoded], model, options)
    except (ValueError, OSError, RuntimeError) as error:  # RuntimeError: out of memory
        if len(decoded) > 1:
            return [write for one in decoded for write in _restore_decoded([one], model, options, settings, pool)]
        decoded[0][0].entry.update(error=str(error), output=None)
        return []
    writes = []
    for index, (item, image) in enumerate(decoded):
        faces = [dataclasses.replace(face, image_index=0) for face in result.faces if face.image_index == index]
        item.entry["faces"] = [face.to_dict() for face in faces]
        if image.frames > 1:
            item.entry["warning"] = f"{image.frames} frames (animated or multi-page): only the first was restored"
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

    def step(self, source: Path, entry: dict) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        state = (
            "error" if entry.get("error") else "skipped" if entry.get("skipped") else f"{len(entry['faces'])} face(s)"
        ) + (f" ({entry['warning']})" if entry.get("warning") else "")
        print(f"[{self.count}/{self.total}] {source.name}: {state}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
