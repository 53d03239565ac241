"""Which precision a network runs in, by name, and what the hardware runs natively.

``auto`` is code-exact: the codes are chosen in float32, and where the hardware computes
bfloat16 natively the generator (nearly all the work) runs in it. The whole-network half
modes are faster still but change codes, so they restore differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .choices import PRECISIONS


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

# Name -> (precision, needs native bfloat16, needs the float16 modes), for every name of PRECISIONS but auto.
_NAMED = {
    "fp32": (FLOAT32, False, False),
    "mixed-bf16": (Precision(torch.float32, torch.bfloat16), True, False),
    "mixed-fp16": (Precision(torch.float32, torch.float16), False, True),
    "bf16": (Precision(torch.bfloat16), True, False),
    "fp16": (Precision(torch.float16), False, True),
}
# ROCm architectures with bfloat16 in their matrix units: MI100 (gfx908), CDNA2 and later (gfx90a, gfx94x,
# gfx95x), RDNA3 and later (gfx11xx, gfx12xx). Older ones (Vega, RDNA2) emulate it. Untested: no ROCm card here.
ROCM_BFLOAT16_ARCHS = ("gfx908", "gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")
# NVIDIA GPUs compute bfloat16 from Ampere (compute capability 8.0) on.
CUDA_BFLOAT16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class DeviceCapabilities:
    """What a device computes in hardware: the facts :func:`choose_precision` decides by, probed by
    :func:`device_capabilities` or written by hand (tests, other machines).

    Attributes:
        device_type: ``cpu``, ``cuda`` (NVIDIA, or AMD through ROCm, which torch also calls cuda), ``mps``...
        cuda_capability: an NVIDIA GPU's compute capability (major, minor); None elsewhere.
        rocm_arch: a ROCm GPU's architecture (``gfx90a``...); None elsewhere.
        cpu_bfloat16: a CPU with AVX512-BF16 or AMX.
    """

    device_type: str
    cuda_capability: tuple[int, int] | None = None
    rocm_arch: str | None = None
    cpu_bfloat16: bool = False

    @property
    def native_bfloat16(self) -> bool:
        """Whether bfloat16 runs in hardware; elsewhere it is emulated, far slower than float32 (with AVX2
        alone, a CodeFormer generator in bfloat16 runs for minutes instead of seconds)."""
        if self.device_type == "cpu":
            return self.cpu_bfloat16
        if self.device_type != "cuda":
            return False  # mps: bfloat16 only from macOS 14, untested; auto keeps float32 there
        if self.rocm_arch is not None:
            return self.rocm_arch.startswith(ROCM_BFLOAT16_ARCHS)
        return self.cuda_capability is not None and self.cuda_capability >= CUDA_BFLOAT16_CAPABILITY

    @property
    def float16_modes(self) -> bool:
        """Whether the float16 modes are offered: on CUDA and ROCm GPUs (CPU half convolutions crawl; mps is
        untested, with an overflow rerun never tried there)."""
        return self.device_type == "cuda"


def device_capabilities(device: torch.device) -> DeviceCapabilities:
    """The :class:`DeviceCapabilities` of ``device``, asked of torch (of that GPU, not the current one)."""
    if device.type == "cpu":
        checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return DeviceCapabilities("cpu", cpu_bfloat16=any(check() for check in checks if check is not None))
    if device.type != "cuda":
        return DeviceCapabilities(device.type)
    if torch.version.hip:
        arch = torch.cuda.get_device_properties(device).gcnArchName
        return DeviceCapabilities("cuda", rocm_arch=arch.split(":")[0])
    return DeviceCapabilities("cuda", cuda_capability=tuple(torch.cuda.get_device_capability(device)))


def choose_precision(name: str, device: torch.device, capabilities: DeviceCapabilities | None = None) -> Precision:
    """The :class:`Precision` a name means on ``device``; refuses a mode the device would crawl through.

    ``capabilities`` (probed from ``device`` when None) decide; ``auto`` never picks a mode they lack.
    """
    capabilities = capabilities or device_capabilities(device)
    if name == "auto":
        return _NAMED["mixed-bf16" if capabilities.native_bfloat16 else "fp32"][0]
    if name not in _NAMED:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    precision, needs_bf16, needs_fp16 = _NAMED[name]
    if needs_fp16 and not capabilities.float16_modes:
        raise ValueError(
            f"{name} is for CUDA GPUs; on {capabilities.device_type} float16 is hundreds of times slower "
            "or untested: use auto"
        )
    if needs_bf16 and not capabilities.native_bfloat16:
        raise ValueError(
            f"{name} needs bfloat16 in hardware (AVX512-BF16 or AMX on a CPU, Ampere or newer on CUDA, CDNA2 or "
            f"RDNA3 on ROCm); {device} emulates it, far slower than fp32: use auto"
        )
    return precision


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (see :class:`DeviceCapabilities`)."""
    return device_capabilities(device).native_bfloat16
