"""Conformance of our CodeFormer with the official network's reference vectors.

Tolerances from ../shared/reference/README.md: code indices exact; float32 within 5e-4 on
outputs and 1e-4 on logits and lq_feat; float64 within 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from codeformer_nodes import CodeFormer, CodeFormerConfig
from codeformer_nodes.models import has_native_bfloat16

OUT_ATOL = 5e-4
FEATURE_ATOL = 1e-4
FLOAT64_ATOL = 1e-5
# Whole-network bfloat16 against the reference: share of codes kept (measured 95-97%), and the largest
# logit error (0.05 with bf16 rounding emulated in float32). A flipped code moves the face broadly
# (about 16 dB PSNR against float32), so the output itself is not compared.
BF16_SAME_CODES = 0.9
BF16_LOGITS_ATOL = 0.25


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("adain", [False, True])
def test_outputs_match_reference_for_each_fidelity(model, vectors, adain):
    """One batch of three faces with w = (0, 0.5, 1) as a tensor equals the three reference runs."""
    x = vectors["input"].expand(3, -1, -1, -1)
    with torch.inference_mode():
        out, logits, lq_feat = model(x, w=torch.tensor([0.0, 0.5, 1.0]), adain=adain)
    for sample, w in enumerate(("0.0", "0.5", "1.0")):
        assert max_diff(out[sample : sample + 1], vectors[f"out_w{w}_adain{int(adain)}"]) <= OUT_ATOL
        assert max_diff(logits[sample : sample + 1], vectors["code_only_logits"]) <= FEATURE_ATOL
        assert max_diff(lq_feat[sample : sample + 1], vectors["code_only_lq_feat"]) <= FEATURE_ATOL
        assert torch.equal(logits[sample].argmax(dim=1), vectors["code_indices"])


def test_code_only_returns_logits_and_encoder_features(model, vectors):
    with torch.inference_mode():
        result = model(vectors["input"], code_only=True)
    assert len(result) == 2
    logits, lq_feat = result
    assert logits.shape == (1, 256, 1024) and lq_feat.shape == (1, 256, 16, 16)
    assert max_diff(logits, vectors["code_only_logits"]) <= FEATURE_ATOL
    assert max_diff(lq_feat, vectors["code_only_lq_feat"]) <= FEATURE_ATOL
    assert torch.equal(logits[0].argmax(dim=1), vectors["code_indices"])


def test_batch_equals_reference_and_samples_one_by_one(model, vectors):
    x = vectors["batch2_input"]
    with torch.inference_mode():
        batched, logits, _ = model(x, w=0.5, adain=True)
        singles = [model(x[i : i + 1], w=0.5, adain=True)[0] for i in range(2)]
    assert max_diff(batched, vectors["batch2_out_w0.5_adain1"]) <= OUT_ATOL
    assert torch.equal(logits.argmax(dim=2), vectors["batch2_code_indices"])
    for i, single in enumerate(singles):
        assert max_diff(batched[i : i + 1], single) <= OUT_ATOL


def test_float64_matches_reference_closely(model, vectors):
    model64 = CodeFormer(model.config).double().eval()
    model64.load_state_dict(model.state_dict())
    with torch.inference_mode():
        out, logits, lq_feat = model64(vectors["input"].double(), w=1.0, adain=False)
    assert max_diff(out, vectors["out_w1.0_adain0"]) <= FLOAT64_ATOL
    assert max_diff(logits, vectors["code_only_logits"]) <= FLOAT64_ATOL
    assert max_diff(lq_feat, vectors["code_only_lq_feat"]) <= FLOAT64_ATOL


def test_fidelity_zero_skips_fusion_per_sample(model, vectors):
    """w = 0 must leave a face exactly as if CFT did not exist, even beside a w > 0 face."""
    x = vectors["input"].expand(2, -1, -1, -1)
    with torch.inference_mode():
        mixed = model(x, w=torch.tensor([0.0, 0.7]))[0]
        skipped = model(x, w=0)[0]
    assert torch.equal(mixed[0], skipped[0])
    assert max_diff(mixed[1], skipped[1]) > 1e-2


def test_unknown_argument_is_an_error(model, vectors):
    with pytest.raises(TypeError):
        model(vectors["input"], weight=0.5)


def test_fidelity_tensor_must_have_one_value_per_face(model, vectors):
    with pytest.raises(ValueError, match="one per face"):
        model(vectors["input"], w=torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("w", [-0.5, 1.5, float("nan"), torch.tensor([0.5, 2.0])])
def test_fidelity_outside_unit_range_is_refused_before_any_work(w):
    network = CodeFormer(small_config())  # uninitialised: the check must come before the encoder
    with pytest.raises(ValueError, match=r"w must lie in \[0, 1\]"):
        network(torch.zeros(2, 3, 512, 512), w=w)


def test_only_aligned_512_faces_are_accepted():
    with pytest.raises(ValueError, match="Align faces"):
        CodeFormer(small_config())(torch.zeros(1, 3, 256, 256))


def small_config() -> CodeFormerConfig:
    return CodeFormerConfig(base_channels=32, n_layers=2, dim_embd=64, dim_mlp=128, n_head=4, emb_dim=32)


def test_fused_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    network = CodeFormer(small_config()).eval()
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    with torch.inference_mode():
        fused = network(x, code_only=True)[0]
        network.set_fused_attention(False)
        explicit = network(x, code_only=True)[0]
    assert max_diff(fused, explicit) <= 1e-5


@pytest.mark.skipif(
    not has_native_bfloat16(torch.device("cpu")),
    reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX): torch emulates it, and a full-size forward "
    "takes over ten minutes",
)
def test_bfloat16_runs_and_stays_close(model, vectors):
    """Whole-network bfloat16 is a different restoration (it flips codes), but its logits stay close."""
    network = CodeFormer(model.config).eval()
    network.load_state_dict(model.state_dict())
    network.to(torch.bfloat16)
    with torch.inference_mode():
        out, logits, _ = network(vectors["input"].bfloat16(), w=0.5, adain=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert out.shape == (1, 3, 512, 512) and logits.shape == (1, 256, 1024)
    same_codes = (logits.float().argmax(dim=2) == vectors["code_indices"]).float().mean().item()
    assert same_codes >= BF16_SAME_CODES
    assert max_diff(logits, vectors["code_only_logits"]) <= BF16_LOGITS_ATOL


NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@NEEDS_CUDA
def test_float32_on_cuda_matches_the_reference_with_tf32_off(model, vectors):
    """CUDA runs float32 convolutions in TF32 by default, enough to flip codes: the network turns it off
    while it runs, and gives the caller's settings back afterwards."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision = matmul.fp32_precision = "tf32"
    try:
        network = CodeFormer(model.config).eval()
        network.load_state_dict(model.state_dict())
        network.to("cuda")
        with torch.inference_mode():
            out, logits, _ = network(vectors["input"].cuda(), w=0.5, adain=True)
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32"), "the caller's settings came back"
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
    assert torch.equal(logits.argmax(dim=2)[0].cpu(), vectors["code_indices"])
    assert max_diff(logits.cpu(), vectors["code_only_logits"]) <= 1e-4
    assert max_diff(out.cpu(), vectors["out_w0.5_adain1"]) <= 5e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 is for CUDA (CPU half convolutions are too slow)")
def test_float16_on_cuda(model, vectors):
    network = CodeFormer(model.config).eval()
    network.load_state_dict(model.state_dict())
    network.to("cuda", torch.float16)
    with torch.inference_mode():
        out = network(vectors["input"].cuda().half(), w=0.5, adain=True)[0]
    assert torch.isfinite(out).all()


def test_channels_last_input_gives_the_same_codes_path(model, vectors):
    """Images usually arrive NHWC; permuted to NCHW they are channels-last, which must not change a digit."""
    x = vectors["input"]
    with torch.inference_mode():
        expected = model(x, code_only=True)
        permuted = model(x.contiguous(memory_format=torch.channels_last), code_only=True)
    assert all(torch.equal(a, b) for a, b in zip(expected, permuted, strict=True))
