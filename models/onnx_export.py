"""A CodeFormer network as an ONNX model (``codeformer-export``), and the check that it equals the torch one.

The model has FaceFusion's face-enhancer interface, so the file drops into tools built for
it: input ``input``, (B, 3, 512, 512) float32 RGB faces normalised as ``(rgb - 0.5) / 0.5``;
input ``weight``, float64 fidelity in [0, 1] of shape (1,) (one for all faces, as FaceFusion
feeds it) or (B,) (one per face); first output ``output``, the restored faces (B, 3, 512, 512),
unclamped. A second output ``logits`` (B, 256, codebook size) holds the scores the codes were
picked from (the code of each token is their argmax over the last axis); it is optional.
The batch is dynamic. The fusion runs for every ``w`` (``w = 0`` multiplies it by 0: the
same result as skipping it). AdaIN is inside where the task's official call uses it
(restoration and colorization; inpainting runs without it, and its blend with the input stays
the caller's). ``w`` is not range-checked inside the graph.

:func:`check_export` runs the file in onnxruntime (CPU) on faces at given weights and fails
unless the output lies within a tolerance (1e-4) of this package's float32 torch network with
identical codes. Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

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
from .files import atomic_destination
from .onnx_interface import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    INPUT_NAME,
    LOGITS_NAME,
    OUTPUT_NAME,
    WEIGHT_NAME,
)

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


@contextmanager
def _tracing(opset: int) -> Iterator[None]:
    """Gradients off but tensors traceable, our GroupNorm lowering, and the exporter's chatter silenced."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), precise_group_norm(opset):
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer chatter
        yield


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
    with atomic_destination(destination) as temporary, _tracing(opset):
        try:
            torch.onnx.export(
                module,
                example,
                str(temporary),
                input_names=[INPUT_NAME, WEIGHT_NAME],
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except RuntimeError as error:
            raise ExportError(f"torch.onnx.export failed: {error}") from error


def onnxruntime_load_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises for a file it cannot load (its own classes, none of them a standard one)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        Fail,
        InvalidArgument,
        InvalidGraph,
        InvalidProtobuf,
        NoSuchFile,
    )

    return (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile)


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
    except onnxruntime_load_errors() as error:
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
    from safetensors import SafetensorError

    try:
        if path.suffix.lower() == ".npy":
            faces = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            faces = next(iter(tensors.values())) if tensors else None
    except (ValueError, OSError, EOFError, SafetensorError) as error:
        raise ValueError(f"check input {path} cannot be read as .npy or .safetensors ({error})") from error
    if faces is None:
        raise ValueError(f"check input {path} holds no tensor")
    faces = faces.float()
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"check input {path} holds shape {tuple(faces.shape)}; (B, 3, 512, 512) faces are needed")
    return faces
