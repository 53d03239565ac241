"""``codeformer-export WEIGHTS OUT.onnx``: write a CodeFormer checkpoint as an ONNX model, then check it.

The model has FaceFusion's face-enhancer interface, so the file drops into tools built for
it: input ``input``, (B, 3, 512, 512) float32 RGB faces normalised as ``(rgb - 0.5) / 0.5``;
input ``weight``, float64 fidelity in [0, 1] of shape (1,) (one for all faces, as FaceFusion
feeds it) or (B,) (one per face); first output ``output``, the restored faces (B, 3, 512, 512),
unclamped. A second output ``logits`` (B, 256, codebook size) holds the scores the codes were
picked from (the code of each token is their argmax over the last axis); ``--no-logits`` leaves
it out. The batch is dynamic. The fusion runs for every ``w`` (``w = 0`` multiplies it by 0: the
same result as skipping it). AdaIN is inside where the task's official call uses it
(restoration and colorization; inpainting runs without it, and its blend with the input stays
the caller's). ``w`` is not range-checked inside the graph.

After writing, the command runs the file in onnxruntime (CPU) on a face (random, or
``--check-input``) at w = 0 and 0.5 (``--check-weights``) and fails unless the output lies
within ``--tolerance`` (1e-4) of this package's float32 torch network with identical codes.
Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..codeformer_arch import CodeFormer
from ..codeformer_arch.codeformer import FuseSFT, adaptive_instance_norm
from ..codeformer_arch.config import IMAGE_SIZE
from ..models.checkpoint import INPAINTING, TASKS
from ..models.errors import CodeFormerWeightsError

# FaceFusion's names: its face enhancer (facefusion/processors/modules/face_enhancer/core.py)
# feeds the session inputs named 'input' and 'weight' (a float64 array of shape (1,)) and
# takes the first output.
INPUT_NAME, WEIGHT_NAME = "input", "weight"
OUTPUT_NAME, LOGITS_NAME = "output", "logits"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
DEFAULT_CHECK_WEIGHTS = (0.0, 0.5)
CHECK_SEED = 0
ONNX_DOUBLE, ONNX_FLOAT = 11, 1  # TensorProto element types


class ExportError(Exception):
    """The export failed, or the written ONNX model does not match the torch network."""


class OnnxCodeFormer(nn.Module):
    """Export-only view of a CodeFormer network with FaceFusion's interface: ``(input, weight)``.

    It runs the network's own submodules in the network's order. It differs from
    ``CodeFormer.forward`` only where a traced graph cannot follow: it neither checks ``w``
    nor branches on its value, so the fusion is computed for every face and scaled by that
    face's ``w``. The network itself is not changed.
    """

    def __init__(self, network: CodeFormer, adain: bool = True, with_logits: bool = True) -> None:
        super().__init__()
        self.network = network
        self.adain = adain
        self.with_logits = with_logits

    def forward(self, image: Tensor, weight: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        net = self.network
        w = weight.to(image.dtype).reshape(-1, 1, 1, 1)  # (1,): all faces; (B,): one per face
        lq_feat, skips = net.encoder(image)
        logits = net.predict_codes(lq_feat)
        h = net.quantize(logits.argmax(dim=2))
        if self.adain:
            h = adaptive_instance_norm(h, lq_feat)
        for index, block in enumerate(net.generator.blocks):
            h = block(h)
            size = net.generator.level_start.get(index)
            if size is not None and str(size) in net.fuse_convs_dict:
                h = fuse_for_every_w(net.fuse_convs_dict[str(size)], skips[size], h, w)
        return (h, logits) if self.with_logits else h


def fuse_for_every_w(fuse: FuseSFT, enc_feat: Tensor, dec_feat: Tensor, w: Tensor) -> Tensor:
    """``FuseSFT``'s result, ``dec + w * (dec * scale + shift)`` in its order, without its branch on ``w``."""
    h = fuse.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
    return (fuse.scale(h) * dec_feat + fuse.shift(h)) * w + dec_feat


def _int64s(g, values: list[int]):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


def _mean_last(g, tensor):
    """ReduceMean over the last axis, kept (opset 18 moved the axes from an attribute to an input)."""
    if g.opset >= 18:
        return g.op("ReduceMean", tensor, _int64s(g, [-1]), keepdims_i=1)
    return g.op("ReduceMean", tensor, axes_i=[-1], keepdims_i=1)


def _group_norm_symbolic(g, x, groups, weight, bias, eps, cudnn_enabled):
    """GroupNorm as ONNX nodes whose statistics are float64, two-pass (mean, then mean square of the rest).

    The exporter's own lowering goes through InstanceNormalization, and onnxruntime sums the
    256K values of a group naively in float32: on CodeFormer's large activations that moves
    the output by 2.5e-4 at w = 1, 20 times the error of torch's float32 GroupNorm. Float64
    statistics bring it under torch's (max |onnx - float64 reference| 3e-5 at w = 1).
    """
    grouped = g.op("Cast", g.op("Reshape", x, _int64s(g, [0, groups, -1])), to_i=ONNX_DOUBLE)
    centred = g.op("Sub", grouped, _mean_last(g, grouped))
    variance = _mean_last(g, g.op("Mul", centred, centred))
    std = g.op("Sqrt", g.op("Add", variance, g.op("Constant", value_t=torch.tensor(eps, dtype=torch.float64))))
    normed = g.op("Reshape", g.op("Cast", g.op("Div", centred, std), to_i=ONNX_FLOAT), g.op("Shape", x))
    per_channel = _int64s(g, [-1, 1, 1])
    return g.op("Add", g.op("Mul", normed, g.op("Reshape", weight, per_channel)), g.op("Reshape", bias, per_channel))


@contextmanager
def precise_group_norm(opset: int) -> Iterator[None]:
    """While the block runs, the TorchScript-based exporter writes GroupNorm as ``_group_norm_symbolic``."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper, unregister_custom_op_symbolic

    symbolic = symbolic_helper.parse_args("v", "i", "v", "v", "f", "b")(_group_norm_symbolic)
    register_custom_op_symbolic("aten::group_norm", symbolic, opset)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("aten::group_norm", opset)


def export_onnx(
    network: CodeFormer,
    destination: Path,
    opset: int = DEFAULT_OPSET,
    adain: bool = True,
    with_logits: bool = True,
) -> None:
    """Write ``network`` (float32, CPU) to ``destination`` as one self-contained ONNX file, batch dynamic.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no onnxscript, takes
    the GroupNorm lowering above, and the wrapper has no data-dependent branch for tracing
    to bake in. The file is written beside ``destination`` and moved into place when complete.
    """
    if not 17 <= opset <= 20:
        raise ValueError(f"opset {opset} is not supported; use 17 to 20 (LayerNormalization needs 17)")
    module = OnnxCodeFormer(network, adain=adain, with_logits=with_logits).eval()
    example = (
        torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float32),
        torch.full((1,), 0.5, dtype=torch.float64),
    )
    outputs = [OUTPUT_NAME, LOGITS_NAME] if with_logits else [OUTPUT_NAME]
    axes = {INPUT_NAME: {0: "batch"}, WEIGHT_NAME: {0: "weights"}, **{name: {0: "batch"} for name in outputs}}
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".partial")
    os.close(handle)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), precise_group_norm(opset):
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer chatter
            try:
                torch.onnx.export(
                    module,
                    example,
                    temporary,
                    input_names=[INPUT_NAME, WEIGHT_NAME],
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            except RuntimeError as error:
                raise ExportError(f"torch.onnx.export failed: {error}") from error
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)


def onnx_session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session for ``path``; ``threads``: intra-op threads (None: onnxruntime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(session, faces: Tensor | np.ndarray, weight: float | Sequence[float]) -> list[np.ndarray]:
    """Run an exported model on ``faces`` (B, 3, 512, 512): ``weight`` is one number or one per face."""
    faces = faces.detach().cpu().numpy() if isinstance(faces, Tensor) else faces
    weights = np.atleast_1d(np.asarray(weight, dtype=np.float64))
    return session.run(None, {INPUT_NAME: np.ascontiguousarray(faces, dtype=np.float32), WEIGHT_NAME: weights})


@dataclass(frozen=True)
class Comparison:
    """The ONNX model against the torch network on one batch of faces.

    Attributes:
        weights: the fidelity, one for all faces or one per face.
        max_abs_diff: max |ONNX output - torch output|.
        codes_flipped: code indices that differ (None when the model has no ``logits`` output).
        output: the ONNX model's restored faces.
        codes: its code indices (B, 256), or None without ``logits``.
    """

    weights: tuple[float, ...]
    max_abs_diff: float
    codes_flipped: int | None
    output: np.ndarray = field(repr=False)
    codes: np.ndarray | None = field(repr=False)


def compare_with_torch(
    network: CodeFormer, session, faces: Tensor, weight: float | Sequence[float], adain: bool = True
) -> Comparison:
    """Run ``faces`` through the ONNX ``session`` and through ``network`` (torch) at ``weight`` and compare."""
    weights = tuple(float(value) for value in np.atleast_1d(np.asarray(weight, dtype=np.float64)))
    torch_w = weights[0] if len(weights) == 1 else torch.tensor(weights)
    with torch.inference_mode():
        expected, logits, _ = network(faces, w=torch_w, adain=adain)
    outputs = run_onnx(session, faces, weights)
    diff = float(np.abs(outputs[0] - expected.cpu().numpy()).max())
    codes = outputs[1].argmax(axis=2) if len(outputs) > 1 else None
    flipped = None if codes is None else int((codes != logits.argmax(dim=2).cpu().numpy()).sum())
    return Comparison(weights, diff, flipped, outputs[0], codes)


def check_export(
    network: CodeFormer,
    path: Path,
    faces: Tensor,
    weights: Sequence[float],
    adain: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[Comparison]:
    """Compare the ONNX model at ``path`` with ``network`` on ``faces`` at each of ``weights``.

    Raises :class:`ExportError` when an output differs by more than ``tolerance`` (or is not
    finite) or a code differs.
    """
    try:
        session = onnx_session(path)
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        raise ExportError(f"onnxruntime cannot load {path}: {error}") from error
    results = []
    for weight in weights:
        result = compare_with_torch(network, session, faces, weight, adain)
        results.append(result)
        if result.codes_flipped or not result.max_abs_diff <= tolerance:
            raise ExportError(
                f"{path}: the ONNX model differs from the torch network at w={weight:g}: max |diff| "
                f"{result.max_abs_diff:.3g} (tolerance {tolerance:g}), {result.codes_flipped or 0} codes differ"
            )
    return results


def read_check_input(path: Path | None) -> Tensor:
    """Faces to check on: from ``path`` (.npy, or the first tensor of a .safetensors file), else one random face."""
    if path is None:
        generator = torch.Generator().manual_seed(CHECK_SEED)
        return torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) * 2 - 1
    if not path.is_file():
        raise ValueError(f"check input {path} is not a file")
    try:
        if path.suffix.lower() == ".npy":
            faces = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            faces = next(iter(tensors.values())) if tensors else None
    except Exception as error:  # noqa: BLE001 - numpy and safetensors raise many kinds on a bad file
        raise ValueError(f"check input {path} cannot be read as .npy or .safetensors ({error})") from error
    if faces is None:
        raise ValueError(f"check input {path} holds no tensor")
    faces = faces.float()
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"check input {path} holds shape {tuple(faces.shape)}; (B, 3, 512, 512) faces are needed")
    return faces


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeformer-export", description=__doc__.splitlines()[0])
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
    try:
        import onnx  # noqa: F401 - the exporter needs it; fail before the slow load when the extra is missing
        import onnxruntime  # noqa: F401

        from ..models.loader import load_codeformer

        if args.destination.suffix.lower() != ".onnx":
            raise ValueError(f"destination {args.destination} must end in .onnx")
        if not all(0 <= w <= 1 for w in args.check_weights):
            raise ValueError(f"check weights must lie in [0, 1]; got {args.check_weights}")
        faces = None if args.skip_check else read_check_input(args.check_input)
        network = load_codeformer(args.weights, device="cpu", precision="fp32")
        task = network.description.task
        if args.task not in ("auto", task):
            raise ValueError(
                f"{args.weights} holds a CodeFormer {task} checkpoint, but task {args.task!r} was asked for"
            )
        adain = task != INPAINTING
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
