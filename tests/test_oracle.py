"""Our network against spandrel_extra_arches' CodeFormer, an independent published build.

The oracle always applies AdaIN, takes the fidelity as ``weight=``, returns (out, logits)
and runs in float32 only. It is installed from the registry and called, never copied.
"""

from __future__ import annotations

import torch
from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

ORACLE_OUT_ATOL = 2e-3
LOGITS_ATOL = 1e-4


def test_matches_spandrel_extra_arches(model, recipe_weights, vectors):
    oracle = CodeFormerArch().load(dict(recipe_weights("manifest.json"))).model.eval()
    x = vectors["input"]
    with torch.inference_mode():
        expected_out, expected_logits = oracle(x, weight=0.5)[:2]
        out, logits, _ = model(x, w=0.5, adain=True)
    assert torch.equal(logits.argmax(dim=2), expected_logits.argmax(dim=2))
    assert (logits - expected_logits).abs().max().item() <= LOGITS_ATOL
    assert (out - expected_out).abs().max().item() <= ORACLE_OUT_ATOL
    # We are closer to the float64 reference than the float32 oracle is.
    ours = (out - vectors["out_w0.5_adain1"]).abs().max().item()
    theirs = (expected_out - vectors["out_w0.5_adain1"]).abs().max().item()
    assert ours <= theirs
