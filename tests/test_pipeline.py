"""Behaviour of restore_faces with a stand-in network (fast) and the real detector."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codeformer_nodes import FidelityRamp, RestoreOptions, restore_faces
from codeformer_nodes.models import WeightsFileError
from codeformer_nodes.models.auxiliary import DETECTOR_WEIGHTS, find_auxiliary_weights
from codeformer_nodes.models.downloads import MIRROR_VARIABLE
from codeformer_nodes.models.restorers import CODEFORMER_KIND
from codeformer_nodes.pipeline.detection import load_detector
from codeformer_nodes.pipeline.images import GREY_SAMPLE_STEP, GREY_TOLERANCE_LEVELS, is_grey
from codeformer_nodes.pipeline.tasks import inpaint_crop_masks

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"


class RecordingNetwork(torch.nn.Module):
    """Stands in for CodeFormer: inverts the face and records every forward's batch and w."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[int, list[float]]] = []

    def forward(self, x, w=0, adain=False):
        self.calls.append((x.shape[0], [round(float(v), 4) for v in torch.as_tensor(w).reshape(-1)]))
        return (-x, None, None)


@pytest.fixture(scope="module")
def weights_dir(helper_weights):
    return helper_weights


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from PIL import Image

    path = TESTDATA / "photos" / "group_four.png"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return torch.from_numpy(np.array(Image.open(path).convert("RGB")).astype(np.float32) / 255.0)


def run(images, weights_dir, network=None, **changes):
    """Our default flow without the parse mask (its own tests below): a random ParseNet may label a
    stand-in's uniform faces as background, and it costs seconds a face."""
    changes.setdefault("parse_mask", False)
    network = network or RecordingNetwork()
    return restore_faces(images, network, RestoreOptions(detector=DETECTOR, weights_dir=weights_dir, **changes))


def test_untouched_pixels_are_bit_identical_and_input_unchanged(photo, weights_dir):
    batch = torch.stack([photo, photo.flip(1)])
    before = batch.clone()
    result = run(batch, weights_dir)
    assert torch.equal(batch, before), "the caller's tensor must not change"
    assert len(result.faces) == 8 and result.faces_per_image == [4, 4]
    for image, mask, original in zip(result.images, result.masks, batch, strict=True):
        outside = mask == 0
        assert torch.equal(image[outside], original[outside])
        assert not torch.equal(image[~outside], original[~outside])


def test_faces_are_ordered_left_to_right_with_plain_info(photo, weights_dir):
    result = run(photo[None], weights_dir)
    centres = [(face.box[0] + face.box[2]) / 2 for face in result.faces]
    assert centres == sorted(centres)
    info = result.faces[0].to_dict()
    assert set(info) >= {"image_index", "box", "score", "landmarks", "face_size", "fidelity", "affine"}
    assert '"face_size"' in result.faces_json()


def test_image_without_faces_comes_back_identical(weights_dir):
    blank = torch.rand(1, 200, 300, 3)
    result = run(blank, weights_dir)
    assert result.faces == [] and result.faces_per_image == [0]
    assert torch.equal(result.images[0], blank[0])
    assert result.masks[0].abs().sum() == 0


def test_all_faces_go_through_in_chunks_with_per_face_fidelity(photo, weights_dir):
    network = RecordingNetwork()
    ramp = FidelityRamp(small_w=0.2, large_w=0.8, small_size=150, large_size=200)
    result = run(torch.stack([photo, photo]), weights_dir, network, chunk_size=3, fidelity=ramp)
    assert [size for size, _ in network.calls] == [3, 3, 2]
    used = [w for _, ws in network.calls for w in ws]
    assert used == [round(ramp.at(face.face_size), 4) for face in result.faces]
    assert len(set(used)) > 1


def test_selection_and_size_filters(photo, weights_dir):
    from codeformer_nodes.pipeline.detection import detect_faces
    from codeformer_nodes.pipeline.faces import select_faces
    from codeformer_nodes.pipeline.images import to_uint8_rgb

    detector = load_detector(DETECTOR, torch.device("cpu"), weights_dir)
    detections = detect_faces(detector, to_uint8_rgb(photo), 640, 0.97, "lanczos")
    height, width = photo.shape[:2]

    def select(**changes):
        return select_faces(detections, RestoreOptions(**changes), height, width)

    everything = select()
    sizes = sorted(face.size for face in everything)
    assert len(everything) == 4
    assert select(face_selection="largest") == [max(everything, key=lambda d: d.size)]
    assert sorted(d.size for d in select(max_faces=2)) == sizes[2:]
    assert len(select(min_face_size=sizes[1])) == 3
    assert len(select(max_face_size=sizes[1])) == 2
    assert select(face_selection=[0, 3, 7]) == [everything[0], everything[3]]
    centre = select(face_selection="center")
    assert len(centre) == 1 and centre[0] in everything[1:3]


def test_rgba_keeps_alpha_and_grey_stays_grey(photo, weights_dir):
    alpha = torch.linspace(0, 1, photo.shape[1]).expand(photo.shape[0], -1)[..., None]
    rgba = torch.cat([photo, alpha], dim=2)
    result = run(rgba[None], weights_dir)
    assert torch.equal(result.images[0][..., 3], rgba[..., 3])
    grey = photo.mean(dim=2, keepdim=True).expand(-1, -1, 3).contiguous()
    out = run(grey[None], weights_dir, flow="facexlib").images[0]
    assert torch.allclose(out[..., 0], out[..., 1], atol=1e-6) and torch.allclose(out[..., 1], out[..., 2], atol=1e-6)
    # CodeFormer's flow gives a grey face the input crop's channel statistics, its grey border
    # (132, 133, 135) included: a tint of a level or two
    out = run(grey[None], weights_dir).images[0]
    assert (out[..., 0] - out[..., 2]).abs().max() <= 3 / 255 and (out[..., 0] - out[..., 2]).abs().max() > 0


def test_grey_means_every_pixel_even_off_the_sampled_grid() -> None:
    grey = np.full((4 * GREY_SAMPLE_STEP, 4 * GREY_SAMPLE_STEP, 3), 128, dtype=np.uint8)
    image = torch.from_numpy(grey).float() / 255
    assert is_grey(image, grey)
    off_grid = grey.copy()
    off_grid[GREY_SAMPLE_STEP + 1, 3, 0] += GREY_TOLERANCE_LEVELS + 1  # a pixel the quick look skips
    assert not is_grey(image, off_grid)
    on_grid = grey.copy()
    on_grid[GREY_SAMPLE_STEP, 0, 2] -= GREY_TOLERANCE_LEVELS + 1
    assert not is_grey(image, on_grid)
    within = grey.copy()
    within[5, 7, 1] += GREY_TOLERANCE_LEVELS  # JPEG chroma noise stays grey
    assert is_grey(image, within)


def test_visibility_blends_towards_the_original(photo, weights_dir):
    full = run(photo[None], weights_dir, face_selection="largest").images[0]
    half = run(photo[None], weights_dir, face_selection="largest", visibility=0.5).images[0]
    assert torch.allclose(half, (full + photo) / 2, atol=2e-6)


def test_upscale_and_pixel_budget(photo, weights_dir):
    result = run(photo[None], weights_dir, upscale=2)
    assert result.images[0].shape == (photo.shape[0] * 2, photo.shape[1] * 2, 3)
    calls = []

    def upscaler(image: torch.Tensor) -> torch.Tensor:
        calls.append(image.shape)
        return torch.nn.functional.interpolate(image.permute(0, 3, 1, 2), scale_factor=2).permute(0, 2, 3, 1)

    assert run(photo[None], weights_dir, upscale=2, upscaler=upscaler).images[0].shape[0] == photo.shape[0] * 2
    assert calls == [(1, *photo.shape)]
    with pytest.raises(ValueError, match="pixel budget"):
        run(torch.zeros(1, 1, 1, 3).expand(1, 20000, 20000, 3), weights_dir, upscale=4)


def test_has_aligned_restores_without_detection():
    faces = torch.rand(2, 512, 512, 3)
    network = RecordingNetwork()
    result = run(faces, None, network, has_aligned=True, return_crops=True, chunk_size=2)
    assert network.calls[0][0] == 2
    assert result.images[0].shape == (512, 512, 3)
    with pytest.raises(ValueError, match="512x512"):
        run(torch.rand(1, 300, 300, 3), None, has_aligned=True, flow="facexlib")
    resized = run(torch.rand(1, 300, 300, 3), None, network, has_aligned=True)  # CodeFormer's flow resizes
    assert resized.images[0].shape == (512, 512, 3)


def test_crops_are_returned_on_request(photo, weights_dir):
    result = run(photo[None], weights_dir, return_crops=True)
    assert result.crops.shape == result.restored_crops.shape == (4, 512, 512, 3)
    assert run(photo[None], weights_dir).crops is None


def test_deterministic(photo, weights_dir):
    first = run(photo[None], weights_dir).images[0]
    assert torch.equal(first, run(photo[None], weights_dir).images[0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fidelity": 1.5}, "fidelity must be a number in"),
        ({"detector": "yolo"}, "unknown detector"),
        ({"upscale": 8}, "upscale must be"),
        ({"face_selection": "biggest"}, "face_selection"),
    ],
)
def test_bad_options_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        RestoreOptions(**change)


def test_missing_detector_names_file_url_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")  # offline
    with pytest.raises(WeightsFileError) as error:
        find_auxiliary_weights(DETECTOR_WEIGHTS["retinaface_resnet50"], tmp_path / "mine")
    message = str(error.value)
    assert "detection_Resnet50_Final.pth" in message and "http://127.0.0.1:9" in message
    assert str(tmp_path / "mine") in message and str(tmp_path / "cache") in message


def test_the_real_detector_passes_its_pinned_check(weights_dir, tmp_path, monkeypatch):
    """The shared MobileNet file is the released one: a mirror serving it passes size, hash and keys."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good = DETECTOR_WEIGHTS[DETECTOR]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(weights_dir / good.file_name, mirror / good.file_name)
    monkeypatch.setenv(MIRROR_VARIABLE, mirror.as_uri())
    found = find_auxiliary_weights(good, tmp_path / "dest")
    assert found == tmp_path / "dest" / good.file_name and found.is_file()
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [good.file_name]


def test_parse_mask_needs_its_weights_and_pastes_through_them(photo, weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(weights_dir / DETECTOR_WEIGHTS[DETECTOR].file_name, folder)

    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")  # offline
    with pytest.raises(WeightsFileError, match="parsing_parsenet.pth"):
        run(photo[None], folder, face_selection="largest", parse_mask=True)

    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    result = run(photo[None], folder, face_selection="largest", parse_mask=True)
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][outside], photo[outside])
    assert result.masks[0].max() > 0


def small_codeformer() -> torch.nn.Module:
    """A real CodeFormer, narrow enough to run fast; random weights."""
    from codeformer_nodes import CodeFormer, CodeFormerConfig

    torch.manual_seed(0)
    config = CodeFormerConfig(base_channels=32, n_layers=2, dim_embd=64, dim_mlp=128, n_head=4, emb_dim=32)
    network = CodeFormer(config).eval()
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return network


def test_mixed_fidelity_chunk_equals_faces_one_by_one(photo, weights_dir):
    network = small_codeformer()
    ramp = FidelityRamp(small_w=0.1, large_w=0.9, small_size=150, large_size=200)
    batched = run(photo[None], weights_dir, network, chunk_size=4, fidelity=ramp, return_crops=True)
    singles = run(photo[None], weights_dir, network, chunk_size=1, fidelity=ramp, return_crops=True)
    assert len({face.fidelity for face in batched.faces}) > 1
    # float32 convolutions round differently per batch size; stay well under half an 8-bit level
    torch.testing.assert_close(batched.restored_crops, singles.restored_crops, atol=1e-3, rtol=0)
    other_w = run(photo[None], weights_dir, network, chunk_size=4, fidelity=1.0, return_crops=True)
    assert (other_w.restored_crops - batched.restored_crops).abs().max() > 1e-3


def test_out_of_memory_halves_the_chunk_then_gives_up(photo, weights_dir):
    class SmallMemory(RecordingNetwork):
        def forward(self, x, w=0, adain=False):
            if x.shape[0] > self.limit:
                raise torch.OutOfMemoryError("stand-in for CUDA out of memory")
            return super().forward(x, w, adain)

    network = SmallMemory()
    network.limit = 1
    run(photo[None], weights_dir, network, chunk_size=4)
    assert [size for size, _ in network.calls] == [1, 1, 1, 1]
    network.limit = 0
    with pytest.raises(torch.OutOfMemoryError):
        run(photo[None], weights_dir, network, chunk_size=4)


def test_visibility_zero_returns_the_input_exactly(photo, weights_dir):
    assert torch.equal(run(photo[None], weights_dir, visibility=0.0).images[0], photo)


def test_unquantized_float_background_is_kept(photo, weights_dir):
    """Floats between 8-bit levels (a VAE's output, 16-bit sources) stay as they are."""
    fine = (photo + torch.rand_like(photo) / 512).clamp(0, 1)
    result = run(fine[None], weights_dir)
    outside = result.masks[0] == 0
    assert result.faces_per_image == [4]
    assert torch.equal(result.images[0][outside], fine[outside])


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (1, 1, 4000, 3), (1, 4000, 1, 3), (0, 64, 64, 3)])
def test_degenerate_sizes_and_empty_batch(weights_dir, shape):
    images = torch.rand(shape)
    result = run(images, weights_dir)
    assert result.faces == [] and len(result.images) == shape[0]
    for image, original in zip(result.images, images, strict=True):
        assert torch.equal(image, original)


def test_non_finite_pixels_are_a_clear_error(weights_dir):
    images = torch.rand(2, 64, 64, 3)
    images[1, 3, 4, 0] = float("nan")
    with pytest.raises(ValueError, match="image 1 holds NaN"):
        run(images, weights_dir)


class CountingDetector:
    """Wraps a real detector and counts its calls; injected through ``RestoreOptions.detector``."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def detect(self, image, confidence):
        self.calls += 1
        return self.inner.detect(image, confidence)


def test_sweep_gives_one_output_per_value_from_one_detection(photo, weights_dir):
    from codeformer_nodes import sweep_fidelity

    detector = CountingDetector(load_detector(DETECTOR, torch.device("cpu"), weights_dir))
    network = RecordingNetwork()
    values = [0.0, 0.5, 1.0]
    images = torch.stack([photo, photo.flip(1)])
    options = RestoreOptions(detector=detector, weights_dir=weights_dir, chunk_size=8, parse_mask=False)
    result = sweep_fidelity(images, network, values, options)
    assert detector.calls == 2 and len(result.images) == 6
    assert [ws[0] for _, ws in network.calls] == values
    assert [face.fidelity for face in result.faces if face.image_index == 1] == [0.5] * 4
    assert {face.image_index for face in result.faces} == set(range(6))


def test_selection_mask_keeps_faces_whose_centre_is_inside(photo, weights_dir):
    everything = run(photo[None], weights_dir).faces
    mask = torch.zeros(1, *photo.shape[:2])
    mask[:, :, : int(everything[1].box[2])] = 1.0
    kept = run(photo[None], weights_dir, selection_masks=mask).faces
    assert [face.box for face in kept] == [face.box for face in everything[:2]]


class TaskNetwork(RecordingNetwork):
    """A stand-in checkpoint of a given task: pushes every pixel towards red, records adain. It says what a
    loaded CodeFormer says of itself (``restorers.LoadedRestorer``)."""

    kind = CODEFORMER_KIND

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task, self.source = task, Path("stand-in.pth")
        self.adain: list[bool] = []

    def forward(self, x, w=0, adain=False):
        super().forward(x, w, adain)
        self.adain.append(adain)
        red = torch.tensor([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1)
        return (x * 0 + red, None, None)


def test_colorization_runs_at_w0_with_adain_and_returns_colour(photo, weights_dir):
    network = TaskNetwork("colorization")
    grey = photo.mean(dim=2, keepdim=True)
    result = run(grey[None], weights_dir, network, fidelity=0.9, face_selection="largest")
    assert network.calls[0][1] == [0.0] and network.adain == [True]
    out = result.images[0]
    assert out.shape[2] == 3 and (out[..., 0] - out[..., 1]).abs().max() > 0.5


def test_inpainting_fills_only_the_mask_and_warps_it_per_face(photo, weights_dir):
    network = TaskNetwork("inpainting")
    left = torch.zeros(1, *photo.shape[:2])
    left[:, :, :300] = 1.0
    result = run(photo[None], weights_dir, network, inpaint_masks=left, return_crops=True)
    assert set(network.adain) == {False} and {w for _, ws in network.calls for w in ws} == {1.0}
    crops, restored = result.crops, result.restored_crops
    assert len(result.faces) == 1, "only the leftmost face has pixels in the mask"
    inside = torch.from_numpy(
        inpaint_crop_masks([photo], result.faces, (crops * 255).round().byte().numpy(), result_options(left))
    )
    assert (restored - crops).abs().amax(dim=3)[inside].min() > 0.1
    # kept exactly by the blend; normalising and back costs float32 rounding only
    assert torch.allclose(restored[~inside], crops[~inside], atol=1e-6, rtol=0)
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][outside], photo[outside])

    white = photo.clone()
    white[100:140, 450:500] = 1.0
    filled = run(white[None], weights_dir, TaskNetwork("inpainting"), return_crops=True)
    assert ((filled.restored_crops - filled.crops).abs().amax(dim=3) > 1e-6).any()


def result_options(masks: torch.Tensor) -> RestoreOptions:
    return RestoreOptions(task="inpainting", inpaint_masks=masks)


def test_task_must_match_the_checkpoint(photo, weights_dir):
    with pytest.raises(ValueError, match="colorization checkpoint, but task 'inpainting'"):
        run(photo[None], weights_dir, TaskNetwork("colorization"), task="inpainting")


def test_mask_shapes_are_checked(photo, weights_dir):
    two_d = torch.ones(*photo.shape[:2])
    assert len(run(photo[None], weights_dir, selection_masks=two_d).faces) == 4
    with pytest.raises(ValueError, match="selection_masks must be"):
        run(torch.stack([photo] * 3), weights_dir, selection_masks=torch.ones(2, *photo.shape[:2]))


def test_tasks_on_aligned_faces():
    faces = torch.rand(2, 512, 512, 3)
    faces[1, 100:200, 100:300] = 1.0
    grey = faces[:1].mean(dim=3, keepdim=True)
    coloured = run(grey, None, TaskNetwork("colorization"), has_aligned=True).images[0]
    assert coloured.shape == (512, 512, 3) and (coloured[..., 0] - coloured[..., 1]).abs().max() > 0.5

    network = TaskNetwork("inpainting")
    filled = run(faces, None, network, has_aligned=True).images
    assert set(network.adain) == {False} and {w for _, ws in network.calls for w in ws} == {1.0}
    holes = torch.zeros(512, 512, dtype=torch.bool)
    holes[100:200, 100:300] = True
    assert torch.allclose(filled[0], faces[0], atol=1e-6), "no white pixels: nothing to fill"
    assert torch.allclose(filled[1][~holes], faces[1][~holes], atol=1e-6)
    assert (filled[1][holes] - faces[1][holes]).abs().max() > 0.5


def test_small_images_keep_their_size_unless_asked_for_the_official_one(weights_dir):
    """CodeFormer's flow enlarges a short side under 512 to 512 first; by default the result comes back at
    the input's size with every pixel away from the faces the input's own, and keep_size=False gives
    the official size (491x310 -> 811x512)."""
    from PIL import Image

    small = torch.from_numpy(np.array(Image.open(TESTDATA / "photos" / "group_small.jpg")) / np.float32(255))
    kept = run(small[None], weights_dir, upscale=2)
    assert kept.images[0].shape == (620, 982, 3) and kept.masks[0].shape == (620, 982)
    away = kept.masks[0] == 0
    background = run(small[None], weights_dir, upscale=2, visibility=0.0).images[0]
    assert torch.equal(kept.images[0][away], background[away]), "away from faces: the input, enlarged as usual"
    assert len(kept.faces) == 4 and max(face.box[2] for face in kept.faces) < 491, "faces in input pixels"
    official = run(small[None], weights_dir, upscale=2, keep_size=False)
    assert official.images[0].shape == (1024, 1622, 3)
    assert run(small[None], weights_dir, flow="facexlib").images[0].shape == (310, 491, 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_face_size", float("nan")), ("max_face_size", float("nan")), ("eye_distance_threshold", float("nan")),
        ("detection_size", float("nan")), ("detection_size", 640.5), ("upscale", 2.0), ("upscale", True),
        ("max_faces", 1.5), ("chunk_size", 1.5), ("confidence", 0.0), ("confidence", float("nan")),
        ("fidelity", float("nan")), ("fidelity", "0.5"), ("face_selection", [0, 0]), ("face_selection", [-1]),
        ("face_selection", [0.5]), ("flow", "gfpgan"), ("min_face_size", -1),
    ],
)  # fmt: skip
def test_option_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RestoreOptions(**{field: value})


@pytest.mark.parametrize(
    ("height", "width", "size"), [(50, 70, 0), (64, 64, 4), (300, 200, 31), (10, 10, 25), (1, 4, 6)]
)
def test_erosion_takes_the_same_minimum_on_every_path(height, width, size):
    """OpenCV erodes on the CPU, pooling elsewhere: a minimum is exact, so both give the same mask."""
    from codeformer_nodes.pipeline.geometry import erode, erode_by_pooling

    generator = torch.Generator().manual_seed(size)
    mask = torch.rand(height, width, generator=generator)
    mask[mask < 0.2] = 0
    assert torch.equal(erode(mask, size), erode_by_pooling(mask, size or 3))


@pytest.mark.parametrize(("size", "sigma"), [(3, 0.0), (61, 0.0), (101, 11.0)])
def test_blur_on_the_cpu_equals_the_convolution_on_other_devices(size, sigma):
    """The CPU blurs with OpenCV (little memory), other devices by convolution: the same blur within 2e-6,
    on a mask with hard edges, one touching the border (reflected), and a mask shorter than the kernel."""
    from codeformer_nodes.pipeline.geometry import gaussian_blur, gaussian_blur_by_convolution

    mask = torch.zeros(300, 420)
    mask[40:250, 0:380] = 1.0
    mask[100:120, 200:260] = 0.25
    for image in (mask, mask[:20]):
        assert (gaussian_blur(image, size, sigma) - gaussian_blur_by_convolution(image, size, sigma)).abs().max() < 2e-6
