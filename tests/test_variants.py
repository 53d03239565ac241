"""The colorization and inpainting checkpoints run as their official inference calls them."""

from __future__ import annotations

import pytest
import torch

from codeformer_nodes.models import clear_model_cache, load_codeformer

OUT_ATOL = 5e-4
FEATURE_ATOL = 1e-4


@pytest.fixture
def variant_model(recipe_weights, tmp_path):
    def build(manifest: str):
        path = tmp_path / "variant.pth"
        torch.save({"params_ema": recipe_weights(manifest)}, path)
        return load_codeformer(path, precision="fp32")  # the reference is float32, whatever auto picks here

    yield build
    clear_model_cache()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def test_colorization_matches_reference(variant_model, variant_vectors):
    network = variant_model("manifest_colorization.json")
    with torch.inference_mode():
        out, logits, _ = network(variant_vectors["color_input"], w=0, adain=True)
    assert max_diff(out, variant_vectors["color_out_w0_adain1"]) <= OUT_ATOL
    assert max_diff(logits, variant_vectors["color_logits"]) <= FEATURE_ATOL
    assert torch.equal(logits[0].argmax(dim=1), variant_vectors["color_code_indices"])


def test_inpainting_matches_reference(variant_model, variant_vectors):
    network = variant_model("manifest_inpainting.json")
    x = variant_vectors["inpaint_input"]
    with torch.inference_mode():
        raw, logits, _ = network(x, w=1, adain=False)
    assert logits.shape == (1, 256, 512)
    assert max_diff(raw, variant_vectors["inpaint_raw_out_w1_adain0"]) <= OUT_ATOL
    assert max_diff(logits, variant_vectors["inpaint_logits"]) <= FEATURE_ATOL
    assert torch.equal(logits[0].argmax(dim=1), variant_vectors["inpaint_code_indices"])


def test_inpainting_mask_rule_and_blend(variant_vectors):
    from codeformer_nodes.pipeline.tasks import blend_inpainting, white_pixels

    x = variant_vectors["inpaint_input"]
    mask = white_pixels(x)
    assert torch.equal(mask, variant_vectors["inpaint_mask"])
    raw = variant_vectors["inpaint_raw_out_w1_adain0"]
    blended = blend_inpainting(x, raw, mask)
    assert max_diff(blended, variant_vectors["inpaint_blended"]) <= 1e-6
    outside = mask.expand_as(x) == 0
    assert torch.equal(blended[outside], x[outside])
