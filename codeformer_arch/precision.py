"""Running part of the network in a half type, with a float32 rerun when the result is not finite.

CodeFormer's codes come from an argmax over logits whose top two entries can lie within
2e-3 of each other: half precision there would pick other codes (a different restoration).
The generator only turns the chosen codes into pixels, where half precision moves a pixel by
a fraction of a grey level; it is also where nearly all the work is. So the code path stays
float32 and the generator may run in bfloat16 or float16 (autocast: convolutions and matrix
products in the half type, GroupNorm statistics in float32).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

LOG = logging.getLogger("codeformer_nodes")
_warned: set[torch.dtype] = set()


def run_in_half(compute: Callable[[torch.dtype | None], Tensor], device_type: str, half: torch.dtype) -> Tensor:
    """``compute(half)`` under autocast to ``half``; ``compute(None)`` (full precision) if that is not finite.

    ``compute(dtype)`` casts its inputs to ``dtype`` (None: leaves them) and returns its
    result in full precision. float16 overflows above 65504, which the CFT fusion can reach;
    the rerun keeps such a chunk right, and the first one is logged.
    """
    with torch.autocast(device_type, dtype=half):
        result = compute(half)
    if bool(torch.isfinite(result).all()):
        return result
    if half not in _warned:
        _warned.add(half)
        LOG.warning("CodeFormer: the generator overflowed in %s; such chunks are rerun in float32", half)
    return compute(None)


@contextmanager
def ieee_float32(device_type: str) -> Iterator[None]:
    """Float32 convolutions and matrix products in full IEEE precision while the block runs.

    CUDA computes float32 convolutions in TF32 by default (10-bit mantissa), enough to flip
    codes; the settings are process-wide, so they are restored afterwards.
    """
    if device_type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
