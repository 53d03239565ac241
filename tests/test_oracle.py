"""Our network against spandrel_extra_arches' CodeFormer, an independent published build.

The oracle always applies AdaIN, takes the fidelity as ``weight=``, returns (out, logits)
and runs in float32 only. It is installed from the registry and called, never copied.
"""

from __future__ import annotations

import torch
from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

ORACLE_OUT_ATOL = 2e-3
LOGITS_ATOL = 1e-4
REFERENCE_OUT_ATOL = 5e-4


def test_matches_spandrel_extra_arches(model, recipe_weights, vectors):
    oracle = CodeFormerArch().load(dict(recipe_weights("manifest.json"))).model.eval()
    x = vectors["input"]
    with torch.inference_mode():
        expected_out, expected_logits = oracle(x, weight=0.5)[:2]
        out, logits, _ = model(x, w=0.5, adain=True)
    assert torch.equal(logits.argmax(dim=2), expected_logits.argmax(dim=2))
    assert (logits - expected_logits).abs().max().item() <= LOGITS_ATOL
    assert (out - expected_out).abs().max().item() <= ORACLE_OUT_ATOL
    # Both float32 builds sit within the reference's float32 tolerance of the float64 vectors. Which one
    # is closer depends on the CPU's kernels (with AVX2, ours 5.7e-5 and the oracle 5.2e-5; with
    # AVX-512, ours was the closer), so that is not asserted.
    for output in (out, expected_out):
        assert (output - vectors["out_w0.5_adain1"]).abs().max().item() <= REFERENCE_OUT_ATOL
