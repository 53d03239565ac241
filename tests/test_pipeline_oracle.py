"""The face pipeline against facexlib's FaceRestoreHelper, the official flow's helper.

The helper is the oracle only. It always builds a ParseNet, so a randomly initialised one
is saved in a temporary model folder beside a copy of the real MobileNet detector.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from codeformer_nodes import RestoreOptions, paste_faces, restore_faces
from codeformer_nodes.pipeline.restore import find_faces

from .conftest import TESTDATA

PHOTOS = ("group_small.jpg", "group_four.png")
DETECTOR = "retinaface_mobile0.25"


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    source = TESTDATA / "weights" / "detection_mobilenet0.25_Final.pth"
    if not source.exists():
        pytest.skip(f"{source} is absent: the real detector lives in ../shared/testdata")
    folder = tmp_path_factory.mktemp("facexlib_weights")
    shutil.copy(source, folder / source.name)
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    return folder


def read_rgb(name: str) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(TESTDATA / "photos" / name).convert("RGB"))


def oracle_helper(weights_dir, bgr: np.ndarray):
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    helper = FaceRestoreHelper(
        1, face_size=512, det_model=DETECTOR, use_parse=False, device=torch.device("cpu"), model_rootpath=weights_dir
    )
    helper.read_image(bgr)
    helper.get_face_landmarks_5(resize=640, eye_dist_threshold=5)
    helper.align_warp_face()
    return helper


def options(weights_dir, **changes) -> RestoreOptions:
    return RestoreOptions(detector=DETECTOR, weights_dir=weights_dir, **changes)


def matched(ours, theirs_landmarks) -> list[int]:
    """For each oracle face, the index of our face with the nearest landmarks."""
    ours_landmarks = np.array([face.landmarks for face in ours])
    return [int(np.argmin(np.abs(ours_landmarks - np.array(t)).sum(axis=(1, 2)))) for t in theirs_landmarks]


@pytest.mark.parametrize("photo", PHOTOS)
def test_same_faces_landmarks_affines_and_crops(weights_dir, photo):
    rgb = read_rgb(photo)
    helper = oracle_helper(weights_dir, np.ascontiguousarray(rgb[..., ::-1]))
    faces, crops = find_faces([torch.from_numpy(rgb / np.float32(255))], options(weights_dir), torch.device("cpu"))
    assert len(faces) == len(helper.all_landmarks_5) == 4
    order = matched(faces, helper.all_landmarks_5)
    assert sorted(order) == [0, 1, 2, 3]
    for theirs, ours in enumerate(order):
        np.testing.assert_allclose(faces[ours].landmarks, helper.all_landmarks_5[theirs], atol=1e-4)
        np.testing.assert_allclose(faces[ours].affine, helper.affine_matrices[theirs], atol=1e-6)
        assert np.array_equal(crops[ours], helper.cropped_faces[theirs][..., ::-1]), "crops must be bit-identical"
        # facexlib multiplies the score by the detection scale; we report the detector's own score.
        assert 0.97 < faces[ours].score <= 1.0


def test_paste_matches_facexlib_within_one_level(weights_dir):
    rgb = read_rgb("group_four.png")
    helper = oracle_helper(weights_dir, np.ascontiguousarray(rgb[..., ::-1]))
    picture = torch.from_numpy(rgb / np.float32(255))
    faces, crops = find_faces([picture], options(weights_dir), torch.device("cpu"))
    edited = 255 - crops  # any face-shaped content will do; the same for both
    for ours in matched(faces, helper.all_landmarks_5):
        helper.add_restored_face(np.ascontiguousarray(edited[ours][..., ::-1]))
    helper.get_inverse_affine()
    expected = helper.paste_faces_to_input_image()[..., ::-1].astype(np.float64)
    result = paste_faces([picture], faces, torch.from_numpy(edited / np.float32(255)), options(weights_dir))
    ours = result.images[0].numpy().astype(np.float64) * 255
    # facexlib warps the face in uint8 (rounding, +-0.5) and truncates the result (-1..0); we
    # stay in float. Centred on its truncation, the difference is within one level.
    pasted = result.masks[0].numpy() > 0
    assert np.abs(ours[pasted] - (expected[pasted] + 0.5)).max() <= 1.0 + 1e-3
    assert np.array_equal(ours[~pasted].round(), expected[~pasted])
    assert result.masks[0].max() == 1.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


def test_final_image_matches_official_flow(weights_dir, model):
    """End to end with recipe weights: the official flow's uint8 result at PSNR >= 45 dB."""
    rgb = read_rgb("group_small.jpg")
    helper = oracle_helper(weights_dir, np.ascontiguousarray(rgb[..., ::-1]))
    crops = np.stack([face[..., ::-1] for face in helper.cropped_faces])
    x = ((torch.from_numpy(crops.copy()).permute(0, 3, 1, 2).double() / 255).float() - 0.5) / 0.5
    with torch.inference_mode():
        out = model(x, w=0.5, adain=True)[0]
    official_faces = ((out.clamp(-1, 1) + 1) / 2 * 255).round().byte().permute(0, 2, 3, 1).numpy()
    for face in official_faces:
        helper.add_restored_face(np.ascontiguousarray(face[..., ::-1]))
    helper.get_inverse_affine()
    expected = helper.paste_faces_to_input_image()[..., ::-1]

    result = restore_faces([rgb], model, options(weights_dir, fidelity=0.5))
    ours = (result.images[0].numpy() * 255).round()
    assert psnr(ours, expected) >= 45
    face_region = result.masks[0].numpy() > 0
    assert face_region.any()
    assert psnr(ours[face_region], expected[face_region]) >= 45
