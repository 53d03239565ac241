"""``codeformer-export WEIGHTS OUT.onnx``: write a CodeFormer checkpoint as an ONNX model, then check it.

The model has FaceFusion's face-enhancer interface (``models/onnx_export.py`` describes its
inputs and outputs). After writing, the command runs the file in onnxruntime (CPU) on a face
(random, or ``--check-input``) at each ``--check-weights`` and removes it unless the output lies
within ``--tolerance`` of the float32 torch network with identical codes. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.choices import TASKS
from ..models.errors import CodeFormerWeightsError
from ..models.onnx_interface import (
    DEFAULT_CHECK_WEIGHTS,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    INPUT_NAME,
    LOGITS_NAME,
    OUTPUT_NAME,
    WEIGHT_NAME,
)
from .helptext import DefaultsHelpFormatter, description


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeformer-export", description=description(__doc__), formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("weights", type=Path, help="CodeFormer weights (.pth, .pt, .ckpt or .safetensors)")
    parser.add_argument("destination", type=Path, help="the .onnx file to write")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, 17 to 20 (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--task", choices=("auto", *TASKS), default="auto",
                        help="what the checkpoint does (auto: read from it); a mismatch is an error")  # fmt: skip
    parser.add_argument("--no-logits", action="store_true", help="only the 'output' output (no 'logits')")
    parser.add_argument("--check-weights", type=float, nargs="+", default=list(DEFAULT_CHECK_WEIGHTS), metavar="W",
                        help="fidelity weights the check runs at (default: 0 0.5)")  # fmt: skip
    parser.add_argument("--check-input", type=Path, help=".npy or .safetensors file of (B,3,512,512) faces to check on")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |ONNX - torch| allowed")
    parser.add_argument("--skip-check", action="store_true", help="write the model without checking it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..models.onnx_export import ExportError  # torch loads once the arguments are read

    try:
        import onnx  # noqa: F401 - the exporter needs it; fail before the slow load when the extra is missing
        import onnxruntime  # noqa: F401

        from ..models.checkpoint import checked_task
        from ..models.loader import load_codeformer
        from ..models.onnx_export import check_export, export_onnx, read_check_input
        from ..pipeline.tasks import task_adain

        if args.destination.suffix.lower() != ".onnx":
            raise ValueError(f"destination {args.destination} must end in .onnx")
        if not all(0 <= w <= 1 for w in args.check_weights):
            raise ValueError(f"check weights must lie in [0, 1]; got {args.check_weights}")
        faces = None if args.skip_check else read_check_input(args.check_input)
        network = load_codeformer(args.weights, device="cpu", precision="fp32")
        task = checked_task(network.description.task, args.weights, None if args.task == "auto" else args.task)
        adain = task_adain(task, adain=True)
        export_onnx(network, args.destination, opset=args.opset, adain=adain, with_logits=not args.no_logits)
        print(
            f"wrote {args.destination} (CodeFormer {task}, opset {args.opset}, AdaIN {'on' if adain else 'off'}): "
            f"inputs '{INPUT_NAME}' (B,3,512,512) float32 and '{WEIGHT_NAME}' (1,) or (B,) float64; outputs "
            f"'{OUTPUT_NAME}' (B,3,512,512)" + ("" if args.no_logits else f" and '{LOGITS_NAME}' (B,256,codes)")
        )
        if faces is not None:
            try:
                results = check_export(network, args.destination, faces, args.check_weights, adain, args.tolerance)
            except ExportError as error:
                args.destination.unlink(missing_ok=True)
                raise ExportError(f"{error}; the file was removed (--skip-check keeps an unchecked one)") from error
            for result in results:
                codes = "codes not checked (no logits)" if result.codes_flipped is None else "codes identical"
                print(
                    f"checked with onnxruntime at w={result.weights[0]:g} on {faces.shape[0]} face(s): "
                    f"max |onnx - torch| {result.max_abs_diff:.2e}, {codes}"
                )
    except ImportError as error:
        print(f"codeformer-export: {error}; install the onnx extra (pip install onnx onnxruntime)", file=sys.stderr)
        return 1
    except (CodeFormerWeightsError, ExportError, ValueError, OSError) as error:
        print(f"codeformer-export: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
