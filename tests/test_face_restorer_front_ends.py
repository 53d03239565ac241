"""Other face restorers (GFPGAN, RestoreFormer) through every front end: the loader node, the restore,
SEGS and video paths, the command line; what they cannot do is refused by name.

The cheap checks run a stand-in network wrapped as a GFPGAN restorer (its kind is what the
pipeline reads); the front-end checks load random GFPGANv1.4-shaped weights (``gfpgan_weights`` in
``conftest.py``, built once for both files) and run a few real forwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeformer_nodes import RestoreOptions, restore_faces, sweep_fidelity
from codeformer_nodes.models import SpandrelFaceRestorer, clear_model_cache
from codeformer_nodes.models.restorers import SPANDREL_KINDS
from codeformer_nodes.pipeline.video import VideoOptions, restore_video

from . import comfy_stand_ins
from .conftest import TESTDATA
from .test_face_restorers import RecordingNetwork
from .test_nodes import restore_inputs

DETECTOR = "retinaface_mobile0.25"


def photo(name: str = "group_four.png") -> np.ndarray:
    return np.array(Image.open(TESTDATA / "photos" / name).convert("RGB"))


@pytest.fixture
def stand_in_gfpgan() -> SpandrelFaceRestorer:
    """A GFPGAN-kind restorer around a network that returns its input and records its calls."""
    return SpandrelFaceRestorer(RecordingNetwork(), SPANDREL_KINDS["GFPGAN"], Path("stand-in.pth"), "0" * 64)


@pytest.fixture
def options(helper_weights) -> RestoreOptions:
    return RestoreOptions(flow="facexlib", detector=DETECTOR, weights_dir=helper_weights, parse_mask=False)


@pytest.fixture
def comfy_models(monkeypatch, tmp_path, helper_weights) -> Path:
    """ComfyUI's stand-ins with ``models/facedetection`` holding the detector and a parser; returns ``models``."""
    models = tmp_path / "models"
    comfy_stand_ins.install(monkeypatch, models)
    (models / "facedetection").mkdir(parents=True)
    for helper in helper_weights.iterdir():
        (models / "facedetection" / helper.name).symlink_to(helper)
    return models


def test_tasks_and_sweeps_a_family_cannot_do_are_refused_by_name(stand_in_gfpgan, options):
    rgb = photo()
    refused = r"stand-in.pth holds a GFPGAN restoration checkpoint, but task 'colorization' was asked"
    with pytest.raises(ValueError, match=refused):
        restore_faces([rgb], stand_in_gfpgan, RestoreOptions(task="colorization", detector=DETECTOR))
    with pytest.raises(ValueError, match="a fidelity sweep varies CodeFormer's w, which GFPGAN does not take"):
        sweep_fidelity([rgb], stand_in_gfpgan, [0.0, 1.0], options)
    restored = restore_faces([rgb], stand_in_gfpgan, options)
    assert restored.faces, "restoration itself runs"
    assert all(face.fidelity is None for face in restored.faces), "no w is reported for a network that reads none"
    assert all(face["fidelity"] is None for face in json.loads(restored.faces_json()))
    assert stand_in_gfpgan.network.calls and all(call == SPANDREL_KINDS["GFPGAN"].network_call
                                                 for call in stand_in_gfpgan.network.calls)  # fmt: skip


def test_video_restores_each_frame_with_the_default_windows(stand_in_gfpgan, options):
    """The code and feature windows steady CodeFormer's codes; GFPGAN has none to steady, so the default
    video options run it frame by frame (faces still placed by the steadied landmarks), not refuse it."""
    frames = [np.ascontiguousarray(np.roll(photo(), dx, axis=1)) for dx in (0, 2, 4)]
    defaults = VideoOptions()
    assert defaults.splits_network, "the defaults average codes and features along a track"
    results = list(restore_video(frames, stand_in_gfpgan, options, defaults))
    assert [len(result.faces) for result in results] == [4, 4, 4]
    assert all(face.fidelity is None for result in results for face in result.faces)
    assert sorted(face.track_id for face in results[-1].faces) == [0, 1, 2, 3]
    assert len(stand_in_gfpgan.network.calls) >= 3, "each frame's faces through the network itself"


def test_segs_restore_with_another_family(stand_in_gfpgan, comfy_models):
    import comfy.model_patcher

    from codeformer_nodes.models import Precision
    from codeformer_nodes.nodes import host
    from codeformer_nodes.nodes.codeformer import CodeFormerRestoreFaces
    from codeformer_nodes.nodes.segs import CodeFormerFacesToSEGS, CodeFormerRestoreSEGS

    patcher = comfy.model_patcher.ModelPatcher(stand_in_gfpgan, torch.device("cpu"), torch.device("cpu"))
    model = host.CodeFormerModel(patcher=patcher, kind=stand_in_gfpgan.kind, task="restoration", precision=Precision())
    image = torch.from_numpy(photo() / np.float32(255))[None]
    _, _, _, _, faces, _, count = CodeFormerRestoreFaces().restore(image, model, **restore_inputs(flow="facexlib"))
    (segs,) = CodeFormerFacesToSEGS().convert(image, faces)
    (restored,) = CodeFormerRestoreSEGS().restore(image, segs, model, 0.5, DETECTOR, 640, 0.97, flow="facexlib")
    assert count == len(restored[1]) == 4
    assert all(call == SPANDREL_KINDS["GFPGAN"].network_call for call in stand_in_gfpgan.network.calls)


# --- real (random) GFPGAN weights through the loader node and the command line ---


def test_loader_node_loads_gfpgan_and_the_restore_node_ignores_w_and_batches(gfpgan_weights, comfy_models):
    from codeformer_nodes.nodes.codeformer import CodeFormerModelLoader, CodeFormerRestoreFaces

    folder = comfy_models / "facerestore_models"
    folder.mkdir(parents=True)
    (folder / "my-gfpgan.pth").symlink_to(gfpgan_weights)
    assert CodeFormerModelLoader.INPUT_TYPES()["required"]["model_name"][0][0] == "my-gfpgan.pth"
    model, task = CodeFormerModelLoader().load("my-gfpgan.pth", "auto")
    assert task == "restoration" and model.kind.architecture == "GFPGAN" and not model.kind.accepts_fidelity
    image = torch.from_numpy(photo() / np.float32(255))[None]
    two_faces = {"face_selection": "indices", "face_indices": "0,1"}
    inputs = restore_inputs(flow="facexlib", parse_mask=True, w=0.0, chunk_size=8, **two_faces)  # one batch of 2
    node_image, *_, count = CodeFormerRestoreFaces().restore(image, model, **inputs)
    try:
        one_by_one = restore_faces(
            image,
            model.network_on_device(),
            RestoreOptions(flow="facexlib", detector=DETECTOR, weights_dir=comfy_models / "facedetection",
                           face_selection=(0, 1), parse_mask=True, fidelity=1.0, chunk_size=1),
        )  # fmt: skip
    finally:
        clear_model_cache()
    assert count == 2
    difference = (node_image[0] - one_by_one.images[0]).abs()
    print(f"batched against one by one: max {float(difference.max()) * 255:.2f} levels")
    assert float(difference.max()) <= 1.01 / 255, "w 0 batched in the node, w 1 one by one: the same faces"
    assert not torch.equal(node_image, image)


def test_command_line_restores_with_gfpgan_and_refuses_what_it_cannot_do(
    gfpgan_weights,
    helper_weights,
    tmp_path,
    capsys,
):
    from codeformer_nodes.cli.restore import main

    source = tmp_path / "in" / "four.png"
    source.parent.mkdir()
    Image.fromarray(photo()).save(source)
    common = [str(source), "--model", str(gfpgan_weights), "--detector", DETECTOR, "--weights-dir",
              str(helper_weights), "--flow", "facexlib", "--only-center-face"]  # fmt: skip
    try:
        assert main([*common, "-o", str(tmp_path / "colour"), "--task", "colorization"]) == 2
        assert "holds a GFPGAN restoration checkpoint, but task 'colorization'" in capsys.readouterr().err
        assert main([*common, "-o", str(tmp_path / "onnx"), "--backend", "onnxruntime"]) == 2
        assert "runs CodeFormer's ONNX export only; GFPGAN" in capsys.readouterr().err
        assert not (tmp_path / "colour").exists() and not (tmp_path / "onnx").exists()
        assert main([*common, "-o", str(tmp_path / "out"), "-w", "0.9", "--report", "-"]) == 0
    finally:
        clear_model_cache()
    (entry,) = json.loads(capsys.readouterr().out)["images"]
    assert [face["fidelity"] for face in entry["faces"]] == [None], "the report claims no w GFPGAN did not read"
    restored = np.array(Image.open(tmp_path / "out" / "four.png"))  # upscaled 2x, as the official command
    height, width, _ = photo().shape
    assert restored.shape == (2 * height, 2 * width, 3)
