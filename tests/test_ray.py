"""``restore_with_ray`` and ``codeformer-restore --ray`` on a local 2-CPU Ray cluster started here.

The pixels and the report are the local CLI's (compared at the same torch thread count:
torch's CPU kernels round differently with another count); a bad file fails alone; a
resumed run skips what is done; a worker killed mid-batch loses nothing and its images are
retried; an image that kills its worker every time fails alone. Stand-in networks keep it
fast; one test runs the CLI end to end with the recipe weights on one face.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from codeformer_nodes import RestoreOptions
from codeformer_nodes.batch.imageio import WriteSettings, read_image
from codeformer_nodes.batch.naming import expand_inputs
from codeformer_nodes.batch.runner import run
from codeformer_nodes.cli.restore import main

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"
# Without the parse mask (no parser weights here) and at the input's size: Ray's runs are what is tested.
DETECTOR_ARGS = ["--detector", DETECTOR, "--weights-dir", str(TESTDATA / "weights"), "--no-parse-mask", "-s", "1"]
POISON = (1, 2, 3)  # top-left pixel of an image that kills the worker detecting it
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on copying its context


class InvertingNetwork(torch.nn.Module):
    """Inverts each face; logs ``pid batch`` per forward to ``log``; kills its process on forward ``kill_at``
    while ``marker`` exists (removing it first, so that the retry goes through)."""

    def __init__(self, log: Path | None = None, marker: Path | None = None, kill_at: int = 1) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.log, self.marker, self.kill_at, self.calls = log, marker, kill_at, 0

    def forward(self, x, w=0, adain=False):
        self.calls += 1
        if self.log is not None:
            with self.log.open("a") as file:
                file.write(f"{os.getpid()} {x.shape[0]}\n")
        if self.marker is not None and self.calls == self.kill_at and self.marker.exists():
            self.marker.unlink()
            os._exit(1)
        return (-x, None, None)


class PoisonDetector:
    """The real detector, except that an image whose top-left pixel is ``POISON`` kills the process."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir

    def detect(self, image: np.ndarray, confidence: float):
        from codeformer_nodes.pipeline.detection import load_detector

        if tuple(image[0, 0]) == POISON:
            os._exit(1)
        return load_detector(DETECTOR, torch.device("cpu"), self.weights_dir).detect(image, confidence)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is absent (pip install 'codeformer-nodes[ray]')")
    # The workers cannot import this module by its pytest name: its stand-ins travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(tmp_path) -> Path:
    """Inputs in several formats, with metadata, and two bad files."""
    if not (TESTDATA / "photos").exists():
        pytest.skip("../shared/testdata is absent: the test photos and the detector live there")
    folder = tmp_path / "in"
    folder.mkdir()
    four = Image.open(TESTDATA / "photos" / "group_four.png")
    text = PngImagePlugin.PngInfo()
    text.add_text("prompt", '{"1": "a workflow"}')
    four.save(folder / "four.png", pnginfo=text)
    shutil.copy(TESTDATA / "photos" / "group_small.jpg", folder / "small.jpg")
    small = Image.open(TESTDATA / "photos" / "group_small.jpg")
    small.convert("L").save(folder / "grey.png")
    four.convert("RGBA").save(folder / "alpha.webp", lossless=True)
    exif = small.getexif()
    exif[0x0112] = 6
    small.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif)
    (folder / "truncated.jpg").write_bytes((TESTDATA / "photos" / "group_small.jpg").read_bytes()[:500])
    (folder / "empty.png").write_bytes(b"")
    return folder


def options(**changes) -> RestoreOptions:
    return RestoreOptions(**{"detector": DETECTOR, "weights_dir": TESTDATA / "weights", "parse_mask": False, **changes})


def restore(inputs, output, chosen: RestoreOptions, network=InvertingNetwork, **kwargs) -> list[dict]:
    from codeformer_nodes.batch.ray_driver import restore_with_ray
    from codeformer_nodes.batch.ray_worker import ModelSpec

    return restore_with_ray(inputs, output, chosen, ModelSpec(factory=network), **kwargs)


def local_run(folder: Path, output: Path, chosen: RestoreOptions, threads: int = 1) -> list[dict]:
    """The local CLI's run in this process, at ``threads`` torch threads (the Ray workers' count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        files, entries = expand_inputs([str(folder)], output)
        return run(files, InvertingNetwork(), chosen, output, WriteSettings(), False, entries)
    finally:
        torch.set_num_threads(before)


def comparable(entries: list[dict], output: Path) -> list[dict]:
    """Entries as the JSON report has them, without their timings, outputs relative to their folder."""
    return [
        {k: (v.replace(str(output), "OUT") if k == "output" and v else v) for k, v in e.items() if k != "seconds"}
        for e in json.loads(json.dumps(entries))
    ]


def same_files(first: Path, second: Path) -> None:
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_same_files_and_report_as_the_local_cli_and_bad_files_fail_alone(cluster, photos, tmp_path):
    chosen = options()
    local = local_run(photos, tmp_path / "local", chosen)
    entries = restore([str(photos)], tmp_path / "ray", chosen, workers=2, cpus_per_worker=1)
    assert comparable(entries, tmp_path / "ray") == comparable(local, tmp_path / "local")
    same_files(tmp_path / "local", tmp_path / "ray")
    errors = {Path(e["input"]).name: e["error"] for e in entries if e.get("error")}
    assert set(errors) == {"truncated.jpg", "empty.png"}
    assert errors["truncated.jpg"].startswith(f"{photos / 'truncated.jpg'} could not be decoded")
    assert all(len(e["faces"]) == 4 for e in entries if not e.get("error"))
    assert Image.open(tmp_path / "ray" / "four.png").info["prompt"] == '{"1": "a workflow"}'


def test_uris_read_and_write_through_pyarrow_filesystems(cluster, photos, tmp_path):
    for extra in ("grey.png", "alpha.webp", "empty.png"):
        (photos / extra).unlink()
    chosen = options(face_selection="largest")
    local = local_run(photos, tmp_path / "local", chosen)
    entries = restore([f"file://{photos}/*.jpg", f"file://{photos}"], f"file://{tmp_path}/ray", chosen)
    good = [e for e in local if not e.get("error")]
    assert sorted(Path(e["output"]).name for e in entries if not e.get("error")) == sorted(
        Path(e["output"]).name for e in good
    )
    same_files(tmp_path / "local", tmp_path / "ray")
    decoded = next(e for e in entries if e["input"].endswith("truncated.jpg"))
    assert decoded["input"] == f"file://{photos}/truncated.jpg" and decoded["input"] in decoded["error"]
    assert entries[0]["output"].startswith("file:///")


def test_resumed_run_skips_what_is_done(cluster, photos, tmp_path):
    for extra in ("grey.png", "alpha.webp", "rotated.jpg", "truncated.jpg", "empty.png"):
        (photos / extra).unlink()
    chosen = options(face_selection="largest")
    out = tmp_path / "out"
    restore([str(photos)], out, chosen)
    (out / "small.jpg").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    entries = restore([str(photos)], out, chosen, skip_existing=True)
    by_name = {Path(e["input"]).name: e for e in entries}
    assert by_name["four.png"]["skipped"] is True and "skipped" not in by_name["small.jpg"]
    assert (out / "small.jpg").exists()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in before} == before


def test_killed_worker_loses_nothing_and_its_images_are_retried(cluster, photos, tmp_path):
    """One worker, one batch of five images; the process dies in its third forward. The restarted
    worker redoes only what was not written, one image at a time; faces of several images share
    a chunk on the first try."""
    for bad in ("truncated.jpg", "empty.png"):
        (photos / bad).unlink()
    chosen = options(face_selection="largest", chunk_size=2)
    log, marker = tmp_path / "forwards.log", tmp_path / "kill-once"
    marker.touch()
    network = functools.partial(InvertingNetwork, log, marker, 2)
    entries = restore([str(photos)], tmp_path / "out", chosen, network, workers=1, batch_size=5, cpus_per_worker=1)
    assert not marker.exists(), "the worker was killed"
    assert [e.get("error") for e in entries] == [None] * 5 and all(len(e["faces"]) == 1 for e in entries)
    forwards = [line.split() for line in log.read_text().splitlines()]
    pids = list(dict.fromkeys(pid for pid, _ in forwards))
    assert len(pids) == 2, "a new process took over"
    first = [int(size) for pid, size in forwards if pid == pids[0]]
    second = [int(size) for pid, size in forwards if pid == pids[1]]
    assert first == [2, 2], "two images per chunk; it died in the second chunk"
    # The three images not restored, and those of the first chunk if it died before their writes ended: alone.
    assert set(second) == {1} and 3 <= len(second) <= 5
    local_run(photos, tmp_path / "local", chosen)
    same_files(tmp_path / "local", tmp_path / "out")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "no partial or claim left"


def test_an_image_that_kills_its_worker_every_time_fails_alone(cluster, photos, tmp_path):
    for extra in ("four.png", "grey.png", "alpha.webp", "empty.png"):
        (photos / extra).unlink()
    poison = np.array(Image.open(photos / "small.jpg"))
    poison[0, 0] = POISON
    Image.fromarray(poison).save(photos / "poison.png")
    chosen = options(face_selection="largest", detector=PoisonDetector(TESTDATA / "weights"))
    entries = restore([str(photos)], tmp_path / "out", chosen, workers=1, batch_size=4, attempts=2)
    by_name = {Path(e["input"]).name: e for e in entries}
    assert list(by_name) == ["poison.png", "rotated.jpg", "small.jpg", "truncated.jpg"]
    assert "its worker died 2 times" in by_name["poison.png"]["error"]
    assert "could not be decoded" in by_name["truncated.jpg"]["error"]
    assert len(by_name["rotated.jpg"]["faces"]) == len(by_name["small.jpg"]["faces"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rotated.jpg", "small.jpg"]


def test_cli_on_the_cluster_gives_the_local_files_with_the_recipe_network(
    cluster, photos, recipe_checkpoint, tmp_path, capsys
):
    """One face through the real network each way (the most expensive test here)."""
    for extra in ("four.png", "grey.png", "alpha.webp", "rotated.jpg", "empty.png"):
        (photos / extra).unlink()
    flags = ["--model", str(recipe_checkpoint), *DETECTOR_ARGS, "--face-selection", "largest", "--report"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(photos), "-o", str(tmp_path / "local"), *flags, str(tmp_path / "local.json")]) == 1
    finally:
        torch.set_num_threads(before)
    local_err = capsys.readouterr().err
    assert main([str(photos), "-o", str(tmp_path / "ray"), *flags, str(tmp_path / "ray.json"), "--ray"]) == 1
    ray_err = capsys.readouterr().err
    same_files(tmp_path / "local", tmp_path / "ray")
    local, remote = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("local", "ray"))
    assert comparable(remote["images"], tmp_path / "ray") == comparable(local["images"], tmp_path / "local")
    assert remote["interrupted"] is False and remote["seconds"] > 0
    assert "1 image(s) restored, 1 failed, 1 face(s)" in local_err and "1 image(s) restored, 1 failed" in ray_err


def test_workers_that_cannot_load_the_model_stop_the_run(cluster, photos, tmp_path, capsys):
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"not a checkpoint")
    args = [str(photos), "-o", str(tmp_path / "out"), "--model", str(weights), *DETECTOR_ARGS, "--ray"]
    assert main(args) == 2
    assert f"codeformer-restore: {weights}" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "out").glob("*") if not p.name.startswith(".")]


def test_remote_files_read_and_upload_as_local_ones(photos, tmp_path):
    """The object-store route without a cluster: pyarrow's in-memory filesystem."""
    pytest.importorskip("pyarrow")
    from pyarrow.fs import _MockFileSystem

    from codeformer_nodes.batch.ray_files import RemoteImage, upload

    fs = _MockFileSystem()
    fs.create_dir("bucket/in")
    for name in ("small.jpg", "truncated.jpg"):
        with fs.open_output_stream(f"bucket/in/{name}") as stream:
            stream.write((photos / name).read_bytes())
    remote = read_image(RemoteImage(fs, "bucket/in/small.jpg", "mock://bucket/in/small.jpg"))  # type: ignore[arg-type]
    local = read_image(photos / "small.jpg")
    assert torch.equal(remote.pixels, local.pixels) and remote.exif == local.exif
    with pytest.raises(ValueError, match="mock://bucket/in/truncated.jpg could not be decoded"):
        read_image(RemoteImage(fs, "bucket/in/truncated.jpg", "mock://bucket/in/truncated.jpg"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_image(RemoteImage(fs, "bucket/in/absent.jpg", "mock://bucket/in/absent.jpg"))  # type: ignore[arg-type]
    upload(photos / "small.jpg", fs, "bucket/out/small.jpg")
    with fs.open_input_stream("bucket/out/small.jpg") as stream:
        assert stream.read() == (photos / "small.jpg").read_bytes()


def test_plan_names_outputs_as_the_local_cli(tmp_path, monkeypatch):
    from codeformer_nodes.batch.naming import record_output
    from codeformer_nodes.batch.ray_files import plan, uri_of_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where runs list their outputs
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "x.png")
    (tmp_path / "a" / "x_restored.png").write_bytes(b"")  # an earlier output in an input folder
    record_output(tmp_path / "a" / "x_restored.png")
    patterns = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "none*")]
    rows, problems = plan(patterns, tmp_path / "a", WriteSettings())
    assert [Path(row["output"]).name for row in rows] == ["x_restored.png", "x_restored_2.png"]
    assert problems == [{"input": str(tmp_path / "none*"), "error": f"{tmp_path / 'none*'} matches no file"}]
    assert uri_of_path(Path("s3://bucket/out")) == "s3://bucket/out"
    assert uri_of_path(Path("file:///tmp/out")) == "file:///tmp/out"
    assert uri_of_path(Path("relative/out")) == Path("relative/out")


def test_the_pack_and_the_cli_import_no_ray_without_ray_flag():
    code = (
        "import sys, codeformer_nodes\n"
        "from codeformer_nodes.cli.restore import build_parser\n"
        "from codeformer_nodes.batch import ray_driver\n"
        "build_parser().parse_args(['x', '-o', 'y'])\n"
        "print(','.join(m for m in ('ray', 'pyarrow', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_ray_flag_without_ray_says_how_to_install_it(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None\n"
        "from codeformer_nodes.cli.restore import main\n"
        f"sys.exit(main(['{tmp_path}', '-o', '{tmp_path / 'out'}', '--ray']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'codeformer-nodes[ray]'" in result.stderr
