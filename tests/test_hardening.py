"""What a hostile or careless caller can do: threads, odd inputs, broken files, killed and parallel runs.

Every outcome is a result or a named error with the fix; nothing is silently wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from codeformer_nodes import RestoreOptions, restore_faces
from codeformer_nodes.batch.imageio import WriteSettings, read_image
from codeformer_nodes.batch.runner import run
from codeformer_nodes.models import CodeFormerWeightsError, load_codeformer
from codeformer_nodes.pipeline.detection import load_detector

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"


class InvertingNetwork(torch.nn.Module):
    def __init__(self, output: float | None = None) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.output = output

    def forward(self, x, w=0, adain=False):
        return (-x if self.output is None else torch.full_like(x, self.output), None, None)


@pytest.fixture(scope="module")
def weights_dir(helper_weights) -> Path:
    return helper_weights


def photo(name: str) -> np.ndarray:
    return np.array(Image.open(TESTDATA / "photos" / name).convert("RGB"))


def options(weights_dir: Path, **changes) -> RestoreOptions:
    return RestoreOptions(detector=DETECTOR, weights_dir=weights_dir, **changes)


def test_one_detector_shared_by_threads_gives_each_image_its_own_boxes(weights_dir):
    detector = load_detector(DETECTOR, torch.device("cpu"), weights_dir)
    images = [photo("group_small.jpg"), photo("group_four.png")]  # different sizes, so different scales
    expected = [detector.detect(image, 0.97) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: (i % 2, detector.detect(images[i % 2], 0.97)), range(24)))
    assert all(boxes == expected[index] for index, boxes in results)


@pytest.mark.parametrize("shape", [(1, 5000, 3), (5000, 1, 3), (2, 9000, 3)])
def test_extreme_aspect_ratios_find_no_face_instead_of_failing(weights_dir, shape):
    image = torch.rand(shape)
    result = restore_faces(image[None], InvertingNetwork(), options(weights_dir))
    assert result.faces == [] and torch.equal(result.images[0], image)


def test_integer_images_are_levels_or_refused(weights_dir):
    rgb = photo("group_four.png")
    as_levels = restore_faces(torch.from_numpy(rgb)[None], InvertingNetwork(), options(weights_dir))
    as_floats = restore_faces(torch.from_numpy(rgb / np.float32(255))[None], InvertingNetwork(), options(weights_dir))
    assert len(as_levels.faces) == 4 and torch.equal(as_levels.images[0], as_floats.images[0])
    for bad in (torch.from_numpy(rgb.astype(np.int32)), torch.ones(8, 8, 3, dtype=torch.bool)):
        with pytest.raises(TypeError, match="uint8 / uint16 levels"):
            restore_faces([bad], InvertingNetwork(), options(weights_dir))


@pytest.mark.parametrize(
    "value, hint",
    [("photo.png", "read the file first"), (Path("photo.png"), "read the file first"), (None, "NoneType")],
)
def test_wrong_kinds_of_input_are_named(weights_dir, value, hint):
    with pytest.raises(TypeError, match=hint):
        restore_faces(value, InvertingNetwork(), options(weights_dir))


def test_values_outside_the_unit_range_are_clamped(weights_dir):
    bright = torch.from_numpy(photo("group_four.png") / np.float32(255)) * 1.5 - 0.25
    result = restore_faces(bright[None], InvertingNetwork(), options(weights_dir))
    assert result.images[0].min() >= 0 and result.images[0].max() <= 1
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][outside], bright.clamp(0, 1)[outside])


def test_non_finite_network_output_is_an_error_not_pixels(weights_dir):
    with pytest.raises(ValueError, match="NaN or infinite pixels for faces 1-"):
        restore_faces(photo("group_four.png")[None], InvertingNetwork(float("nan")), options(weights_dir))


# --- the command line: reports, folders, parallel and killed runs ---------------------------------


def write_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo("group_four.png")).save(folder / "four.png")
    Image.fromarray(photo("group_small.jpg")).save(folder / "small.png")
    return [folder / "four.png", folder / "small.png"]


def test_output_folder_equal_to_input_folder_never_grows(weights_dir, tmp_path):
    from codeformer_nodes.batch.naming import expand_inputs

    folder = tmp_path / "photos"
    write_inputs(folder)
    for _ in range(2):
        files, _ = expand_inputs([str(folder)], folder)
        run(files, InvertingNetwork(), options(weights_dir), folder, WriteSettings(), skip_existing=False)
    assert sorted(p.name for p in folder.iterdir()) == [
        "four.png",
        "four_restored.png",
        "small.png",
        "small_restored.png",
    ]


def test_an_image_another_run_is_restoring_is_left_to_it(weights_dir, tmp_path):
    from codeformer_nodes.batch.claims import claim_path

    files = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim_path(out / "four.png").write_text(str(sleeper.pid))  # a live run holds four.png
        claim_path(out / "small.png").write_text("999999999")  # a dead run held small.png
        entries = run(files, InvertingNetwork(), options(weights_dir), out, WriteSettings(), skip_existing=False)
    finally:
        sleeper.kill()
    assert entries[0]["skipped"] and str(sleeper.pid) in entries[0]["note"]
    assert len(entries[1]["faces"]) == 4 and (out / "small.png").exists()
    assert not claim_path(out / "small.png").exists(), "claims are released once written"


def test_killed_runs_leave_no_partial_files_behind_the_next_run(weights_dir, tmp_path):
    from codeformer_nodes.models.files import remove_stale_partials

    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".four.png.999999999.abc123.partial"
    live = out / f".small.png.{os.getpid()}.def456.partial"
    stale.write_bytes(b"half an image")
    live.write_bytes(b"being written")
    assert remove_stale_partials(out) == [stale]
    assert not stale.exists() and live.exists()


def test_the_report_is_written_when_the_run_is_interrupted(weights_dir, recipe_checkpoint, tmp_path, monkeypatch):
    from codeformer_nodes.batch import runner
    from codeformer_nodes.batch.report import INTERRUPTED_STATUS
    from codeformer_nodes.cli import restore as cli

    files = write_inputs(tmp_path / "in")
    calls = []

    def interrupted(images, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return restore_faces(images, InvertingNetwork(), RestoreOptions(detector=DETECTOR, weights_dir=weights_dir))

    monkeypatch.setattr(runner, "restore_faces", interrupted)  # Ctrl-C during the second image
    report = tmp_path / "missing" / "folder" / "report.json"
    args = [*map(str, files), "-o", str(tmp_path / "out"), "--model", str(recipe_checkpoint), "--report", str(report)]
    args += ["--detector", DETECTOR, "--weights-dir", str(weights_dir)]  # the files the run checks for first
    assert cli.main(args) == INTERRUPTED_STATUS
    written = json.loads(report.read_text())
    assert written["interrupted"] is True
    assert len(written["images"][0]["faces"]) == 4 and "faces" not in written["images"][1]


def test_icc_profiles_follow_the_colour_space(weights_dir, tmp_path):
    from PIL import ImageCms

    rgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk_profile = rgb_profile[:16] + b"CMYK" + rgb_profile[20:]  # the header is what is read
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo("group_small.jpg")).convert("CMYK").save(folder / "cmyk.jpg", icc_profile=cmyk_profile)
    Image.fromarray(photo("group_small.jpg")).save(folder / "rgb.jpg", icc_profile=rgb_profile)
    out = tmp_path / "out"
    run(
        [folder / "cmyk.jpg", folder / "rgb.jpg"], InvertingNetwork(), options(weights_dir), out, WriteSettings(), False
    )
    assert Image.open(out / "cmyk.jpg").mode == "RGB" and "icc_profile" not in Image.open(out / "cmyk.jpg").info
    assert Image.open(out / "rgb.jpg").info["icc_profile"] == rgb_profile


def test_multi_page_inputs_are_reported_and_float_images_decoded(weights_dir, tmp_path):
    pages = [Image.fromarray(photo("group_small.jpg")), Image.new("RGB", (64, 64))]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    entries = run(
        [tmp_path / "pages.tiff"], InvertingNetwork(), options(weights_dir), tmp_path / "out", WriteSettings(), False
    )
    assert "2 frames" in entries[0]["warning"] and entries[0]["faces"]

    ramp = np.linspace(0, 1, 64 * 32, dtype=np.float32).reshape(32, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tiff")
    decoded = read_image(tmp_path / "float.tiff").pixels
    assert decoded.shape == (32, 64, 1) and torch.allclose(decoded[..., 0], torch.from_numpy(ramp))


# --- fuzzing: every outcome is a result or a named error ------------------------------------------

NAMED_INPUT_ERRORS = (ValueError, TypeError)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(0, 48),
    width=st.integers(0, 48),
    channels=st.sampled_from([None, 1, 2, 3, 4, 5]),
    dtype=st.sampled_from(["float32", "float64", "float16", "uint8", "uint16", "int32", "bool"]),
    scale=st.sampled_from([1.0, 255.0, -1.0, 1e30]),
    special=st.sampled_from([None, "nan", "inf"]),
    library=st.sampled_from(["torch", "numpy"]),
)
def test_fuzzed_images_give_results_or_named_errors(height, width, channels, dtype, scale, special, library):
    shape = (height, width) if channels is None else (height, width, channels)
    values = np.random.default_rng(0).random(shape) * scale
    if special and values.size:
        values.flat[0] = float(special)
    with np.errstate(invalid="ignore", over="ignore"):
        array = values.astype(dtype)
    image = torch.from_numpy(array) if library == "torch" else array
    network = InvertingNetwork()
    try:
        result = restore_faces([image], network, RestoreOptions(detector=NoFaces()))
    except NAMED_INPUT_ERRORS as error:
        assert str(error), "a named error says what was wrong"
        return
    assert len(result.images) == 1 and torch.isfinite(result.images[0]).all()


class NoFaces:
    """A detector stand-in: the fuzz test is about image handling, not faces."""

    def detect(self, image, confidence):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        return []


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=8))
def test_fuzzed_checkpoint_bytes_give_named_errors(tmp_path_factory, cut, flips):
    path = tmp_path_factory.mktemp("fuzz") / "codeformer.pth"
    torch.save({"params_ema": {"position_emb": torch.zeros(16, 16), "feat_emb.bias": torch.ones(4)}}, path)
    data = bytearray(path.read_bytes())
    for offset, mask in flips:
        data[offset % len(data)] ^= mask
    path.write_bytes(bytes(data[: max(1, len(data) - cut)]))
    with pytest.raises(CodeFormerWeightsError):
        load_codeformer(path)
