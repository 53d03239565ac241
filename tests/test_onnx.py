"""``codeformer-export``: the ONNX model against our torch network and the reference vectors, in onnxruntime.

One export (module fixture) and three faces through each of onnxruntime and torch: a
512x512 forward costs about 10 s on a CPU in either.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from codeformer_nodes.cli.export import main
from codeformer_nodes.models.onnx_export import compare_with_torch, onnx_session
from codeformer_nodes.models.onnx_interface import INPUT_NAME, LOGITS_NAME, OUTPUT_NAME, WEIGHT_NAME

TOLERANCE = 1e-4  # |onnx - torch float32|; both are float32 runs of the same network
# |onnx - float64 reference|: measured 1.2e-5 at w = 0.5 (our torch float32 run: 5.6e-5)
REFERENCE_TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def exported(recipe_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "codeformer.onnx"
    assert main([str(recipe_checkpoint), str(path), "--skip-check"]) == 0
    return path


@pytest.fixture(scope="module")
def session(exported):
    return onnx_session(exported)


def test_has_facefusions_interface_and_a_dynamic_batch(session, exported, capsys):
    inputs = {item.name: item for item in session.get_inputs()}
    outputs = [item.name for item in session.get_outputs()]
    assert list(inputs) == [INPUT_NAME, WEIGHT_NAME] == ["input", "weight"]
    assert outputs == [OUTPUT_NAME, LOGITS_NAME] == ["output", "logits"], "FaceFusion reads output 0"
    assert inputs["input"].type == "tensor(float)" and inputs["weight"].type == "tensor(double)"
    batch, *face = inputs["input"].shape
    assert isinstance(batch, str) and face == [3, 512, 512]
    (weights,) = inputs["weight"].shape
    assert isinstance(weights, str) and weights != batch, "one weight for all faces or one per face"
    graph = onnx.load(str(exported))
    assert graph.opset_import[0].version == 17
    assert "InstanceNormalization" not in {node.op_type for node in graph.graph.node}, "GroupNorm in float64"
    assert exported.stat().st_mode & 0o044, "readable by others, as any written file"
    assert not [p for p in exported.parent.iterdir() if p.name.endswith(".partial")]


def test_facefusion_call_matches_torch_and_the_reference(session, model, vectors):
    """One face, weight (1,) float64 as FaceFusion feeds it; AdaIN inside."""
    result = compare_with_torch(model, session, vectors["input"], 0.5)
    assert result.max_abs_diff <= TOLERANCE
    assert torch.equal(torch.from_numpy(result.codes[0]), vectors["code_indices"])
    reference = vectors["out_w0.5_adain1"].numpy()
    assert np.abs(result.output - reference).max() <= REFERENCE_TOLERANCE


def test_batch_with_a_weight_per_face_including_zero(session, model, vectors):
    """Batch of 2 at w = (0.5, 0): the fusion runs for w = 0 too, scaled to nothing, as torch skips it."""
    result = compare_with_torch(model, session, vectors["batch2_input"], [0.5, 0.0])
    assert result.weights == (0.5, 0.0)
    assert result.max_abs_diff <= TOLERANCE
    assert torch.equal(torch.from_numpy(result.codes), vectors["batch2_code_indices"])
    reference = vectors["batch2_out_w0.5_adain1"][0].numpy()
    assert np.abs(result.output[0] - reference).max() <= REFERENCE_TOLERANCE, "each face got its own weight"


def test_bad_inputs_are_named_errors(tmp_path, capsys):
    other = tmp_path / "esrgan.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(4, 3, 3, 3)}}, other)
    cases = {
        "missing": [str(tmp_path / "missing.pth"), str(tmp_path / "a.onnx")],
        "not CodeFormer": [str(other), str(tmp_path / "b.onnx")],
        "not .onnx": [str(other), str(tmp_path / "c.txt")],
    }
    for case, argv in cases.items():
        assert main(argv) == 1, case
        err = capsys.readouterr().err
        assert err.startswith("codeformer-export: ") and "Traceback" not in err, (case, err)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*partial"))


def test_cli_onnxruntime_backend_takes_the_cached_model_and_gives_the_torch_pixels(
    exported, recipe_checkpoint, model, vectors, tmp_path, monkeypatch
):
    """``--backend onnxruntime`` finds the checked export in the per-user cache (named by the weights' SHA-256)
    and restores as torch does, within a level."""
    from PIL import Image

    from codeformer_nodes.cli.restore import main as restore
    from codeformer_nodes.models.onnx_network import OnnxRuntimeNetwork

    calls = []
    forward = OnnxRuntimeNetwork.forward
    monkeypatch.setattr(OnnxRuntimeNetwork, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "codeformer_nodes" / "onnx" / f"{model.description.sha256}-adain1.onnx"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(exported.read_bytes())
    before = cached.stat().st_mtime_ns
    face = ((vectors["input"][0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(face).save(tmp_path / "face.png")
    common = [str(tmp_path / "face.png"), "--model", str(recipe_checkpoint), "--has-aligned", "--device", "cpu"]
    assert restore([*common, "-o", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    assert restore([*common, "-o", str(tmp_path / "torch"), "--precision", "fp32"]) == 0  # auto may pick bf16
    assert calls == [1], "onnxruntime did not restore the face"
    assert cached.stat().st_mtime_ns == before, "the cached model was exported again"
    ours, theirs = (np.asarray(Image.open(tmp_path / side / "face.png"), np.int16) for side in ("ort", "torch"))
    assert np.abs(ours - theirs).max() <= 1
