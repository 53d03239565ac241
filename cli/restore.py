"""``codeformer-restore``: restore the faces in image files, for unattended pipelines.

    codeformer-restore photos/ extra.jpg 'scans/*.png' -o restored/ --model codeformer.pth --report -

Progress goes to stderr (a bar on a terminal, lines otherwise); a JSON report goes to a
file or to stdout (``-``). A bad input is reported and skipped; the exit status is 0
only when every input succeeded. ``--export-workflow FILE`` writes the equivalent
ComfyUI API workflow instead of restoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Only what the parser needs is imported here: torch and the run's modules load in main(), once the
# arguments are read, so that --help answers at once.
from ..batch.formats import FORMATS
from ..batch.report import report_problem, writable_folder_problem, write_report
from ..models.choices import BACKENDS, PRECISION_HELP, PRECISIONS, RESTORATION, TASKS
from ..models.files import atomic_destination
from ..models.official import OFFICIAL_CHECKPOINTS
from ..models.upsamplers import DEFAULT_TILE, REALESRGAN_X2PLUS
from ..pipeline.detection import DETECTORS
from ..pipeline.flows import FLOW_CONFIDENCES, FLOW_NAMES
from ..pipeline.option_help import RESTORE_HELP
from ..pipeline.options import FACE_SELECTIONS, MAX_UPSCALE, FidelityRamp, RestoreOptions
from . import ray, video
from .helptext import DefaultsHelpFormatter

if TYPE_CHECKING:
    import torch

DEFAULTS = RestoreOptions()
# The official command's output size factor (``-s``), where the library's is 1.
OFFICIAL_UPSCALE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeformer-restore",
        description="Restore the faces in image and video files, for unattended pipelines. A bad input is "
        "reported and skipped; the exit status is 0 only when every input succeeded.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", help="image or video files, folders or glob patterns")
    parser.add_argument("-o", "--output", type=Path, help="output folder (made when missing)")
    weights = parser.add_argument_group("weights")
    weights.add_argument(
        "--model",
        help="face restorer weights (.pth or .safetensors): CodeFormer, or GFPGAN 1.2-1.4 or RestoreFormer "
        "(recognised by their keys; these ignore -w and run on the torch backend); default: the official "
        "checkpoint of --task (codeformer.pth), fetched into the per-user cache when first needed "
        "(as is GFPGANv1.4.pth given by name)",
    )
    weights.add_argument(
        "--task",
        choices=("auto", *TASKS),
        default="auto",
        help="what the checkpoint does (auto: read from it); a mismatch is an error",
    )
    weights.add_argument(
        "--weights-dir", type=Path, help="folder searched first for the detector, parser and upsampler weights"
    )
    faces = parser.add_argument_group("finding faces")
    faces.add_argument(
        "--flow",
        choices=FLOW_NAMES,
        default=DEFAULTS.flow,
        help=RESTORE_HELP["flow"],
    )
    faces.add_argument("--detector", choices=DETECTORS, default=DEFAULTS.detector, help=RESTORE_HELP["detector"])
    faces.add_argument(
        "--detection-size",
        type=int,
        default=DEFAULTS.detection_size,
        help=RESTORE_HELP["detection_size"] + "; 0: the image's own size",
    )
    faces.add_argument(
        "--confidence",
        type=float,
        help=RESTORE_HELP["confidence"] + f" (default: the flow's, {FLOW_CONFIDENCES})",
    )
    faces.add_argument(
        "--face-selection",
        choices=FACE_SELECTIONS,
        default=DEFAULTS.face_selection,
        help=RESTORE_HELP["face_selection"],
    )
    faces.add_argument(
        "--face-indices",
        type=int,
        nargs="+",
        metavar="N",
        help=RESTORE_HELP["face_indices"],
    )
    faces.add_argument(
        "--only-center-face", action="store_true", help="restore only the face nearest the centre (the official flag)"
    )
    faces.add_argument(
        "--min-face-size",
        type=float,
        default=DEFAULTS.min_face_size,
        help=RESTORE_HELP["min_face_size"],
    )
    faces.add_argument("--max-face-size", type=float, help=RESTORE_HELP["max_face_size"] + " (default: no limit)")
    faces.add_argument(
        "--has-aligned",
        action="store_true",
        help=RESTORE_HELP["has_aligned"] + "; no --upscale",
    )
    restoring = parser.add_argument_group("restoring")
    restoring.add_argument(
        "-w",
        "--fidelity",
        type=float,
        help=RESTORE_HELP["fidelity"] + f" (default {DEFAULTS.fidelity}, as the official command)",
    )
    restoring.add_argument(
        "--ramp",
        type=float,
        nargs=4,
        metavar=("SMALL_W", "LARGE_W", "SMALL_SIZE", "LARGE_SIZE"),
        help=RESTORE_HELP["ramp"],
    )
    restoring.add_argument(
        "--visibility",
        type=float,
        default=DEFAULTS.visibility,
        help=RESTORE_HELP["visibility"],
    )
    restoring.add_argument(
        "-s",
        "--upscale",
        type=int,
        choices=range(1, MAX_UPSCALE + 1),
        help=RESTORE_HELP["upscale"] + f" (default {OFFICIAL_UPSCALE}, as the official command)",
    )
    restoring.add_argument(
        "--keep-size",
        action="store_true",
        help=RESTORE_HELP["keep_size"],
    )
    restoring.add_argument(
        "--parse-mask",
        action=argparse.BooleanOptionalAction,
        help=RESTORE_HELP["parse_mask"] + " (default: the flow's: codeformer on, facexlib off)",
    )
    restoring.add_argument("--draw-box", action="store_true", help=RESTORE_HELP["draw_box"])
    restoring.add_argument(
        "--bg-upsampler",
        metavar="FILE",
        help="enlarge the background with this super-resolution model (any spandrel knows, e.g. "
        f"{REALESRGAN_X2PLUS.name}, fetched when missing; 'realesrgan' names that one)",
    )
    restoring.add_argument(
        "--bg-tile", type=int, default=DEFAULT_TILE, help="tile size of the upsampler, input pixels (0: whole images)"
    )
    restoring.add_argument(
        "--face-upsample",
        action="store_true",
        help=f"enlarge the restored faces with the upsampler too (the --bg-upsampler, else {REALESRGAN_X2PLUS.name})",
    )
    running = parser.add_argument_group("running")
    running.add_argument(
        "--chunk-size", type=int, help=RESTORE_HELP["chunk_size"] + " (default: by device, 1 on a CPU)"
    )
    running.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: cuda when there is one, else cpu)")
    running.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    running.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="onnxruntime: the float32 network exported once (cached, checked against torch) and "
        "run by onnxruntime on the CPU, faster on CPUs without native bf16; images only, "
        "videos stay on torch (needs the onnx extra)",
    )
    output = parser.add_argument_group("output files")
    output.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="output format (default: the input's; PNG for formats that cannot be written)",
    )
    output.add_argument("--jpeg-quality", type=quality, default=95, help="JPEG and WebP quality, 1-100")
    output.add_argument(
        "--jpeg-subsampling", choices=("4:4:4", "4:2:2", "4:2:0"), default="4:2:0", help="JPEG chroma subsampling"
    )
    output.add_argument("--skip-existing", action="store_true", help="leave outputs that exist (resume a run)")
    output.add_argument("--report", help="write the JSON report to this file, or - for stdout")
    output.add_argument(
        "--export-workflow", type=Path, metavar="FILE", help="write the equivalent ComfyUI API workflow and exit"
    )
    video.add_arguments(parser)
    ray.add_arguments(parser)
    return parser


def quality(text: str) -> int:
    """An encoder quality from 1 to 100 (argparse type)."""
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"quality must be from 1 to 100; got {value}")
    return value


def options_from(args: argparse.Namespace) -> RestoreOptions:
    """The restore options the flags ask for; flags that contradict each other are refused."""
    if args.ramp and args.fidelity is not None:
        raise ValueError("--ramp and -w/--fidelity both set the fidelity; give one of them")
    if args.has_aligned and args.upscale is not None:
        raise ValueError("--has-aligned restores 512x512 faces as they are, with no paste to upscale; drop --upscale")
    fidelity: float | FidelityRamp = (
        FidelityRamp(*args.ramp) if args.ramp else DEFAULTS.fidelity if args.fidelity is None else args.fidelity
    )
    upscale = DEFAULTS.upscale if args.has_aligned else args.upscale or OFFICIAL_UPSCALE
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
        upscale=upscale,
        parse_mask=args.parse_mask,
        keep_size=args.keep_size,
        draw_box=args.draw_box,
        chunk_size=args.chunk_size,
        weights_dir=args.weights_dir,
    )


def upsampler_source(args: argparse.Namespace) -> str | None:
    """The upsampler file of --bg-upsampler / --face-upsample: the one given, or the official one
    (``realesrgan``, or faces enlarged without a background upsampler); None without either."""
    if args.bg_upsampler is None and not args.face_upsample:
        return None
    return REALESRGAN_X2PLUS.name if args.bg_upsampler in (None, "realesrgan") else args.bg_upsampler


def _face_selection(args: argparse.Namespace) -> str | tuple[int, ...]:
    """One choice of faces from --face-selection, --face-indices and --only-center-face; two are refused."""
    given = {
        "--face-indices": bool(args.face_indices),
        "--only-center-face": args.only_center_face,
        "--face-selection": args.face_selection != DEFAULTS.face_selection,
    }
    chosen = [name for name, present in given.items() if present]
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)} both choose faces; give one of them")
    if args.face_indices:
        return tuple(args.face_indices)
    return "center" if args.only_center_face else args.face_selection


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
        video_options = video.video_options_from(args)
        device = parse_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.export_workflow:
        return write_workflow(args, options)
    if args.ray is not None:  # the same run, restored by a Ray cluster's workers
        return ray.main(args, options, parser)
    if not args.inputs or args.output is None:
        parser.error("give INPUT... and -o OUTDIR (or --export-workflow FILE)")
    output_problem = writable_folder_problem(args.output, f"the output folder {args.output}")
    for problem in (output_problem, report_problem(args.report)):
        if problem is not None:  # the run itself cannot work: said once, before anything loads
            print(f"codeformer-restore: {problem}", file=sys.stderr)
            return 2
    from ..batch.preflight import missing_weights, with_upsampler

    weights = args.model or OFFICIAL_CHECKPOINTS[options.task or RESTORATION].name
    missing = missing_weights(weights, options, upsampler_source(args), args.weights_dir)
    if missing is not None:
        print(f"codeformer-restore: {missing}", file=sys.stderr)
        write_report(args.report, [], 0.0, cut=True, error=missing)
        return 2
    from ..batch.imageio import WriteSettings
    from ..batch.naming import expand_inputs
    from ..batch.report import ReportEntry, reported_run
    from ..batch.runner import run
    from ..models import CodeFormerWeightsError, load_face_restorer
    from ..models.onnx_network import onnxruntime_network
    from ..pipeline.tasks import network_adain, resolve_task

    onnx = args.backend == "onnxruntime"
    print(f"codeformer-restore: loading {weights} on {device}", file=sys.stderr)
    try:
        model = load_face_restorer(weights, device=device, precision="fp32" if onnx and args.precision == "auto" else
                                   args.precision)  # fmt: skip
        resolve_task(model, options)  # a task the weights do not do is refused before any image
        options = with_upsampler(
            options, upsampler_source(args), background=args.bg_upsampler is not None, faces=args.face_upsample,
            tile=args.bg_tile, device=device, weights_dir=args.weights_dir,
        )  # fmt: skip
        images_model = onnxruntime_network(model, network_adain(model, options)) if onnx else model
    except (CodeFormerWeightsError, ValueError, ImportError) as error:  # bad weights, absent onnx extra, ...
        print(f"codeformer-restore: {error}", file=sys.stderr)
        return 2
    settings = WriteSettings(args.format, args.jpeg_quality, args.jpeg_subsampling)
    files, problems = expand_inputs(args.inputs, args.output)
    entries: list[ReportEntry] = list(problems)  # type: ignore[arg-type]
    return reported_run(
        args.report,
        args.output,
        entries,
        lambda: run(files, images_model, options, args.output, settings, args.skip_existing, entries, video_options,
                    model),
    )  # fmt: skip


def write_workflow(args: argparse.Namespace, options: RestoreOptions) -> int:
    """``--export-workflow FILE``: the ComfyUI API workflow of these options, written whole (its folder made)."""
    from ..nodes.workflow import export_workflow

    model_name = Path(args.model).name if args.model else OFFICIAL_CHECKPOINTS[options.task or RESTORATION].name
    workflow = export_workflow(options, model_name, args.precision, "example.png")
    try:
        with atomic_destination(args.export_workflow) as temporary:
            temporary.write_text(json.dumps(workflow, indent=2) + "\n")
    except OSError as error:
        print(f"codeformer-restore: cannot write {args.export_workflow} ({error.strerror or error})", file=sys.stderr)
        return 2
    print(f"wrote {args.export_workflow}", file=sys.stderr)
    return 0


def parse_device(name: str | None) -> torch.device:
    """The ``--device``: by default CUDA when there is one; a device this torch cannot use is refused here."""
    from ..models.devices import default_device, usable_device

    return default_device() if name is None else usable_device(name)


if __name__ == "__main__":
    sys.exit(main())
