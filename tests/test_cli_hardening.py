"""The command line against hostile inputs and careless set-ups: one file never ends the run, the run's
own failures are said once before any work, the user's files are never replaced."""

from __future__ import annotations

import io
import json
import random
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeformer_nodes import RestoreOptions
from codeformer_nodes.batch.imageio import WriteSettings, read_image
from codeformer_nodes.batch.runner import run
from codeformer_nodes.cli.restore import main

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"


class InvertingNetwork(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, w=0, adain=False):
        return -x, None, None


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The per-user cache (where output folders' lists live) of this test alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def options(weights_dir: Path) -> RestoreOptions:
    return RestoreOptions(detector=DETECTOR, weights_dir=weights_dir, parse_mask=False)


def small_photo(folder: Path, name: str = "small.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.open(TESTDATA / "photos" / "group_small.jpg").save(folder / name)
    return folder / name


def restore(files: list[Path], folder: Path, weights_dir: Path) -> list[dict]:
    return run(files, InvertingNetwork(), options(weights_dir), folder, WriteSettings(), skip_existing=False)


# --- the run itself: said once, before any work -----------------------------------------------------


@pytest.mark.parametrize(
    "make_output, said",
    [
        (lambda tmp: (tmp / "a_file.png").write_bytes(b"x") and tmp / "a_file.png", "is a file, not a folder"),
        (lambda tmp: Path("/proc/codeformer-nodes-out"), "cannot write into the output folder"),
    ],
)
def test_an_unusable_output_folder_is_said_before_any_work(tmp_path, capsys, make_output, said):
    photo = small_photo(tmp_path / "in")
    assert main([str(photo), "-o", str(make_output(tmp_path)), "--model", str(tmp_path / "absent.pth")]) == 2
    error = capsys.readouterr().err
    assert said in error and "loading" not in error


def test_a_report_path_that_is_a_folder_is_said_before_any_work(tmp_path, capsys):
    photo = small_photo(tmp_path / "in")
    (tmp_path / "reports").mkdir()
    args = [str(photo), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "reports")]
    assert main([*args, "--model", str(tmp_path / "absent.pth")]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert not list(Path.cwd().glob(".*.partial"))


def test_export_workflow_makes_its_folder(tmp_path):
    target = tmp_path / "new" / "folder" / "workflow.json"
    assert main(["--export-workflow", str(target), "-w", "0.7"]) == 0
    assert json.loads(target.read_text())["4"]["inputs"]["w"] == 0.7


@pytest.mark.parametrize(
    "flags, said",
    [
        (["-w", "0.3", "--ramp", "0.2", "0.8", "32", "300"], "--ramp and -w/--fidelity both set the fidelity"),
        (["--has-aligned", "-s", "2"], "drop --upscale"),
        (["--face-indices", "0", "--face-selection", "largest"], "both choose faces"),
        (["--jpeg-quality", "1000"], "quality must be from 1 to 100"),
        (["--device", "warp-drive"], "not one torch knows"),
    ],
)
def test_contradicting_or_impossible_flags_are_refused(tmp_path, capsys, flags, said):
    with pytest.raises(SystemExit) as stop:
        main(["in.png", "-o", str(tmp_path / "out"), *flags])
    assert stop.value.code == 2 and said in capsys.readouterr().err


# --- one file never ends the run ----------------------------------------------------------------------


def corrupted_files(folder: Path, count: int) -> list[Path]:
    """Small images in several formats (some multi-page), each with random bytes changed or cut."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pixels = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    seeds = {}
    for kind, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("GIF", ".gif"), ("BMP", ".bmp")):
        data = io.BytesIO()
        pages = [Image.fromarray(pixels), Image.fromarray(pixels[::-1].copy())]
        extra = {"save_all": True, "append_images": pages[1:]} if kind in ("TIFF", "GIF") else {}
        pages[0].save(data, kind, **extra)
        seeds[suffix] = data.getvalue()
    files = []
    for index in range(count):
        suffix = rng.choice(sorted(seeds))
        data = bytearray(seeds[suffix])
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(1, len(data))]
        files.append(folder / f"fuzzed{index}{suffix}")
        files[-1].write_bytes(bytes(data))
    return files


def test_corrupt_files_each_get_their_own_entry_and_the_run_completes(helper_weights, tmp_path):
    files = corrupted_files(tmp_path / "in", 40)
    entries = restore(files, tmp_path / "out", helper_weights)
    assert [entry["input"] for entry in entries] == [str(file) for file in files]
    for entry in entries:
        assert ("faces" in entry) != bool(entry.get("error")), entry
        if entry.get("error"):
            assert entry["output"] is None and Path(entry["input"]).name in entry["error"]


def test_decoder_errors_other_than_value_and_os_errors_are_the_files_own(tmp_path):
    for file in corrupted_files(tmp_path / "many", 300):
        try:
            read_image(file)
        except ValueError as error:
            assert str(file) in str(error)


def test_a_video_without_pyav_fails_alone(helper_weights, tmp_path, monkeypatch):
    photo = small_photo(tmp_path / "in")
    clip = tmp_path / "in" / "clip.mp4"
    clip.write_bytes(b"not looked at")
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "av.error", None)
    entries = restore([clip, photo], tmp_path / "out", helper_weights)
    by_input = {Path(entry["input"]).name: entry for entry in entries}
    assert "pip install 'codeformer-nodes[video]'" in by_input["clip.mp4"]["error"]
    assert "faces" in by_input["small.png"]


def test_a_failed_image_says_why_on_the_terminal(helper_weights, tmp_path, capsys):
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG not really")
    restore([broken], tmp_path / "out", helper_weights)
    error = capsys.readouterr().err
    assert "broken.png: error: " in error and "could not be decoded" in error


# --- lost or wrong without a word -------------------------------------------------------------------


def test_the_users_own_file_is_never_replaced(helper_weights, tmp_path):
    folder = tmp_path / "scans"
    scan = small_photo(folder, "scan.tif")
    users = folder / "scan.png"
    Image.new("RGB", (8, 8), "red").save(users)
    kept = users.read_bytes()
    first = restore([scan], folder, helper_weights)
    assert users.read_bytes() == kept
    assert first[0]["output"] == str(folder / "scan_restored.png") and "scan.png exists" in first[0]["note"]
    again = restore([scan], folder, helper_weights)  # its own earlier output is replaced, not renamed again
    assert again[0]["output"] == str(folder / "scan_restored.png")
    assert sorted(path.name for path in folder.iterdir()) == ["scan.png", "scan.tif", "scan_restored.png"]


def test_an_earlier_output_in_its_own_folder_is_replaced(helper_weights, tmp_path):
    photo = small_photo(tmp_path / "in")
    for _ in range(2):
        entries = restore([photo], tmp_path / "out", helper_weights)
        assert entries[0]["output"] == str(tmp_path / "out" / "small.png") and "note" not in entries[0]


@pytest.mark.parametrize("mode", ["I;16", "RGB"])
def test_sixteen_bit_pngs_stay_sixteen_bit(helper_weights, tmp_path, mode):
    import cv2

    rgb = np.asarray(Image.open(TESTDATA / "photos" / "group_small.jpg").convert("RGB")).astype(np.uint16) * 256
    rgb += np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint16)  # levels 8 bits cannot hold
    source = tmp_path / "in" / "deep.png"
    source.parent.mkdir()
    if mode == "I;16":
        Image.fromarray(rgb[..., 1]).save(source)
    else:
        cv2.imwrite(str(source), rgb[..., ::-1])
    entries = restore([source], tmp_path / "out", helper_weights)
    written = cv2.imread(entries[0]["output"], cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape[:2] == rgb.shape[:2]
    assert len(np.unique(written)) > 256  # more levels than 8 bits hold
    assert ("warning" in entries[0]) == (mode == "RGB")  # colour goes through OpenCV, without the metadata


# --- video files ------------------------------------------------------------------------------------


def write_timed_clip(path: Path, size: tuple[int, int], times_ms: list[int], codec: str) -> None:
    """Noise frames (no face) shown at ``times_ms``, in a Matroska file."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for time in times_ms:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "rgb24")
            frame.pts, frame.time_base = time, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def frame_times(path: Path) -> tuple[list[float], tuple[int, int]]:
    import av

    with av.open(str(path)) as clip:
        frames = list(clip.decode(video=0))
        return [frame.time for frame in frames], (frames[0].width, frames[0].height)


def test_an_odd_sized_video_is_padded_and_says_so(helper_weights, tmp_path):
    from .test_video import FRAME_BY_FRAME, RecordingNetwork

    clip = tmp_path / "in" / "odd.mkv"
    clip.parent.mkdir()
    write_timed_clip(clip, (63, 47), [0, 40, 80], "ffv1")
    network, settings = RecordingNetwork(), WriteSettings()
    entries = run([clip], network, options(helper_weights), tmp_path / "out", settings, False, video=FRAME_BY_FRAME)
    assert "padded to 64x48" in entries[0]["warning"] and entries[0]["frames"] == 3
    assert frame_times(tmp_path / "out" / "odd.mkv")[1] == (64, 48)


def test_a_variable_rate_video_keeps_its_timing(helper_weights, tmp_path):
    from .test_video import FRAME_BY_FRAME, RecordingNetwork

    clip = tmp_path / "in" / "vfr.mkv"
    clip.parent.mkdir()
    shown = [0, 40, 80, 400, 440, 1000]  # a pause, then one late frame: a constant rate would shift them
    write_timed_clip(clip, (64, 48), shown, "libx264")
    run(
        [clip],
        RecordingNetwork(),
        options(helper_weights),
        tmp_path / "out",
        WriteSettings(),
        False,
        video=FRAME_BY_FRAME,
    )
    times, _ = frame_times(tmp_path / "out" / "vfr.mkv")
    assert len(times) == len(shown)
    assert max(abs(time - ms / 1000) for time, ms in zip(times, shown, strict=True)) <= 0.021  # within a frame


def test_a_video_output_follows_the_umask_as_images_do(helper_weights, tmp_path):
    import os

    from .test_video import FRAME_BY_FRAME, RecordingNetwork

    clip = tmp_path / "in" / "clip.mkv"
    clip.parent.mkdir()
    write_timed_clip(clip, (64, 48), [0, 40], "libx264")
    photo = small_photo(tmp_path / "in")
    old = os.umask(0o022)
    try:
        run([clip, photo], RecordingNetwork(), options(helper_weights), tmp_path / "out", WriteSettings(), False,
            video=FRAME_BY_FRAME)  # fmt: skip
    finally:
        os.umask(old)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "out").iterdir()}
    assert modes == {"clip.mkv": 0o644, "small.png": 0o644}


def test_converting_onto_a_folder_is_refused(recipe_checkpoint, tmp_path, capsys):
    from codeformer_nodes.cli.convert import main as convert

    folder = tmp_path / "out.safetensors"
    folder.mkdir()
    assert convert([str(recipe_checkpoint), str(folder)]) == 1
    assert "is a folder" in capsys.readouterr().err
