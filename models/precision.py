"""Which precision a network runs in, by name, and what the hardware runs natively.

``auto`` is code-exact: the codes are chosen in float32, and where the hardware computes
bfloat16 natively the generator (nearly all the work) runs in it. The whole-network half
modes are faster still but change codes, so they restore differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """How a network computes.

    Attributes:
        dtype: of the parameters and the code path (encoder, transformer, logits).
        generator_dtype: of the generator and the CFT fusion; None for ``dtype``.
    """

    dtype: torch.dtype = torch.float32
    generator_dtype: torch.dtype | None = None

    @property
    def keeps_codes(self) -> bool:
        """Whether the codes are the float32 codes (only then is the restoration the official one)."""
        return self.dtype in (torch.float32, torch.float64)

    def __str__(self) -> str:
        code_path = str(self.dtype).removeprefix("torch.")
        if self.generator_dtype is None:
            return code_path
        return f"{code_path} codes, {str(self.generator_dtype).removeprefix('torch.')} generator"


FLOAT32 = Precision(torch.float32)

# Name -> (precision, needs native bfloat16, CUDA only). Names are what the CLI and the loader node offer.
_NAMED = {
    "fp32": (FLOAT32, False, False),
    "mixed-bf16": (Precision(torch.float32, torch.bfloat16), True, False),
    "mixed-fp16": (Precision(torch.float32, torch.float16), False, True),
    "bf16": (Precision(torch.bfloat16), True, False),
    "fp16": (Precision(torch.float16), False, True),
}
PRECISIONS = ("auto", *_NAMED)
PRECISION_HELP = (
    "auto: mixed-bf16 where the hardware runs bfloat16 natively, else fp32 (both keep the float32 codes); "
    "mixed-*: codes in float32, generator in bf16/fp16; bf16/fp16: the whole network in half precision "
    "(faster, but changes codes: a different restoration)"
)


def choose_precision(name: str, device: torch.device) -> Precision:
    """The :class:`Precision` a name means on ``device``; refuses a mode the device would crawl through."""
    if name == "auto":
        return _NAMED["mixed-bf16" if has_native_bfloat16(device) else "fp32"][0]
    if name not in _NAMED:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    precision, needs_bf16, cuda_only = _NAMED[name]
    if cuda_only and device.type != "cuda":
        raise ValueError(f"{name} is for CUDA GPUs; on {device.type} float16 is hundreds of times slower: use auto")
    if needs_bf16 and not has_native_bfloat16(device):
        raise ValueError(
            f"{name} needs bfloat16 in hardware (AVX512-BF16 or AMX on a CPU, Ampere or newer on CUDA); "
            f"{device} emulates it, far slower than fp32: use auto"
        )
    return precision


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX.

    Elsewhere torch emulates bfloat16 on the CPU, far slower than float32 (with AVX2 alone, a
    CodeFormer generator in bfloat16 runs for minutes instead of seconds).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)
