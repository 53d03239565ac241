"""A network backend: CodeFormer run by onnxruntime on the CPU (``codeformer-restore --backend onnxruntime``).

Offered by measurement (``benchmarks/bench_onnx.py``, BENCHMARKS.md): on an AVX2 CPU
onnxruntime ran the exported network in 0.80x the time of our float32 torch path, with the
same codes and within 6e-5 of it; since torch keeps freed CPU memory (``models.cpu_memory``)
torch is the faster (0.95x onnxruntime's time), and onnxruntime stays a choice. The loaded
network is exported once per weights file and AdaIN setting into the per-user cache
(``onnx/<sha256>-adain<0|1>.onnx``), checked against torch (codes identical, outputs within
1e-4) before its first use, and reused by later runs.
Needs the ``onnx`` extra.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .downloads import user_cache_dir
from .loader import DescribedCodeFormer, FaceRestorer, LoadedCodeFormer, ModelDescription
from .onnx_export import (
    check_export,
    export_onnx,
    onnx_session,
    onnxruntime_load_errors,
    read_check_input,
    run_onnx,
)
from .onnx_interface import DEFAULT_CHECK_WEIGHTS


class OnnxRuntimeNetwork(DescribedCodeFormer, torch.nn.Module):
    """CodeFormer's call, ``(faces, w, adain) -> (out, logits, None)``, through an onnxruntime session.

    It works on the CPU in float32 (what its empty ``anchor`` parameter tells the pipeline).
    AdaIN is part of the exported graph: a call asking for the other setting is refused.
    """

    def __init__(self, session, adain: bool, description: ModelDescription) -> None:  # noqa: ANN001 (session)
        super().__init__()
        self.session, self.adain, self.description = session, adain, description
        self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: Tensor, w: float | Tensor = 0, adain: bool = True) -> tuple[Tensor, Tensor, None]:
        if adain != self.adain:
            raise ValueError(f"this ONNX model was exported with AdaIN {'on' if self.adain else 'off'}; asked for "
                             f"{'on' if adain else 'off'}")  # fmt: skip
        weights = w.detach().cpu().double().reshape(-1).numpy() if isinstance(w, Tensor) else [float(w)]
        out, logits = run_onnx(self.session, x, weights)
        return torch.from_numpy(out), torch.from_numpy(logits), None


def onnxruntime_network(network: FaceRestorer, adain: bool, cache: Path | None = None) -> OnnxRuntimeNetwork:
    """``network`` as an onnxruntime network: exported and checked on first use, then taken from ``cache``."""
    if not isinstance(network, LoadedCodeFormer):
        raise ValueError(
            f"the onnxruntime backend runs CodeFormer's ONNX export only; {network.kind.architecture} "
            f"({network.source}) runs on torch: use --backend torch"
        )
    parameter = next(network.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32 or network.generator_dtype is not None:
        raise ValueError("the onnxruntime backend exports the float32 network on the CPU: use --device cpu and "
                         "--precision fp32 or auto (or the torch backend)")  # fmt: skip
    description = network.description
    path = (cache or user_cache_dir() / "onnx") / f"{description.sha256}-adain{int(adain)}.onnx"
    if path.is_file():
        try:
            return OnnxRuntimeNetwork(onnx_session(path), adain, description)
        except onnxruntime_load_errors():
            path.unlink(missing_ok=True)  # a damaged cache entry: export it again
    export_onnx(network, path, adain=adain)
    checked = False
    try:
        check_export(network, path, read_check_input(None), DEFAULT_CHECK_WEIGHTS, adain)
        checked = True
    finally:
        if not checked:  # never leave an unchecked model for the next run to take up
            path.unlink(missing_ok=True)
    return OnnxRuntimeNetwork(onnx_session(path), adain, description)
