"""The command line end to end on the real photos, with recipe weights and the real detector."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from codeformer_nodes.batch.imageio import read_image
from codeformer_nodes.cli.restore import build_parser, main
from codeformer_nodes.pipeline import FidelityRamp, RestoreOptions, option_help
from codeformer_nodes.pipeline.video_options import VideoOptions

from .conftest import TESTDATA
from .test_workflows import check_api_workflow, declared_specs


@pytest.fixture(scope="module")
def detector_args(helper_weights) -> list[str]:
    return ["--detector", "retinaface_mobile0.25", "--weights-dir", str(helper_weights)]


@pytest.fixture
def inputs(tmp_path):
    if not (TESTDATA / "photos").exists():
        pytest.skip("../shared/testdata is absent")
    folder = tmp_path / "in"
    folder.mkdir()
    text = PngImagePlugin.PngInfo()
    text.add_text("prompt", '{"1": "a workflow"}')
    Image.open(TESTDATA / "photos" / "group_four.png").save(folder / "four.png", pnginfo=text, icc_profile=b"")
    shutil.copy(TESTDATA / "photos" / "group_small.jpg", folder / "small.jpg")
    (folder / "truncated.jpg").write_bytes((TESTDATA / "photos" / "group_small.jpg").read_bytes()[:500])
    (tmp_path / "empty_folder").mkdir()
    return folder


def test_restores_good_inputs_reports_bad_ones(detector_args, inputs, recipe_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(inputs), str(tmp_path / "empty_folder"), "-o", str(out), "--model", str(recipe_checkpoint)]
    status = main([*args, *detector_args, "--face-selection", "largest", "--report", "-"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert status == 1, "a bad input makes the run fail, after the good ones are written"
    by_name = {entry["input"].rsplit("/", 1)[-1]: entry for entry in report["images"]}
    assert len(by_name["four.png"]["faces"]) == 1 and len(by_name["small.jpg"]["faces"]) == 1
    assert "could not be decoded" in by_name["truncated.jpg"]["error"]
    assert "holds no images" in by_name["empty_folder"]["error"]
    assert "2 image(s) restored, 2 failed, 2 face(s)" in captured.err
    written = Image.open(out / "four.png")
    assert written.info["prompt"] == '{"1": "a workflow"}'
    assert (out / "small.jpg").exists() and not (out / "truncated.jpg").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_never_overwrites_an_input_and_resumes(detector_args, inputs, recipe_checkpoint, capsys):
    original = (inputs / "four.png").read_bytes()
    args = [str(inputs / "four.png"), "-o", str(inputs), "--model", str(recipe_checkpoint), *detector_args]
    assert main([*args, "--face-selection", "largest"]) == 0
    assert (inputs / "four.png").read_bytes() == original
    restored = inputs / "four_restored.png"
    assert restored.exists()
    before = restored.stat().st_mtime_ns
    assert main([*args, "--skip-existing", "--face-selection", "largest", "--report", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["images"][0]["skipped"] is True
    assert restored.stat().st_mtime_ns == before


def test_reads_exif_orientation_16_bit_and_grey(tmp_path):
    rotated = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    loaded = read_image(tmp_path / "rotated.jpg")
    assert loaded.pixels.shape == (40, 20, 3)
    reread = Image.Exif()
    reread.load(loaded.exif)
    assert reread[0x0112] == 1

    deep = np.linspace(0, 65535, 64 * 32, dtype=np.uint16).reshape(32, 64)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    pixels = read_image(tmp_path / "deep.png").pixels
    assert pixels.shape == (32, 64, 1)
    assert torch.allclose(pixels[..., 0], torch.from_numpy(deep / 65535.0).float(), atol=1e-6)


def test_exported_workflow_validates_and_gives_the_cli_pixels(
    detector_args, helper_weights, inputs, recipe_checkpoint, tmp_path, monkeypatch
):
    from . import comfy_stand_ins

    flags = ["--fidelity", "0.7", "--face-selection", "largest", "--visibility", "0.8", *detector_args]
    workflow_file = tmp_path / "workflow_api.json"
    assert main(["--export-workflow", str(workflow_file), "--model", str(recipe_checkpoint), *flags]) == 0
    workflow = json.loads(workflow_file.read_text())

    comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    (tmp_path / "models" / "facedetection").mkdir(parents=True)
    for helper in helper_weights.iterdir():  # the detector and the parser
        shutil.copy(helper, tmp_path / "models" / "facedetection")
    (tmp_path / "models" / "facerestore_models").mkdir()
    (tmp_path / "models" / "facerestore_models" / recipe_checkpoint.name).symlink_to(recipe_checkpoint)
    check_api_workflow(workflow, declared_specs()[0])

    from codeformer_nodes.nodes.codeformer import NODE_CLASS_MAPPINGS

    def inputs_of(node_id: str) -> dict:
        return {k: v for k, v in workflow[node_id]["inputs"].items() if not isinstance(v, list)}

    model, _ = NODE_CLASS_MAPPINGS["CodeFormerModelLoader"]().load(**inputs_of("2"))
    (control,) = NODE_CLASS_MAPPINGS["CodeFormerFidelity"]().build(**inputs_of("3"))
    image = read_image(inputs / "four.png").pixels[None]
    node_image = NODE_CLASS_MAPPINGS["CodeFormerRestoreFaces"]().restore(
        image, model, **inputs_of("4"), fidelity=control
    )[0]
    out = tmp_path / "out"
    assert main([str(inputs / "four.png"), "-o", str(out), "--model", str(recipe_checkpoint), *flags]) == 0
    cli_pixels = np.asarray(Image.open(out / "four.png"))
    node_pixels = (node_image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(cli_pixels, node_pixels)


def test_task_mismatch_is_a_clear_error(detector_args, inputs, recipe_checkpoint, tmp_path, capsys):
    args = [str(inputs), "-o", str(tmp_path / "out"), "--model", str(recipe_checkpoint), "--task", "colorization"]
    assert main([*args, *detector_args]) == 2
    assert "restoration checkpoint, but task 'colorization'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_outputs_never_collide_with_inputs_or_each_other(tmp_path):
    from codeformer_nodes.batch.imageio import WriteSettings
    from codeformer_nodes.batch.naming import output_path

    first, second = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    restored_before = tmp_path / "a" / "x_restored.png"
    taken = {first.resolve(), second.resolve(), restored_before.resolve()}
    settings = WriteSettings()
    chosen = [output_path(source, tmp_path / "a", settings, taken)[0] for source in (first, second)]
    assert chosen == [tmp_path / "a" / "x_restored_2.png", tmp_path / "a" / "x_restored_3.png"]


def test_outputs_are_readable_by_others(detector_args, inputs, recipe_checkpoint, tmp_path):
    import os
    import stat

    out = tmp_path / "out"
    args = [str(inputs / "four.png"), "-o", str(out), "--model", str(recipe_checkpoint), *detector_args]
    assert main([*args, "--face-selection", "largest"]) == 0
    mode = stat.S_IMODE(os.stat(out / "four.png").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


class RecordingNetwork(torch.nn.Module):
    """Inverts each face and records the batch size of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.batches: list[int] = []

    def forward(self, x, w=0, adain=False):
        self.batches.append(x.shape[0])
        return (-x, None, None)


def test_faces_of_several_images_share_a_chunk_and_a_bad_image_fails_alone(inputs, tmp_path, helper_weights):
    from codeformer_nodes import RestoreOptions
    from codeformer_nodes.batch.imageio import WriteSettings
    from codeformer_nodes.batch.runner import run

    network = RecordingNetwork()
    files = [inputs / "four.png", inputs / "small.jpg"]
    options = RestoreOptions(detector="retinaface_mobile0.25", weights_dir=helper_weights, chunk_size=8)
    entries = run(files, network, options, tmp_path / "out", WriteSettings(), skip_existing=False)
    assert network.batches == [8], "the 4 + 4 faces of two images go through one forward"
    assert [len(entry["faces"]) for entry in entries] == [4, 4]
    assert {entry["faces"][0]["image_index"] for entry in entries} == {0}, "face info is per file"

    network.batches.clear()
    files = [inputs / "four.png", inputs / "truncated.jpg", inputs / "small.jpg"]
    entries = run(files, network, options, tmp_path / "again", WriteSettings(), skip_existing=False)
    assert [bool(entry.get("error")) for entry in entries] == [False, True, False]
    assert network.batches == [8]


def test_missing_weights_are_named_together_before_anything_loads(recipe_checkpoint, tmp_path, monkeypatch, capsys):
    """Offline with the model given but no detector or parser: one message naming both, the one command
    that fetches them, exit 2, and a report that says why (a closed local port stands in for the
    unreachable release host)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CODEFORMER_NODES_MIRROR", "http://127.0.0.1:9/weights")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(image)
    report = tmp_path / "reports" / "run.json"
    args = [str(image), "-o", str(tmp_path / "out"), "--model", str(recipe_checkpoint), "--weights-dir", str(empty)]
    assert main([*args, "--report", str(report)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1, "one message"
    assert "codeformer-fetch detection_Resnet50_Final.pth parsing_parsenet.pth" in message
    written = json.loads(report.read_text())
    assert written["images"] == [] and "parsing_parsenet.pth" in written["error"]
    assert not (tmp_path / "out").exists()


def test_flags_show_the_library_help_texts_and_building_them_imports_nothing():
    """The help texts are stated once (pipeline/option_help.py) and read by --help as by the node tooltips;
    the module imports nothing, so that --help need not load torch for them."""
    tree = ast.parse(Path(option_help.__file__).read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(getattr(node, "module", None) == "__future__" for node in imports)
    fields = {kind: {field.name for field in dataclasses.fields(kind)} for kind in (RestoreOptions, FidelityRamp)}
    assert set(option_help.RESTORE_HELP) - {"ramp", "sweep", "face_indices"} <= fields[RestoreOptions]
    assert set(option_help.RAMP_HELP) == fields[FidelityRamp]
    assert set(option_help.VIDEO_HELP) <= {field.name for field in dataclasses.fields(VideoOptions)}
    texts = {**option_help.RESTORE_HELP, **option_help.VIDEO_HELP}
    flags = {action.dest: action.help for action in build_parser()._actions}
    assert {"fidelity", "ramp", "confidence", "code_margin", "landmark_window"} <= texts.keys() & flags.keys()
    for name in texts.keys() & flags.keys():
        assert flags[name].startswith(texts[name]), name
    build_parser().format_help()  # a '%' in a text would break argparse's formatting
