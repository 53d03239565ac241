"""The codeformer flow against CodeFormer's own code (``codeformer-pip==0.0.4``: b33cc7d's
``facelib``, ``basicsr`` and ``inference_codeformer.py``).

The package is S-Lab licensed: it is installed for the tests and called, never copied into
the project. The fixture copies it into a temporary folder and patches one line there:
upstream a75e7ae (2024-09-19) removed ``scale = max(1, scale)`` from
``FaceRestoreHelper.get_face_landmarks_5``, and codeformer-pip still has it (so it never
shrinks the detector's copy). The copy's ``weights/facelib`` holds the real MobileNet
detector and a random ParseNet, and the official code runs in a subprocess whose path starts
with the copy (``official_flow_runner.py``). ``benchmarks/scenes.py`` makes the copy.

Most cases restore with a stand-in network (the face mirrored) on both sides: the flow around
the network is what differs between helpers. One case runs the real command with the recipe
weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.scenes import crowd_rgb, official_codeformer
from codeformer_nodes import RestoreOptions, restore_faces

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"
RUNNER = Path(__file__).with_name("official_flow_runner.py")


class MirrorNetwork(torch.nn.Module):
    """The runner's stand-in: the normalised face mirrored left to right."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, w=0, adain=False):
        return (x.flip(-1), None, None)


@pytest.fixture(scope="module")
def official(tmp_path_factory, helper_weights) -> Path:
    """The patched copy of codeformer-pip's package (``benchmarks.scenes.official_codeformer``); the folder
    to put on the path."""
    root = official_codeformer(tmp_path_factory.mktemp("official"), helper_weights)
    if root is None:
        pytest.skip("codeformer-pip is not installed: bash scripts/setup.sh installs it for the tests")
    return root


def read_rgb(name: str, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    path = TESTDATA / "photos" / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the photos live in ../shared/testdata")
    return np.array(Image.open(path).convert(mode))


def run_official(
    official: Path, tmp_path: Path, cases: dict[str, dict], upsamplers: dict[str, dict]
) -> dict[str, dict[str, np.ndarray]]:
    """Each case's ``image`` (RGB uint8) through the official helper, after the runner has saved random
    ESRGAN weights of each of ``upsamplers``' configurations; returns what the runner saved."""
    jobs = []
    for name, case in cases.items():
        image = tmp_path / f"{name}.npy"
        np.save(image, np.ascontiguousarray(case["image"][..., ::-1]))  # BGR, as cv2.imread gives it
        jobs.append({**{k: v for k, v in case.items() if k != "image"}, "name": name, "image": str(image)})
    job = tmp_path / "job.json"
    settings = {"cases": jobs, "out": str(tmp_path), "threads": torch.get_num_threads(), "make_upsamplers": upsamplers}
    job.write_text(json.dumps(settings))
    environment = {**os.environ, "PYTHONPATH": str(official)}
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(job)], env=environment, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: dict(np.load(tmp_path / f"{name}.npz")) for name in cases}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


def ours(image: np.ndarray, helper_weights: Path, **changes) -> tuple[np.ndarray, int]:
    """Our codeformer flow at the official size, as 8-bit levels (rounded, as our writer rounds)."""
    options = RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, keep_size=False, **changes)
    result = restore_faces([image], MirrorNetwork(), options)
    return (result.images[0].numpy() * 255).round(), len(result.faces)


def grey_rgb() -> np.ndarray:
    import cv2

    return np.repeat(cv2.cvtColor(read_rgb("group_four.png"), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def one_face() -> np.ndarray:
    """The second face of group_four with room around it (300x300: enlarged to 512 by the flow)."""
    return read_rgb("group_four.png")[40:340, 330:630]


# name: (our image, official image, our options, runner settings)
CASES = {
    "plain_upscale_1": (lambda: read_rgb("group_four.png"), None, {"upscale": 1}, {"upscale": 1}),
    "small_image": (lambda: read_rgb("group_small.jpg"), None, {"upscale": 1}, {"upscale": 1}),
    # faces whose crops reach past the image's edges (grey border fill), in an image the flow enlarges
    "past_the_border": (lambda: read_rgb("group_four.png")[20:300, 140:1050], None, {"upscale": 1}, {"upscale": 1}),
    # eight faces whose squares overlap, pasted in the detector's order (and enlarged: 680x460)
    "crowd": (crowd_rgb, None, {"upscale": 1}, {"upscale": 1}),
    "upscale_2": (lambda: read_rgb("group_small.jpg"), None, {"upscale": 2}, {"upscale": 2}),
    "rgba": (
        lambda: read_rgb("group_four.png", "RGBA"), lambda: read_rgb("group_four.png"), {"upscale": 1}, {"upscale": 1},
    ),
    "grey": (grey_rgb, None, {"upscale": 1}, {"upscale": 1}),
    "center_draw_box_upscale_4": (
        one_face, None, {"upscale": 4, "face_selection": "center", "draw_box": True},
        {"upscale": 4, "only_center_face": True, "draw_box": True},
    ),
    "no_face": (lambda: np.full((300, 400, 3), 90, np.uint8), None, {"upscale": 2}, {"upscale": 2}),
    # aligned faces: resized to 512x512 (INTER_LINEAR), grey ones given the input's colour statistics
    "aligned_resized": (lambda: read_rgb("group_four.png")[0:400, 300:700], None, {"has_aligned": True},
                        {"has_aligned": True}),
    "grey_aligned": (lambda: grey_rgb()[0:512, 300:812], None, {"has_aligned": True}, {"has_aligned": True}),
    # RealESRGANer tiles of 400 (2 x 4 here), an x2 network for upscale 2
    "background_upsampler": (
        lambda: read_rgb("group_four.png"), None, {"upscale": 2, "upscaler": "ESRGAN_X2"},
        {"upscale": 2, "upsampler": "ESRGAN_X2"},
    ),
    # a small image: the network sees the input, the faces the flow's enlargement; faces enlarged too
    "face_upsample_small_image": (
        lambda: read_rgb("group_small.jpg"), None,
        {"upscale": 2, "upscaler": "ESRGAN_X2", "face_upsampler": "ESRGAN_X2"},
        {"upscale": 2, "upsampler": "ESRGAN_X2", "face_upsample": True},
    ),
}  # fmt: skip
UPSAMPLERS = {"ESRGAN_X2": {"num_feat": 8, "num_block": 1, "scale": 2}}


@pytest.fixture(scope="module")
def upsampler_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("upsamplers")
    return {name: str(folder / f"{name.lower()}.pth") for name in UPSAMPLERS}


def with_files(settings: dict, files: dict[str, str]) -> dict:
    return {key: files.get(value, value) if isinstance(value, str) else value for key, value in settings.items()}


@pytest.fixture(scope="module")
def official_results(official, tmp_path_factory, upsampler_files):
    cases = {}
    for name, (image, official_image, _, settings) in CASES.items():
        cases[name] = {"image": (official_image or image)(), **with_files(settings, upsampler_files)}
    upsamplers = {upsampler_files[name]: config for name, config in UPSAMPLERS.items()}
    return run_official(official, tmp_path_factory.mktemp("official_runs"), cases, upsamplers)


@pytest.mark.parametrize("case", CASES)
def test_codeformer_flow_matches_the_official_helper(official_results, helper_weights, upsampler_files, case):
    make_image, _, changes, _ = CASES[case]
    expected = official_results[case]
    image = make_image()
    result, face_count = ours(image, helper_weights, **with_files(changes, upsampler_files))
    theirs = expected["image"].astype(np.float64)[..., ::-1]  # BGR -> RGB
    assert face_count == (0 if changes.get("has_aligned") else int(expected["faces"]))
    assert result.shape[:2] == theirs.shape[:2]
    result = result[..., :3]
    overall = psnr(result, theirs)
    print(f"{case}: {face_count} faces, {result.shape[1]}x{result.shape[0]}, {overall:.1f} dB")
    assert overall >= 50


def test_codeformer_flow_matches_the_official_command(official, helper_weights, recipe_checkpoint, model, tmp_path):
    """The official command itself (``inference_codeformer.py -w 0.5 -s 2 --detection_model
    retinaface_mobile0.25``) with the recipe weights, on a one-face image small enough to be
    enlarged, against ``restore_faces`` at the official size, written as PNG by our command line's
    rounding. The network runs on both sides (float32)."""
    from PIL import Image

    image = one_face()
    source = tmp_path / "face.png"
    Image.fromarray(image).save(source)
    weights = tmp_path / "weights" / "CodeFormer"
    weights.mkdir(parents=True)
    shutil.copy(recipe_checkpoint, weights / "codeformer.pth")
    command = [sys.executable, str(official / "codeformer" / "inference_codeformer.py"), "-i", str(source)]
    command += ["-o", str(tmp_path / "out"), "-w", "0.5", "-s", "2", "--detection_model", DETECTOR]
    environment = {**os.environ, "PYTHONPATH": str(official)}
    done = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = np.asarray(Image.open(tmp_path / "out" / "final_results" / "face.png").convert("RGB"))

    options = RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, keep_size=False, upscale=2, fidelity=0.5)
    result = restore_faces([image], model, options)
    ours = (result.images[0].numpy() * 255).round()
    print(f"official command: {ours.shape[1]}x{ours.shape[0]}, {psnr(ours, expected):.1f} dB")
    assert ours.shape == expected.shape == (1024, 1024, 3)
    assert len(result.faces) == 1
    assert psnr(ours, expected) >= 50
