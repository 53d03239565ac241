"""Hostile values handed to the library and the nodes (issue 23): each is a result or a named error
that says which field or input was wrong, never a failure deep inside or a silently wrong result."""

from __future__ import annotations

import math
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from codeformer_nodes import FidelityRamp, RestoreOptions, paste_faces, restore_faces, sweep_fidelity
from codeformer_nodes.models import WeightsFileError
from codeformer_nodes.models.auxiliary import DETECTOR_WEIGHTS, find_auxiliary_weights
from codeformer_nodes.models.downloads import MIRROR_VARIABLE
from codeformer_nodes.nodes.sockets import parse_sweep
from codeformer_nodes.pipeline.errors import InputError, OptionError
from codeformer_nodes.pipeline.segs import restore_segs
from codeformer_nodes.pipeline.video import VideoOptions, restore_video

from .conftest import TESTDATA
from .test_pipeline import DETECTOR, RecordingNetwork, small_codeformer

NAN, INF = math.nan, math.inf


class NoFaces:
    """A detector that finds nothing: the sweep's bookkeeping without detection's cost."""

    def detect(self, image: np.ndarray, confidence: float) -> list:
        return []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("landmark_window", NAN), ("landmark_window", 1.5), ("landmark_window", True), ("landmark_window", "3"),
        ("code_window", INF), ("code_window", 2.0), ("code_window", None), ("code_margin", INF),
        ("feature_window", 2.0), ("feature_window", None), ("feature_window", 0),
        ("code_margin", "0.1"), ("max_gap", 1.5), ("max_gap", None), ("track_memory", NAN), ("track_memory", INF),
        ("causal", "yes"), ("causal", 1), ("cut_threshold", True), ("cut_threshold", 0), ("match_distance", NAN),
        ("match_distance", INF), ("match_distance", 0), ("tracks", [0.5]), ("tracks", 5), ("tracks", [1, 1]),
    ],
)  # fmt: skip
def test_video_option_values_are_refused_naming_the_field(field, value):
    with pytest.raises(OptionError, match=field):
        VideoOptions(**{field: value})


def test_video_tracks_become_a_tuple():
    assert VideoOptions(tracks=[2, 0]).tracks == (2, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flow", ["codeformer"]), ("task", ["restoration"]), ("adain", "no"), ("keep_size", 0), ("parse_mask", "on"),
        ("draw_box", None), ("detector", 5), ("upscaler", 5), ("face_upsampler", 2.0), ("weights_dir", 5),
        ("upscale", 2.0), ("max_faces", 1.5), ("chunk_size", 1.5), ("selection_masks", np.ones((1, 8, 8))),
        ("selection_masks", torch.ones(1, 0, 0)), ("selection_masks", torch.full((1, 8, 8), NAN)),
        ("selection_masks", torch.ones(1, 1, 8, 8)), ("inpaint_masks", torch.ones(8, 8, dtype=torch.int64)),
        ("regions", [NAN, 0, 10, 10]), ("regions", {"x": 10, "y": 10, "width": -5, "height": 5}),
        ("regions", [[0, 0, INF, 10]]), ("regions", 5), ("regions", {"x": "a", "y": 0, "width": 1, "height": 1}),
    ],
)  # fmt: skip
def test_restore_option_values_and_types_are_refused_naming_the_field(field, value):
    with pytest.raises(OptionError, match=field):
        RestoreOptions(**{field: value})


@pytest.mark.parametrize("sizes", [("a", 10), (0, NAN), (0, INF), (-1, 10)])
def test_fidelity_ramp_sizes_are_checked(sizes):
    with pytest.raises(OptionError, match="size"):
        FidelityRamp(0.2, 0.8, *sizes)


def test_a_negative_box_away_from_the_image_is_allowed_but_not_a_negative_width():
    assert RestoreOptions(regions=[-50, -50, -10, -10]).regions == [-50, -50, -10, -10]  # boxes may leave the image


Seg = namedtuple("Seg", ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label"])


@pytest.mark.parametrize(
    "region", [[-10, 0, 32, 32], [0, 0, 65, 32], [40, 40, 200, 200], [10, 10, 10, 20], [0.5, 0, 8, 8], [0, 0, NAN, 8]]
)
def test_a_seg_crop_region_outside_its_image_is_refused(region):
    seg = Seg(None, np.ones((8, 8), np.float32), 0.9, region, [0, 0, 8, 8], "face")
    with pytest.raises(InputError, match="SEG 1: crop_region"):
        restore_segs(torch.zeros(1, 64, 64, 3), ((64, 64), [seg._replace(crop_region=[0, 0, 8, 8]), seg]),
                     RecordingNetwork(), RestoreOptions())  # fmt: skip


@pytest.mark.parametrize("w", [torch.full((1, 1, 1, 1), 5.0), torch.full((1, 1, 1, 1), NAN), torch.full((1,), -1.0)])
def test_a_w_tensor_of_any_shape_meets_the_range_check(w):
    network = small_codeformer()
    with pytest.raises(ValueError, match=r"w must lie in \[0, 1\]"):
        network(torch.zeros(1, 3, 512, 512), w=w)


@pytest.mark.parametrize("values", [iter([0.2, 0.8]), (w for w in (0.2, 0.8)), np.array([0.2, 0.8]), [0.2, 0.8]])
def test_sweep_values_may_be_any_iterable(values):
    result = sweep_fidelity(torch.zeros(2, 32, 32, 3), RecordingNetwork(), values, RestoreOptions(detector=NoFaces()))
    assert len(result.images) == 4


@pytest.mark.parametrize("values", [[], iter([]), "0.5", np.array([[0.5]]), [0.5, NAN], [0.5, 2]])
def test_bad_sweep_values_are_named(values):
    with pytest.raises(OptionError, match="sweep value"):
        sweep_fidelity(torch.zeros(1, 32, 32, 3), RecordingNetwork(), values, RestoreOptions(detector=NoFaces()))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5,,abc", "part 2 of 3 is empty"), ("0.5, abc", "part 2 of 2 \\('abc'\\) is no number"),
        ("0.5, 1.5", "part 2 of 2 \\('1.5'\\)"), ("nan", "part 1 of 1"), ("0.5,", "part 2 of 2 is empty"),
    ],
)  # fmt: skip
def test_the_sweep_widget_names_the_part_that_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(text)


def test_the_sweep_widget_reads_commas_and_semicolons():
    assert parse_sweep("0, 0.5; 1") == (0.0, 0.5, 1.0) and parse_sweep("  ") == ()


def test_weights_dir_expands_the_home_folder_and_a_failed_fetch_leaves_no_folder(helper_weights, tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")  # offline
    weights = DETECTOR_WEIGHTS["retinaface_mobile0.25"]
    with pytest.raises(WeightsFileError, match=str(home / "models" / "faces")):
        find_auxiliary_weights(weights, "~/models/faces")
    assert list(work.iterdir()) == [] and list(home.iterdir()) == [], "no folder made by a fetch that failed"
    assert not (tmp_path / "cache").exists()
    (home / "models" / "faces").mkdir(parents=True)
    shutil.copy(helper_weights / weights.file_name, home / "models" / "faces")
    assert find_auxiliary_weights(weights, "~/models/faces") == home / "models" / "faces" / weights.file_name


@pytest.fixture(scope="module")
def found(helper_weights):
    """The four faces of the group photo and their restored crops (an inverting stand-in network)."""
    rgb = np.array(Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB"))
    picture = torch.from_numpy(rgb / np.float32(255))
    options = RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, parse_mask=False, return_crops=True)
    return picture, restore_faces(picture[None], RecordingNetwork(), options), options


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (lambda good: torch.full_like(good, 5.0), r"crops \[0, 1, 2, 3\] \(of 4\) hold values outside \[0, 1\]"),
        (lambda good: torch.cat([good[:1], good[1:2] - 3, good[2:]]), r"crops \[1\] \(of 4\)"),
        (lambda good: torch.where(torch.arange(4)[:, None, None, None] == 3, torch.nan, good), r"crops \[3\]"),
        (lambda good: good[:, :256, :256], r"\(N, 512, 512, 3\).*got \(4, 256, 256, 3\)"),
        (lambda good: good.mul(255).to(torch.uint8), "floats in \\[0, 1\\]; got torch.uint8"),
        (lambda good: good[:3], "3 restored crops for 4 faces"),
        (lambda good: good.numpy(), "got ndarray"),
    ],
)
def test_crops_are_checked_before_they_are_pasted(found, crops, message):
    picture, result, options = found
    assert len(result.faces) == 4
    with pytest.raises(InputError, match=message):
        paste_faces([picture], result.faces, crops(result.restored_crops), options)


FRAME_BY_FRAME = VideoOptions(landmark_window=1, code_window=1, feature_window=1, max_gap=0)


@pytest.mark.parametrize("frames", [torch.rand(225, 400, 3), np.zeros((64, 48, 3), np.uint8), torch.rand(5)])
def test_restore_video_refuses_one_image_rather_than_reading_its_rows_as_frames(frames):
    with pytest.raises(InputError, match=r"pass a single frame as \[frame\]"):
        list(restore_video(frames, RecordingNetwork(), RestoreOptions(detector=NoFaces()), FRAME_BY_FRAME))


def test_a_clip_of_one_frame_is_one_result():
    frame = torch.rand(32, 48, 3)
    for frames in ([frame], frame[None], [frame.numpy()]):
        (result,) = restore_video(frames, RecordingNetwork(), RestoreOptions(detector=NoFaces()), FRAME_BY_FRAME)
        assert torch.equal(result.images[0], frame)


@pytest.mark.parametrize(
    "changes",
    [{"regions": [0, 0, 10, 10]}, {"selection_masks": torch.ones(1, 32, 32)}, {"selection_masks": torch.ones(9, 9)}],
)
def test_restore_video_refuses_regions_and_selection_masks_it_would_ignore(changes):
    options = RestoreOptions(detector=NoFaces(), **changes)
    with pytest.raises(OptionError, match="regions and selection_masks"):
        list(restore_video(torch.rand(3, 32, 32, 3), RecordingNetwork(), options, FRAME_BY_FRAME))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.full((32, 32, 3), torch.nan), "frame 2 holds NaN"),
        (torch.zeros(32, 32, 2), "frame 2: expected"),
        (torch.zeros(32, 32, 3, dtype=torch.int32), "frame 2 has dtype"),
        ("frame.png", "frame 2 must be a tensor"),
    ],
)
def test_frame_errors_name_the_frame(bad, message):
    frames = [torch.rand(32, 32, 3), torch.rand(32, 32, 3), bad]
    with pytest.raises((ValueError, TypeError), match=message):
        list(restore_video(frames, RecordingNetwork(), RestoreOptions(detector=NoFaces()), FRAME_BY_FRAME))


@pytest.mark.parametrize("flow", ["codeformer", "facexlib"])
def test_a_face_in_a_tiny_image_is_still_found(helper_weights, flow):
    """Why detection is not skipped for tiny images: both official helpers enlarge them before
    detecting, and a 24x32 thumbnail of a face is found there."""
    thumbnail = Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB").crop((380, 50, 560, 290))
    tiny = np.array(thumbnail.resize((24, 32), Image.BICUBIC))
    options = RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, parse_mask=False, flow=flow)
    assert len(restore_faces([tiny], RecordingNetwork(), options).faces) == 1
