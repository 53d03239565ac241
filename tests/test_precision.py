"""Precision modes: code-exact mixed precision, the float32 rerun, and which mode each name means."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from codeformer_nodes.codeformer_arch.precision import run_in_half
from codeformer_nodes.models import (
    DeviceCapabilities,
    Precision,
    choose_precision,
    device_capabilities,
    has_native_bfloat16,
    load_codeformer,
)

CPU = torch.device("cpu")
# Restored faces of the mixed mode against float32, as uint8 images (the bar).
MIXED_FACE_PSNR = 40.0
FLOAT32_ALONE = Precision(torch.float32)
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def uint8_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    def as_uint8(t: torch.Tensor) -> torch.Tensor:
        return ((t.double().clamp(-1, 1) + 1) * 127.5).round()

    mse = ((as_uint8(a) - as_uint8(b)) ** 2).mean().item()
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def test_every_offered_precision_name_is_a_mode():
    """The names the CLI and the nodes offer (``models.choices``) are the names the loader knows."""
    from codeformer_nodes.models import PRECISIONS

    hopper = DeviceCapabilities("cuda", cuda_capability=(9, 0))  # has every mode
    assert all(isinstance(choose_precision(name, CPU, hopper), Precision) for name in PRECISIONS)
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp8", CPU, hopper)


def test_names_mean_modes_the_device_runs_well():
    assert choose_precision("fp32", CPU) == Precision(torch.float32)
    expected = Precision(torch.float32, torch.bfloat16) if has_native_bfloat16(CPU) else Precision(torch.float32)
    assert choose_precision("auto", CPU) == expected
    assert choose_precision("auto", CPU).keeps_codes and not choose_precision("fp32", CPU).generator_dtype
    for name in ("fp16", "mixed-fp16"):
        with pytest.raises(ValueError, match="for CUDA GPUs"):
            choose_precision(name, CPU)
    if not has_native_bfloat16(CPU):
        with pytest.raises(ValueError, match="needs bfloat16 in hardware"):
            choose_precision("mixed-bf16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("int8", CPU)
    assert not Precision(torch.bfloat16).keeps_codes
    assert str(Precision(torch.float32, torch.bfloat16)) == "float32 codes, bfloat16 generator"


MIXED_BF16 = Precision(torch.float32, torch.bfloat16)
# (capabilities, what auto picks, the names refused): mocked devices, none of which need be here.
MOCKED_DEVICES = {
    "Hopper H100": (DeviceCapabilities("cuda", cuda_capability=(9, 0)), MIXED_BF16, ()),
    "Ampere A100": (DeviceCapabilities("cuda", cuda_capability=(8, 0)), MIXED_BF16, ()),
    "Turing T4": (DeviceCapabilities("cuda", cuda_capability=(7, 5)), FLOAT32_ALONE, ("mixed-bf16", "bf16")),
    "Volta V100": (DeviceCapabilities("cuda", cuda_capability=(7, 0)), FLOAT32_ALONE, ("mixed-bf16", "bf16")),
    "ROCm MI250": (DeviceCapabilities("cuda", rocm_arch="gfx90a"), MIXED_BF16, ()),
    "ROCm RX 7900": (DeviceCapabilities("cuda", rocm_arch="gfx1100"), MIXED_BF16, ()),
    "ROCm Radeon VII": (DeviceCapabilities("cuda", rocm_arch="gfx906"), FLOAT32_ALONE, ("mixed-bf16", "bf16")),
    "Apple mps": (DeviceCapabilities("mps"), FLOAT32_ALONE, ("mixed-bf16", "bf16", "mixed-fp16", "fp16")),
    "CPU with AMX": (DeviceCapabilities("cpu", cpu_bfloat16=True), MIXED_BF16, ("mixed-fp16", "fp16")),
    "CPU with AVX2 alone": (DeviceCapabilities("cpu"), FLOAT32_ALONE, ("mixed-bf16", "bf16", "mixed-fp16", "fp16")),
}


@pytest.mark.parametrize("label", MOCKED_DEVICES)
def test_auto_never_picks_a_mode_the_device_lacks(label):
    capabilities, expected, refused = MOCKED_DEVICES[label]
    device = torch.device(capabilities.device_type)
    assert choose_precision("auto", device, capabilities) == expected
    for name in ("fp32", "mixed-bf16", "mixed-fp16", "bf16", "fp16"):
        if name in refused:
            with pytest.raises(ValueError, match="for CUDA GPUs|needs bfloat16 in hardware"):
                choose_precision(name, device, capabilities)
        else:
            assert isinstance(choose_precision(name, device, capabilities), Precision)


def test_capabilities_are_those_of_the_given_gpu(monkeypatch):
    """A pre-Ampere card as cuda:1 beside an Ampere cuda:0: torch's ``is_bf16_supported`` asks the current
    device (cuda:0); the probe must ask cuda:1."""
    capability = {0: (8, 6), 1: (7, 5)}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[device.index])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert device_capabilities(torch.device("cuda", 1)) == DeviceCapabilities("cuda", cuda_capability=(7, 5))
    assert choose_precision("auto", torch.device("cuda", 1)) == FLOAT32_ALONE
    assert choose_precision("auto", torch.device("cuda", 0)) == MIXED_BF16


def test_rocm_capabilities_come_from_the_architecture(monkeypatch):
    """torch says every ROCm GPU has bfloat16; an RDNA2 card (gfx1030) emulates it."""

    class Properties:
        gcnArchName = "gfx1030:sramecc-:xnack-"

    monkeypatch.setattr(torch.version, "hip", "6.2")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: Properties())
    assert device_capabilities(torch.device("cuda", 0)) == DeviceCapabilities("cuda", rocm_arch="gfx1030")
    assert choose_precision("auto", torch.device("cuda", 0)) == FLOAT32_ALONE
    assert device_capabilities(torch.device("mps")) == DeviceCapabilities("mps")


def test_half_overflow_is_rerun_in_float32(caplog):
    """A tiny computation that overflows float16 (65504) but not float32: the rerun gives the float32 result."""
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.constant_(conv.weight, 300.0)
    x = torch.full((1, 1, 4, 4), 300.0)
    seen = []

    def compute(dtype):
        seen.append(dtype)
        with torch.inference_mode():
            return conv(x if dtype is None else x.to(dtype)).float()

    with caplog.at_level(logging.WARNING, logger="codeformer_nodes"):
        out = run_in_half(compute, "cpu", torch.float16)
        again = run_in_half(compute, "cpu", torch.float16)
    assert seen == [torch.float16, None, torch.float16, None]
    assert torch.equal(out, torch.full((1, 1, 4, 4), 90000.0)) and torch.equal(again, out)
    assert sum("overflowed" in record.message for record in caplog.records) <= 1, "logged once"

    calm = torch.full((1, 1, 4, 4), 0.5)
    with torch.inference_mode():
        kept = run_in_half(lambda dtype: conv(calm if dtype is None else calm.to(dtype)).float(), "cpu", torch.float16)
    assert torch.equal(kept, torch.full((1, 1, 4, 4), 150.0))


def test_generator_dtype_is_checked():
    from codeformer_nodes import CodeFormer

    with pytest.raises(ValueError, match="bfloat16 or float16"):
        CodeFormer().set_generator_dtype(torch.float64)


@pytest.mark.parametrize(
    "device, half",
    [
        pytest.param(
            "cpu",
            torch.bfloat16,
            marks=pytest.mark.skipif(
                not has_native_bfloat16(CPU),
                reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX): a bf16 generator is emulated and "
                "takes minutes per face",
            ),
        ),
        pytest.param("cuda", torch.float16, marks=[pytest.mark.cuda, NEEDS_CUDA]),
        pytest.param(
            "cuda",
            torch.bfloat16,
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(
                    not torch.cuda.is_available() or not has_native_bfloat16(torch.device("cuda")),
                    reason="needs a CUDA GPU with bfloat16 (Ampere or newer)",
                ),
            ],
        ),
    ],
)
def test_mixed_precision_keeps_the_float32_codes(recipe_checkpoint, vectors, device, half):
    full = load_codeformer(recipe_checkpoint, device, precision="fp32")
    mixed = load_codeformer(recipe_checkpoint, device, precision=Precision(torch.float32, half))
    x = vectors["batch2_input"].to(device)
    with torch.inference_mode():
        expected, expected_logits, _ = full(x, w=torch.tensor([0.5, 1.0]), adain=True)
        out, logits, _ = mixed(x, w=torch.tensor([0.5, 1.0]), adain=True)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(logits, expected_logits), "the code path must not run in half precision"
    assert torch.equal(logits.argmax(dim=2).cpu(), vectors["batch2_code_indices"])
    assert uint8_psnr(out, expected) >= MIXED_FACE_PSNR
