"""The ComfyUI nodes, called directly with tensors in ComfyUI's layouts."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codeformer_nodes.models import Precision, WeightsFileError
from codeformer_nodes.models.downloads import MIRROR_VARIABLE
from codeformer_nodes.models.restorers import CODEFORMER_KIND
from codeformer_nodes.nodes import host
from codeformer_nodes.nodes.codeformer import (
    CodeFormerFidelity,
    CodeFormerModelLoader,
    CodeFormerPasteFaces,
    CodeFormerRestoreFaces,
)

from . import comfy_stand_ins
from .conftest import TESTDATA

HAVE_COMFY = importlib.util.find_spec("comfy") is not None and importlib.util.find_spec("folder_paths") is not None
DETECTOR = "retinaface_mobile0.25"


@pytest.fixture
def comfy(monkeypatch, tmp_path, helper_weights):
    if HAVE_COMFY:
        pytest.skip("these tests use stand-ins; a real ComfyUI is exercised by comfy_e2e.py")
    record = comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    (tmp_path / "models" / "facedetection").mkdir(parents=True)
    for helper in helper_weights.iterdir():  # the detector and a parser
        shutil.copy(helper, tmp_path / "models" / "facedetection")
    return record


@pytest.fixture
def photo() -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB")) / 255.0).float()


class InvertingNetwork(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, w=0, adain=False):
        return (-x, None, None)


@pytest.fixture
def stand_in_model():
    import comfy.model_patcher

    network = InvertingNetwork()
    return host.CodeFormerModel(
        patcher=comfy.model_patcher.ModelPatcher(network, torch.device("cpu"), torch.device("cpu")),
        kind=CODEFORMER_KIND,
        task="restoration",
        precision=Precision(),
    )


def restore_inputs(**changes) -> dict:
    inputs = {
        "w": 0.5, "detector": DETECTOR, "detection_size": 640, "confidence": 0.97, "face_selection": "all",
        "face_indices": "", "min_face_size": 0, "max_face_size": 0, "has_aligned": False, "upscale": 1,
        "parse_mask": False, "chunk_size": 8,
    }  # fmt: skip
    return {**inputs, **changes}


def test_loader_registers_folder_lists_files_and_loads_by_keys(comfy, tmp_path, recipe_checkpoint, monkeypatch):
    import folder_paths

    official = ["codeformer.pth", "codeformer_colorization.pth", "codeformer_inpainting.pth", "GFPGANv1.4.pth"]
    folder_paths.folder_names_and_paths["facerestore_models"] = (["/elsewhere/theirs"], {".onnx"})
    assert CodeFormerModelLoader.INPUT_TYPES()["required"]["model_name"][0] == official, "offered while absent"
    paths, extensions = folder_paths.folder_names_and_paths["facerestore_models"]
    assert paths[0] == "/elsewhere/theirs" and {".onnx", ".pth", ".safetensors"} <= set(extensions)
    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")  # offline: choosing one tries to fetch it
    with pytest.raises(WeightsFileError, match="codeformer.pth is in none of /elsewhere/theirs"):
        CodeFormerModelLoader().load("codeformer.pth", "auto")
    with pytest.raises(FileNotFoundError, match="facerestore_models"):
        CodeFormerModelLoader().load("mine.pth", "auto")

    folder = tmp_path / "models" / "facerestore_models"
    folder.mkdir(parents=True)
    (folder / "codeformer-v0.1.0.pth").symlink_to(recipe_checkpoint)
    assert CodeFormerModelLoader.INPUT_TYPES()["required"]["model_name"][0] == ["codeformer-v0.1.0.pth", *official]
    model, task = CodeFormerModelLoader().load("codeformer-v0.1.0.pth", "auto")
    assert task == model.task == "restoration" and model.precision.keeps_codes
    assert model.kind.architecture == "CodeFormer" and model.kind.accepts_fidelity
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        CodeFormerModelLoader().load("codeformer-v0.1.0.pth", "fp16")


def test_restore_node_outputs_and_leaves_inputs_alone(comfy, photo, stand_in_model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    batch = torch.stack([photo, photo])
    before = batch.clone()
    image, mask, crops, restored, faces, faces_json, count = CodeFormerRestoreFaces().restore(
        batch, stand_in_model, **restore_inputs(chunk_size=3)
    )
    assert torch.equal(batch, before)
    assert image.shape == batch.shape and mask.shape == batch.shape[:3]
    assert crops.shape == restored.shape == (8, 512, 512, 3)
    assert count == 8 and len(json.loads(faces_json)) == 8
    assert comfy.loaded and comfy.progress[-1] == (8, 8) and len(comfy.progress) == 3
    assert torch.equal(image[mask == 0], batch[mask == 0])

    pasted, pasted_mask = CodeFormerPasteFaces().paste(batch, faces, restored)
    assert torch.allclose(pasted, image, atol=1e-6) and torch.equal(pasted_mask, mask)


def test_no_face_gives_placeholder_crops(comfy, stand_in_model):
    blank = torch.rand(1, 128, 128, 3)
    image, mask, crops, restored, faces, _, count = CodeFormerRestoreFaces().restore(
        blank, stand_in_model, **restore_inputs()
    )
    assert count == 0 and torch.equal(image, blank) and mask.abs().sum() == 0
    assert crops.shape == restored.shape == (1, 512, 512, 3)
    assert torch.equal(CodeFormerPasteFaces().paste(blank, faces, crops)[0], blank)


def test_fidelity_sweep_and_mask(comfy, photo, stand_in_model):
    (control,) = CodeFormerFidelity().build(0.5, 1.0, False, 0.3, 0.7, 64, 256, "0, 0.5, 1")
    assert control.sweep == (0.0, 0.5, 1.0)
    image, *_, count = CodeFormerRestoreFaces().restore(
        photo[None], stand_in_model, **restore_inputs(), fidelity=control
    )
    assert image.shape[0] == 3 and count == 12
    left_half = torch.zeros(1, *photo.shape[:2])
    left_half[:, :, : photo.shape[1] // 2] = 1
    *_, count = CodeFormerRestoreFaces().restore(photo[None], stand_in_model, **restore_inputs(), mask=left_half)
    assert count == 2
    with pytest.raises(ValueError, match="outside"):
        CodeFormerFidelity().build(0.5, 1.0, False, 0.3, 0.7, 64, 256, "0.5, 2")


@pytest.mark.parametrize("upscale", [1, 2])
def test_after_a_sweep_crops_go_back_into_the_original_and_never_into_the_output(comfy, photo, stand_in_model, upscale):
    (control,) = CodeFormerFidelity().build(0.5, 1.0, False, 0.3, 0.7, 64, 256, "0, 1")
    original = photo[None]
    image, _, _, restored, faces, _, count = CodeFormerRestoreFaces().restore(
        original, stand_in_model, **restore_inputs(upscale=upscale), fidelity=control
    )
    assert image.shape == (2, photo.shape[0] * upscale, photo.shape[1] * upscale, 3) and count == 8
    pasted, _ = CodeFormerPasteFaces().paste(original, faces, restored)
    assert torch.allclose(pasted, image, atol=1e-6), "the restored crops pasted back give the restore node's images"
    with pytest.raises(ValueError, match="the image the restore node was given"):
        CodeFormerPasteFaces().paste(image, faces, restored)


def test_the_paste_node_refuses_crops_it_cannot_paste(comfy, photo, stand_in_model):
    *_, restored, faces, _, _ = CodeFormerRestoreFaces().restore(photo[None], stand_in_model, **restore_inputs())
    for bad, message in [(restored * 5, "outside"), (restored.mul(255).to(torch.uint8), "uint8")]:
        with pytest.raises(ValueError, match=message):
            CodeFormerPasteFaces().paste(photo[None], faces, bad)


def test_interruption_is_raised_the_comfy_way(comfy, photo, stand_in_model):
    comfy.interrupt_after = 1
    with pytest.raises(comfy_stand_ins.InterruptProcessingException):
        CodeFormerRestoreFaces().restore(torch.stack([photo] * 2), stand_in_model, **restore_inputs(chunk_size=2))


def test_detector_change_takes_effect(comfy, stand_in_model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    torch.save(RetinaFace(network_name="resnet50", device="cpu").state_dict(),
               tmp_path / "models" / "facedetection" / "detection_Resnet50_Final.pth")  # fmt: skip
    from codeformer_nodes.pipeline import detection

    before = set(detection._detectors)
    for name in (DETECTOR, "retinaface_resnet50", DETECTOR):
        CodeFormerRestoreFaces().restore(
            torch.rand(1, 64, 64, 3), stand_in_model, **restore_inputs(detector=name, confidence=1.0)
        )
    built = [key for key in detection._detectors if key not in before]  # keys: (name, device, weights file)
    assert sorted(name for name, _, _ in built) == [DETECTOR, "retinaface_resnet50"], "each built once, then reused"
    assert {Path(path).parent for _, _, path in built} == {(tmp_path / "models" / "facedetection").resolve()}


def test_older_comfy_is_reported_in_one_line(comfy, monkeypatch):
    import comfy.utils

    monkeypatch.delattr(comfy.utils, "ProgressBar")
    assert host.missing_host_api() == ["comfy.utils.ProgressBar"]


def test_video_node_keeps_the_frame_count_and_reports_tracks(comfy, photo, stand_in_model):
    from codeformer_nodes.nodes.video import CodeFormerRestoreVideo

    frames = torch.stack([photo, photo.roll(1, dims=1), photo, torch.zeros_like(photo)])
    restored, faces_json, tracks = CodeFormerRestoreVideo().restore(
        frames,
        stand_in_model,
        0.5,
        DETECTOR,
        640,
        0.97,
        landmark_window=3,
        code_window=1,
        max_gap=0,
        tracks="1, 2",
        feature_window=1,
    )
    assert restored.shape == frames.shape and tracks == 2
    assert torch.equal(restored[3], frames[3]), "a frame without faces comes back unchanged"
    faces = json.loads(faces_json)
    assert {face["track_id"] for face in faces} == {1, 2} and {face["image_index"] for face in faces} == {0, 1, 2}
    assert comfy.progress[-1] == (4, 4)


def every_input(node: type) -> dict[str, tuple]:
    declared = node.INPUT_TYPES()
    return {**declared["required"], **declared.get("optional", {})}


def test_every_input_and_output_says_what_it_does(monkeypatch, tmp_path):
    """ComfyUI shows ``tooltip`` on hover, OUTPUT_TOOLTIPS on the outputs and DESCRIPTION on the title."""
    if HAVE_COMFY:
        pytest.skip("these tests use stand-ins")
    comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    from codeformer_nodes.nodes import NODE_CLASS_MAPPINGS
    from codeformer_nodes.pipeline.option_help import RESTORE_HELP, VIDEO_HELP

    for name, node in NODE_CLASS_MAPPINGS.items():
        for input_name, (kind, *settings) in every_input(node).items():
            tooltip = settings[0].get("tooltip", "") if settings else ""
            assert tooltip.strip(), f"{name}.{input_name} has no tooltip"
            library_text = {**RESTORE_HELP, **VIDEO_HELP}.get(input_name)
            if library_text is not None and (isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")):
                assert tooltip.startswith(library_text), f"{name}.{input_name}: the library's text comes first"
        assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES), f"{name}: one output tooltip per output"
        assert all(text.strip() for text in node.OUTPUT_TOOLTIPS) and node.DESCRIPTION.strip(), name


def test_video_node_takes_code_margin_and_defaults_it_for_older_workflows(comfy, stand_in_model, monkeypatch):
    from codeformer_nodes.nodes import video

    given = []
    monkeypatch.setattr(video, "restore_video", lambda frames, network, options, clip: given.append(clip) or [])
    inputs = {"w": 0.5, "detector": DETECTOR, "detection_size": 640, "confidence": 0.97, "landmark_window": 3,
              "code_window": 5, "max_gap": 0, "tracks": ""}  # fmt: skip
    frames = torch.zeros(0, 64, 64, 3)
    video.CodeFormerRestoreVideo().restore(frames, stand_in_model, **inputs, code_margin=0.4, feature_window=3)
    video.CodeFormerRestoreVideo().restore(frames, stand_in_model, **inputs)
    assert [clip.code_margin for clip in given] == [0.4, video.VideoOptions().code_margin]
    assert [clip.feature_window for clip in given] == [3, video.VideoOptions().feature_window]
