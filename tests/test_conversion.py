"""PIL images and numpy arrays in, the same kind back out (``RestoreResult.images_like``)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from codeformer_nodes import RestoreOptions, restore_faces, sweep_fidelity
from codeformer_nodes.pipeline.conversion import ImageKindError, images_like
from codeformer_nodes.pipeline.images import as_image_list
from codeformer_nodes.pipeline.video import VideoOptions, restore_video

from .conftest import TESTDATA
from .test_pipeline import DETECTOR, RecordingNetwork, TaskNetwork


@pytest.fixture(scope="module")
def options(helper_weights) -> RestoreOptions:
    """The default flow without the parse mask (a random ParseNet here; seconds a face)."""
    return RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, parse_mask=False)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    path = TESTDATA / "photos" / "group_four.png"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return np.array(Image.open(path).convert("RGB"))


def in_mode(rgb: np.ndarray, mode: str) -> Image.Image:
    """The photo in a PIL mode; alpha a ramp, 16-bit modes its grey levels times 257 plus a ramp."""
    image = Image.fromarray(rgb)
    if mode in ("RGBA", "LA", "PA"):
        alpha = np.linspace(0, 255, rgb.shape[1]).astype(np.uint8)[None].repeat(rgb.shape[0], 0)
        base = image.convert("L" if mode == "LA" else "RGB")
        image = Image.fromarray(np.dstack([np.asarray(base), alpha]), "LA" if mode == "LA" else "RGBA")
        return image.convert("PA") if mode == "PA" else image
    if mode.startswith("I"):
        levels = np.asarray(image.convert("L")).astype(np.uint16) * 257 + np.arange(rgb.shape[1], dtype=np.uint16) % 7
        if mode == "I":
            return Image.fromarray(levels.astype(np.int32))
        order = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, (rgb.shape[1], rgb.shape[0]), levels.astype(order).tobytes())
    if mode == "F":
        return Image.fromarray(np.asarray(image.convert("L")).astype(np.float32) / 255)
    return image.convert(mode)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "PA", "1", "I;16", "I;16B", "I", "F"])
def test_every_pil_mode_survives_the_trip_in_and_out_exactly(rgb, mode):
    image = in_mode(rgb[:64, :96], mode)
    back = images_like(as_image_list(image), image)
    wanted = {"1": "L", "P": "RGB", "PA": "RGBA"}.get(mode, mode)
    assert back.mode == wanted and back.size == image.size
    assert np.array_equal(pixels(back), pixels(image.convert(wanted) if wanted != mode else image))


def test_a_palette_image_with_transparency_comes_back_rgba(rgb):
    image = Image.fromarray(rgb[:32, :32]).convert("P")
    image.info["transparency"] = 0
    back = images_like(as_image_list([image]), [image])[0]
    assert back.mode == "RGBA" and np.array_equal(pixels(back), pixels(image.convert("RGBA")))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16"])
def test_pil_images_are_restored_and_come_back_in_their_mode(rgb, options, mode):
    image = in_mode(rgb, mode)
    before = image.tobytes()
    result = restore_faces(image, RecordingNetwork(), options)
    assert len(result.faces) == 4, "faces are found in every mode"
    restored = result.images_like(image)
    assert isinstance(restored, Image.Image) and restored.mode == mode and restored.size == image.size
    assert image.tobytes() == before, "the caller's image must not change"
    outside, original, out = result.masks[0].numpy() == 0, pixels(image), pixels(restored)
    assert np.array_equal(out[outside], original[outside]), "pixels away from faces come back exactly"
    assert not np.array_equal(out[~outside], original[~outside]), "faces are restored"
    if mode in ("RGBA", "LA"):
        assert np.array_equal(out[..., -1], original[..., -1]), "alpha is kept"


@pytest.mark.parametrize(
    "dtype, layout",
    [(np.uint8, "HWC"), (np.uint16, "HWC"), (np.float32, "HWC"), (np.float64, "BHWC"), (np.uint8, "HW")],
)
def test_numpy_arrays_come_back_in_their_dtype_and_layout(rgb, options, dtype, layout):
    levels = rgb.mean(axis=2).astype(np.uint8) if layout == "HW" else rgb
    if dtype == np.uint16:
        array = levels.astype(np.uint16) * 257
    elif np.issubdtype(dtype, np.floating):
        array = (levels / 255).astype(dtype)
    else:
        array = levels.copy()
    array = np.stack([array, array[:, ::-1]]) if layout == "BHWC" else array
    before = array.copy()
    result = restore_faces(array, RecordingNetwork(), options)
    restored = result.images_like(array)
    assert np.array_equal(array, before), "the caller's array must not change"
    assert restored.dtype == array.dtype and restored.shape == array.shape
    assert not np.shares_memory(restored, array)
    originals = array if layout == "BHWC" else array[None]
    outs = restored if layout == "BHWC" else restored[None]
    for out, original, mask in zip(outs, originals, result.masks, strict=True):
        outside = mask.numpy() == 0
        # the pipeline computes in float32: float64 pixels away from faces come back at float32 precision
        kept = original.astype(np.float32).astype(dtype) if dtype == np.float64 else original
        assert np.array_equal(out[outside], kept[outside])
        assert not np.array_equal(out[~outside], original[~outside])


def test_tensors_come_back_in_their_dtype_and_batch(rgb, options):
    levels = torch.from_numpy(rgb)
    result = restore_faces([levels], RecordingNetwork(), options)
    (restored,) = result.images_like([levels])
    assert restored.dtype == torch.uint8 and restored.shape == levels.shape
    batch = levels[None].float() / 255
    restored_batch = restore_faces(batch, RecordingNetwork(), options).images_like(batch)
    assert restored_batch.dtype == torch.float32 and restored_batch.shape == batch.shape
    assert torch.equal(restored_batch[0].mul(255).round().to(torch.uint8), restored)


def test_a_sweep_gives_each_input_its_own_kind(rgb, options):
    images = [in_mode(rgb, "RGB"), in_mode(rgb, "L")]
    result = sweep_fidelity(images, RecordingNetwork(), [0.2, 0.8], options)
    restored = result.images_like(images)
    assert [image.mode for image in restored] == ["RGB", "RGB", "L", "L"]
    assert isinstance(sweep_fidelity(images[0], RecordingNetwork(), [0.2, 0.8], options).images_like(images[0]), list)
    with pytest.raises(ImageKindError, match="did not come from the 3 image"):
        result.images_like([*images, images[0]])


def test_video_frames_as_pil_images(rgb, options):
    frames = [Image.fromarray(np.roll(rgb, dx, axis=1)) for dx in (0, 2)]
    video = VideoOptions(landmark_window=1, code_window=1, feature_window=1, max_gap=0)
    results = list(restore_video(frames, RecordingNetwork(), options, video))
    assert [len(result.faces) for result in results] == [4, 4]
    restored = [result.images_like(frame) for result, frame in zip(results, frames, strict=True)]
    assert all(isinstance(image, Image.Image) and image.mode == "RGB" for image in restored)
    still = restore_faces(frames[0], RecordingNetwork(), options).images_like(frames[0])
    assert np.array_equal(pixels(restored[0]), pixels(still)), "a frame is restored as the image would be"


def test_a_colorized_grey_image_comes_back_in_colour(rgb, options):
    grey_pil, grey_array = in_mode(rgb, "L"), rgb.mean(axis=2).astype(np.uint8)
    options = dataclasses.replace(options, face_selection="largest")
    colour = restore_faces(grey_pil, TaskNetwork("colorization"), options).images_like(grey_pil)
    assert colour.mode == "RGB" and colour.size == grey_pil.size
    array = restore_faces(grey_array, TaskNetwork("colorization"), options).images_like(grey_array)
    assert array.shape == (*grey_array.shape, 3) and array.dtype == np.uint8
    assert np.abs(array[..., 0].astype(int) - array[..., 1]).max() > 100, "the face came back red, not grey"


def test_unreadable_modes_and_kinds_are_named(rgb, options):
    with pytest.raises(ImageKindError, match=r"PIL mode 'CMYK'.*image.convert\('RGB'\)"):
        restore_faces([Image.fromarray(rgb).convert("CMYK")], RecordingNetwork(), options)
    with pytest.raises(ValueError, match="read as 16-bit levels"):
        restore_faces(Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)), RecordingNetwork(), options)
    with pytest.raises(ImageKindError, match="like must be the images"):
        images_like(as_image_list(rgb), "photo.png")


def fake_text_to_image(prompt: str, rgb: np.ndarray) -> SimpleNamespace:
    """Stands in for a diffusers pipeline's call: an output whose ``images`` is a list of PIL images."""
    return SimpleNamespace(images=[Image.fromarray(rgb), Image.fromarray(np.ascontiguousarray(rgb[:, ::-1]))])


def test_a_diffusers_style_loop_saves_restored_pil_images(rgb, options, tmp_path):
    """The README's loop, with a stand-in for ``pipe(prompt)``."""
    model = RecordingNetwork()
    for number, prompt in enumerate(["a group photo", "four friends"]):
        images = fake_text_to_image(prompt, rgb).images
        restored = restore_faces(images, model, options, fidelity=0.7).images_like(images)
        for index, image in enumerate(restored):
            image.save(tmp_path / f"{number:03d}_{index}.png")
    saved = sorted(tmp_path.glob("*.png"))
    assert [path.name for path in saved] == ["000_0.png", "000_1.png", "001_0.png", "001_1.png"]
    first = Image.open(saved[0])
    assert first.mode == "RGB" and first.size == (rgb.shape[1], rgb.shape[0])
    assert not np.array_equal(np.asarray(first), rgb), "faces were restored before saving"
