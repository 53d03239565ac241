"""The facexlib flow against facexlib's FaceRestoreHelper (GFPGAN's and AUTOMATIC1111's helper).

The helper is the oracle only. It always builds a ParseNet, so a randomly initialised one
is saved in a temporary model folder beside a copy of the real MobileNet detector.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from benchmarks.scenes import crowd_rgb
from codeformer_nodes import RestoreOptions, paste_faces, restore_faces
from codeformer_nodes.pipeline.faces import find_faces

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
    return RestoreOptions(flow="facexlib", detector=DETECTOR, weights_dir=weights_dir, **changes)


def matched(ours, theirs_landmarks) -> list[int]:
    """For each oracle face, the index of our face with the nearest landmarks."""
    ours_landmarks = np.array([face.landmarks for face in ours])
    return [int(np.argmin(np.abs(ours_landmarks - np.array(t)).sum(axis=(1, 2)))) for t in theirs_landmarks]


@pytest.mark.parametrize("photo", [*PHOTOS, "crowd"])
def test_same_faces_landmarks_affines_and_crops(weights_dir, photo):
    rgb = crowd_rgb() if photo == "crowd" else read_rgb(photo)
    helper = oracle_helper(weights_dir, np.ascontiguousarray(rgb[..., ::-1]))
    faces, crops = find_faces([torch.from_numpy(rgb / np.float32(255))], options(weights_dir), torch.device("cpu"))
    assert len(faces) == len(helper.all_landmarks_5) == (8 if photo == "crowd" else 4)
    order = matched(faces, helper.all_landmarks_5)
    assert sorted(order) == list(range(len(faces)))
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


# --- Paste against the official helper on the paths where it differs from the plain case ---
#
# The restored faces are a cheap stand-in, identical on both sides: each crop mirrored, which (unlike
# a change of each pixel on its own) gives overlapping faces different content, as a restoration
# does. No network runs here: what is compared is the paste (order, upscale, parse mask, borders, grey).


def grey_rgb() -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(read_rgb("group_four.png"), cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


CASES = {
    # name: (image, our options, helper settings, faces expected)
    "crowd": (crowd_rgb, {}, {}, 8),
    "upscale_2": (lambda: read_rgb("group_small.jpg"), {"upscale": 2}, {"upscale": 2}, 4),
    "upscale_4": (lambda: read_rgb("group_small.jpg"), {"upscale": 4}, {"upscale": 4}, 4),
    "past_the_border": (lambda: read_rgb("group_four.png")[20:300, 140:1050], {}, {}, 4),
    "smaller_than_detection": (lambda: read_rgb("group_four.png")[::3, ::3], {}, {}, 4),
    "grey": (grey_rgb, {}, {"grey": True}, 4),
    "center": (lambda: read_rgb("group_four.png"), {"face_selection": "center"}, {"only_center_face": True}, 1),
    # one face: a ParseNet forward takes seconds on a CPU, and each side runs one per face
    "center_parse_mask": (
        lambda: read_rgb("group_four.png"),
        {"face_selection": "center", "parse_mask": True},
        {"only_center_face": True, "use_parse": True},
        1,
    ),
}


def official_paste(weights_dir, rgb: np.ndarray, restored_rgb: list[np.ndarray], landmarks, settings: dict):
    """The helper's paste of ``restored_rgb`` (uint8, matched to its faces by ``landmarks``)."""
    import cv2
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    helper = FaceRestoreHelper(
        settings.get("upscale", 1), face_size=512, det_model=DETECTOR, use_parse=settings.get("use_parse", False),
        device=torch.device("cpu"), model_rootpath=weights_dir,
    )  # fmt: skip
    helper.read_image(np.ascontiguousarray(rgb[..., ::-1]))
    helper.get_face_landmarks_5(
        resize=640, eye_dist_threshold=5, only_center_face=settings.get("only_center_face", False)
    )
    helper.align_warp_face()
    assert len(helper.all_landmarks_5) == len(restored_rgb)
    ours = np.array(landmarks)
    for theirs in helper.all_landmarks_5:
        index = int(np.argmin(np.abs(ours - np.array(theirs)).sum(axis=(1, 2))))
        assert np.abs(ours[index] - theirs).max() < 1e-4
        face = np.ascontiguousarray(restored_rgb[index][..., ::-1])
        if settings.get("grey"):  # the official flow makes a grey input's restored faces grey
            face = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        helper.add_restored_face(face)
    helper.get_inverse_affine()
    return helper.paste_faces_to_input_image()[..., ::-1]


@pytest.mark.parametrize("case", CASES)
def test_paste_matches_the_official_flow(weights_dir, case):
    make_image, changes, settings, face_count = CASES[case]
    rgb = make_image()
    picture = torch.from_numpy(rgb / np.float32(255))
    faces, crops = find_faces([picture], options(weights_dir, **changes), torch.device("cpu"))
    assert len(faces) == face_count
    edited = np.ascontiguousarray(crops[:, :, ::-1])
    result = paste_faces([picture], faces, torch.from_numpy(edited / np.float32(255)), options(weights_dir, **changes))
    expected = official_paste(weights_dir, rgb, list(edited), [face.landmarks for face in faces], settings)
    ours = result.images[0].numpy().astype(np.float64) * 255
    assert ours.shape == expected.shape
    pasted = result.masks[0].numpy() > 0
    overall, on_faces = psnr(ours, expected), psnr(ours[pasted], expected[pasted])
    print(f"{case}: {overall:.1f} dB overall, {on_faces:.1f} dB on faces")
    assert overall >= 45 and on_faces >= 45
    if changes.get("upscale", 1) == 1:  # untouched pixels are the input's, bit for bit
        assert np.array_equal(result.images[0].numpy()[~pasted], picture.numpy()[~pasted])
        assert np.array_equal(expected[~pasted], rgb[~pasted])
    else:  # the background resized as the official flow resizes it (which rounds to uint8)
        assert np.abs(ours[~pasted] - expected[~pasted]).max() <= 1.0


@pytest.mark.parametrize("image", ["group_small.jpg", "crowd"])
def test_end_to_end_matches_the_official_flow(weights_dir, model, image):
    """Recipe weights, our whole run; its restored faces, rounded to uint8 as the official flow rounds
    the network's output, go through the helper's paste. The crops going in are bit-identical
    (tested above), so one network run serves both sides."""
    rgb = crowd_rgb() if image == "crowd" else read_rgb(image)
    result = restore_faces([rgb], model, options(weights_dir, return_crops=True))
    official_faces = list((result.restored_crops.numpy() * 255).round().astype(np.uint8))
    expected = official_paste(weights_dir, rgb, official_faces, [face.landmarks for face in result.faces], {})
    ours = (result.images[0].numpy() * 255).round()
    pasted = result.masks[0].numpy() > 0
    overall, faces = psnr(ours, expected), psnr(ours[pasted], expected[pasted])
    print(f"{image} end to end: {overall:.1f} dB overall, {faces:.1f} dB on faces")
    assert overall >= 45 and faces >= 45
    assert np.array_equal(ours[~pasted], rgb[~pasted])


def test_aligned_face_matches_the_official_flow(weights_dir, model, recipe_weights):
    """``has_aligned``: a real 512x512 aligned face (the helper's own crop), restored as the official
    flow restores aligned inputs: uint8 RGB / 255, normalised by 0.5, the published network
    (spandrel_extra_arches' build, AdaIN, w = 0.5), clamped to [-1, 1] and rounded to uint8."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

    helper = oracle_helper(weights_dir, np.ascontiguousarray(read_rgb("group_four.png")[..., ::-1]))
    face = np.ascontiguousarray(helper.cropped_faces[0][..., ::-1])
    oracle = CodeFormerArch().load(dict(recipe_weights("manifest.json"))).model.eval()
    x = (torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.inference_mode():
        out = oracle(x, weight=0.5)[0]
    expected = ((out.clamp(-1, 1) + 1) / 2 * 255).round()[0].permute(1, 2, 0).numpy()
    result = restore_faces([face], model, RestoreOptions(flow="facexlib", has_aligned=True, fidelity=0.5))
    ours = (result.images[0].numpy() * 255).round()
    print(f"aligned: {psnr(ours, expected):.1f} dB, max {np.abs(ours - expected).max():.0f} level(s)")
    assert np.abs(ours - expected).max() <= 1
    assert psnr(ours, expected) >= 60
