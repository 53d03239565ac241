"""Face restorers other than CodeFormer: loaded by their keys, called without ``w``, restored as their
own inference restores them.

The oracle is the published ``gfpgan`` package (``GFPGANer.enhance``), installed for the tests
only (``scripts/setup.sh``), with random weights of GFPGANv1.4's and RestoreFormer's shapes (no
trained weights here). Its ``basicsr`` still imports ``torchvision.transforms.functional_tensor``, which
torchvision 0.17 removed; the fixture points that name at ``torchvision.transforms.functional``
(which holds the one function basicsr takes from it, ``rgb_to_grayscale``) for the tests only. Both
fixtures, ``gfpgan_package`` and ``gfpgan_weights``, live in ``conftest.py``: the front-end tests use them too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codeformer_nodes import (
    RestoreOptions,
    UnsupportedModelError,
    WeightsFileError,
    load_codeformer,
    load_face_restorer,
    restore_faces,
)
from codeformer_nodes.models import Precision, SpandrelFaceRestorer, choose_precision, clear_model_cache
from codeformer_nodes.models.precision import DeviceCapabilities
from codeformer_nodes.models.restorers import RESTOREFORMER_KEYS, SPANDREL_KINDS, restorer_precision

from .conftest import TESTDATA

DETECTOR = "retinaface_mobile0.25"  # GFPGANer builds the ResNet-50 RetinaFace; only the MobileNet one is here


@pytest.fixture(scope="module")
def restoreformer_state_dict(gfpgan_package) -> dict[str, torch.Tensor]:
    """Random weights of RestoreFormer's official shapes, as ``GFPGANer(arch="RestoreFormer")`` builds it."""
    from gfpgan.archs.restoreformer_arch import RestoreFormer

    torch.manual_seed(0)
    return RestoreFormer().state_dict()


@pytest.fixture(scope="module")
def restoreformer_weights(restoreformer_state_dict, tmp_path_factory) -> Path:
    """The random RestoreFormer in the layout of GFPGAN's release ``RestoreFormer.pth``: params_ema, no prefix."""
    path = tmp_path_factory.mktemp("restoreformer") / "RestoreFormer.pth"
    torch.save({"params_ema": restoreformer_state_dict}, path)
    return path


def test_gfpgan_is_recognised_by_keys_takes_no_fidelity_and_is_cached(gfpgan_weights):
    try:
        restorer = load_face_restorer(gfpgan_weights)
        assert isinstance(restorer, SpandrelFaceRestorer)
        assert restorer.kind.architecture == "GFPGAN" and not restorer.kind.accepts_fidelity
        assert restorer.source == gfpgan_weights.resolve() and len(restorer.sha256) == 64
        assert not restorer.training and all(not p.requires_grad for p in restorer.parameters())
        assert load_face_restorer(str(gfpgan_weights), precision="fp32") is restorer
        with pytest.raises(ValueError, match=r"GFPGAN \(.*any-name.pth\) does not run in float64: it is not measured"):
            load_face_restorer(gfpgan_weights, precision=Precision(torch.float64))
        with pytest.raises(UnsupportedModelError, match="looks like a GFPGAN model"):
            load_codeformer(gfpgan_weights)  # the CodeFormer loader is unchanged: it names what the file is
    finally:
        clear_model_cache()


def test_gfpgan_builds_whole_in_bfloat16_and_is_refused_in_float16(gfpgan_weights):
    try:
        restorer = load_face_restorer(gfpgan_weights, precision=Precision(torch.bfloat16))
        assert {tensor.dtype for tensor in restorer.state_dict().values()} == {torch.bfloat16}  # noise included
        with pytest.raises(
            ValueError, match=r"GFPGAN \(.*any-name.pth\) does not run in fp16: .*issue #50.*use auto, fp32, bf16"
        ):
            load_face_restorer(gfpgan_weights, precision=Precision(torch.float16))
    finally:
        clear_model_cache()


NATIVE_BFLOAT16 = DeviceCapabilities("cuda", cuda_capability=(8, 0))
EMULATED_BFLOAT16 = DeviceCapabilities("cpu")
# What each name means on a GPU that computes bfloat16 natively (choose_precision refuses fp16 on a CPU).
NATIVE_BFLOAT16_PRECISIONS = {
    name: choose_precision(name, torch.device("cuda"), NATIVE_BFLOAT16)
    for name in ("fp16", "bf16", "mixed-bf16", "mixed-fp16")
}


@pytest.mark.parametrize(
    ("architecture", "asked", "capabilities", "runs_in"),
    [
        ("GFPGAN", "auto", NATIVE_BFLOAT16, torch.bfloat16),  # bf16 kept 50 dB: auto takes it where it is fast
        ("GFPGAN", "auto", EMULATED_BFLOAT16, torch.float32),
        ("GFPGAN", "bf16", NATIVE_BFLOAT16, torch.bfloat16),
        ("GFPGAN", "fp32", NATIVE_BFLOAT16, torch.float32),
        ("RestoreFormer", "auto", NATIVE_BFLOAT16, torch.float32),  # no half mode keeps 40 dB
    ],
)
def test_each_family_runs_in_a_half_mode_only_where_it_keeps_40_db(architecture, asked, capabilities, runs_in):
    device = torch.device(capabilities.device_type)
    on_device = choose_precision(asked, device, capabilities)
    assert restorer_precision(SPANDREL_KINDS[architecture], asked, on_device) == Precision(runs_in)


@pytest.mark.parametrize(
    ("architecture", "asked", "why"),
    [
        ("GFPGAN", "fp16", "trained GFPGAN weights give broken faces in float16"),
        ("GFPGAN", "mixed-bf16", "the mixed modes keep CodeFormer's codes"),
        ("RestoreFormer", "bf16", "kept only 34.7 dB"),
        ("RestoreFormer", "fp16", "kept only 39.5 dB"),
        ("RestoreFormer", "mixed-fp16", "the mixed modes keep CodeFormer's codes"),
    ],
)
def test_the_other_modes_are_refused_with_the_reason(architecture, asked, why):
    offered = "auto, fp32, bf16" if architecture == "GFPGAN" else "auto, fp32"
    with pytest.raises(ValueError, match=f"^{architecture} .*{asked}.*: .*{why}.*; use {offered}$"):
        restorer_precision(SPANDREL_KINDS[architecture], asked, NATIVE_BFLOAT16_PRECISIONS[asked])


def test_a_mode_sharing_a_cached_networks_key_is_still_refused(gfpgan_weights, monkeypatch):
    """Where bfloat16 is native, "auto" and "mixed-bf16" both mean CodeFormer's mixed-bf16 (one cache key):
    GFPGAN loaded for "auto" runs in bf16, and a later "mixed-bf16" is refused, not handed the cached one."""
    from codeformer_nodes.models import loader

    def on_a_native_bfloat16_gpu(name: str, device: torch.device) -> Precision:
        return choose_precision(name, torch.device("cuda"), NATIVE_BFLOAT16)

    monkeypatch.setattr(loader, "choose_precision", on_a_native_bfloat16_gpu)
    try:
        restorer = load_face_restorer(gfpgan_weights, precision="auto")
        assert next(restorer.parameters()).dtype == torch.bfloat16
        with pytest.raises(ValueError, match="takes no mixed-bf16: the mixed modes keep CodeFormer's codes"):
            load_face_restorer(gfpgan_weights, precision="mixed-bf16")
    finally:
        clear_model_cache()


def test_a_codeformer_file_loads_as_load_codeformer_loads_it(recipe_checkpoint):
    try:
        restorer = load_face_restorer(recipe_checkpoint, precision="fp32")
        assert restorer.kind.accepts_fidelity and restorer.description.task == "restoration"
        assert load_codeformer(recipe_checkpoint, precision="fp32") is restorer
    finally:
        clear_model_cache()


def test_an_original_restoreformer_checkpoint_loads_as_gfpgans_release(
    restoreformer_state_dict, restoreformer_weights, tmp_path
):
    """The original RestoreFormer checkpoints keep the network under ``vqvae.`` in a Lightning ``state_dict``,
    beside training-only modules; they load as the same network as GFPGAN's release layout."""
    original = tmp_path / "last.ckpt"
    network = {f"vqvae.{key}": value for key, value in restoreformer_state_dict.items()}
    training_only = {"loss.discriminator.main.0.weight": torch.ones(64, 3, 4, 4)}
    torch.save({"epoch": 3, "global_step": 1200, "state_dict": {**network, **training_only}}, original)
    try:
        loaded = load_face_restorer(original)
        assert loaded.kind.architecture == "RestoreFormer"
        release = load_face_restorer(restoreformer_weights).state_dict()
        assert loaded.state_dict().keys() == release.keys()
        assert all(torch.equal(value, release[key]) for key, value in loaded.state_dict().items())
    finally:
        clear_model_cache()


@pytest.mark.parametrize("prefix", ["", "vqvae."])
def test_restoreformer_plus_plus_is_refused_by_name(tmp_path, prefix):
    """RestoreFormer++ has RestoreFormer's keys, and attention in the decoder at a second scale (32x32);
    spandrel builds only RestoreFormer's one-scale decoder, so the file is named, not half-loaded."""
    keys = [*RESTOREFORMER_KEYS, "decoder.up.4.attn.0.q.weight", "decoder.up.5.attn.0.q.weight"]
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save({"state_dict": {prefix + key: torch.ones(4, 4) for key in keys}}, path)
    with pytest.raises(UnsupportedModelError, match=r"RestoreFormer\+\+ model .*decoder.up.4.attn, decoder.up.5.attn"):
        load_face_restorer(path)


def test_gfpgan_v1_4_is_pinned_and_fetched_by_its_bare_name(tmp_path, monkeypatch):
    from codeformer_nodes.cli.fetch import FETCHABLE
    from codeformer_nodes.models.downloads import MIRROR_VARIABLE
    from codeformer_nodes.models.official import GFPGAN_V1_4

    assert (GFPGAN_V1_4.size, GFPGAN_V1_4.sha256[:8]) == (348_632_874, "e2cd4703")
    assert FETCHABLE[GFPGAN_V1_4.name] is GFPGAN_V1_4
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")  # nothing listens: the fetch is tried, and fails
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsFileError, match=r"GFPGANv1.4.pth is in none of .*codeformer-fetch GFPGANv1.4.pth"):
        load_face_restorer("GFPGANv1.4.pth")


def test_a_file_that_is_no_face_restorer_is_named(tmp_path):
    path = tmp_path / "detector.pth"
    torch.save({"body.stage1.0.0.weight": torch.ones(8, 3, 3, 3), "ClassHead.0.conv1x1.weight": torch.ones(4, 8)}, path)
    with pytest.raises(UnsupportedModelError, match="neither CodeFormer nor a face restorer.*RetinaFace detector"):
        load_face_restorer(path)


def test_without_spandrel_the_error_names_the_install(gfpgan_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(ImportError, match=r"pip install 'codeformer-nodes\[upsample\]'"):
        load_face_restorer(gfpgan_weights)


class RecordingNetwork(torch.nn.Module):
    """Records the keyword arguments of each call; returns its input, as a face restorer returns a face."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, object]] = []

    def forward(self, x: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor]:
        self.calls.append(kwargs)
        return (x,)


@pytest.mark.parametrize("architecture", SPANDREL_KINDS)
def test_w_and_adain_are_never_passed_on(architecture):
    network = RecordingNetwork()
    restorer = SpandrelFaceRestorer(network, SPANDREL_KINDS[architecture], Path("stand-in.pth"), "0" * 64)
    faces = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    (out,) = restorer(faces, w=torch.tensor([0.7]), adain=True)
    assert network.calls == [SPANDREL_KINDS[architecture].network_call]
    assert torch.allclose((out + 1) / 2 * 255, ((faces + 1) / 2 * 255).round(), atol=1e-4), "8-bit levels"


# --- GFPGAN and RestoreFormer against GFPGANer.enhance ---


def read_rgb(name: str) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(TESTDATA / "photos" / name).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


# photo: (GFPGANer upscale, only_center_face, faces restored); the same options on our side.
PHOTOS = {"group_small.jpg": (2, False, 4), "group_four.png": (1, True, 1)}


@pytest.mark.parametrize("photo", PHOTOS)
def test_gfpgan_restores_as_gfpganer_enhance(gfpgan_package, gfpgan_weights, helper_weights, photo, monkeypatch):
    """``GFPGANer.enhance`` (facexlib's helper with ``use_parse=True``, detection at the original size,
    8-bit faces, its default ``weight``) against ``restore_faces`` in the facexlib flow with the parse
    mask. Two changes to the oracle, neither in what it computes: its helper gets the MobileNet
    detector (the only real one here), and its network the stored noise (``randomize_noise=False``),
    as ours runs it: with fresh noise on each call, no two official runs agree."""
    compare_with_gfpganer(gfpgan_package, gfpgan_weights, "clean", helper_weights, photo, monkeypatch)


def test_restoreformer_restores_as_gfpganer_enhance(gfpgan_package, restoreformer_weights, helper_weights, monkeypatch):
    """RestoreFormer as GFPGAN's inference runs it (``GFPGANer(arch="RestoreFormer")``, which passes
    ``return_rgb`` and ``weight`` that the network swallows unread); one face, upscale 1: each full
    forward costs seconds here. The network has no noise: the oracle is changed only in its detector."""
    compare_with_gfpganer(
        gfpgan_package, restoreformer_weights, "RestoreFormer", helper_weights, "group_four.png", monkeypatch
    )


def gfpganer(
    gfpgan_package, weights: Path, arch: str, upscale: int, helper_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> object:
    """``GFPGANer`` changed only where it cannot run here or cannot repeat itself: its helper gets the MobileNet
    detector (the only real one here), and GFPGAN's decoder the stored noise (``randomize_noise=False``)."""
    facexlib_helper = gfpgan_package.utils.FaceRestoreHelper

    def helper_with_our_detector(*args: object, **kwargs: object) -> object:
        return facexlib_helper(*args, **{**kwargs, "det_model": DETECTOR, "model_rootpath": str(helper_weights)})

    monkeypatch.setattr(gfpgan_package.utils, "FaceRestoreHelper", helper_with_our_detector)
    oracle = gfpgan_package.utils.GFPGANer(str(weights), upscale=upscale, arch=arch, device=torch.device("cpu"))
    if arch == "clean":
        oracle.gfpgan.register_forward_pre_hook(
            lambda _, args, kwargs: (args, {**kwargs, "randomize_noise": False}), with_kwargs=True
        )
    return oracle


def compare_with_gfpganer(
    gfpgan_package, weights: Path, arch: str, helper_weights: Path, photo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restore ``photo`` with ``GFPGANer(weights, arch=arch).enhance`` and with ``restore_faces``; both images
    and the pasted faces must agree to >= 45 dB."""
    upscale, center_only, face_count = PHOTOS[photo]
    oracle = gfpganer(gfpgan_package, weights, arch, upscale, helper_weights, monkeypatch)
    rgb = read_rgb(photo)
    _, official_faces, expected_bgr = oracle.enhance(np.ascontiguousarray(rgb[..., ::-1]), only_center_face=center_only)
    expected = expected_bgr[..., ::-1].astype(np.float64)
    try:
        restorer = load_face_restorer(weights)
        options = RestoreOptions(
            flow="facexlib", detector=DETECTOR, weights_dir=helper_weights, detection_size=None, parse_mask=True,
            upscale=upscale, face_selection="center" if center_only else "all",
        )  # fmt: skip
        result = restore_faces([rgb], restorer, options)
    finally:
        clear_model_cache()
    assert len(result.faces) == len(official_faces) == face_count
    ours = result.images[0].numpy().astype(np.float64) * 255
    assert ours.shape == expected.shape
    pasted = result.masks[0].numpy() > 0
    overall, on_faces = psnr(ours, expected), psnr(ours[pasted], expected[pasted])
    print(
        f"{arch} on {photo}: {overall:.1f} dB overall, {on_faces:.1f} dB on faces ({pasted.mean():.1%} of the pixels)"
    )
    assert pasted.mean() > 0.005, "the random parser must leave some face to compare"
    assert overall >= 45 and on_faces >= 45


def test_gfpgan_restores_aligned_faces_as_gfpganer_enhance(gfpgan_package, gfpgan_weights, helper_weights, monkeypatch):
    """The aligned path (``GFPGANer.enhance(has_aligned=True)``: no detection, no paste, the 8-bit face)
    against ``restore_faces(has_aligned=True)`` in the facexlib flow, on a 512x512 crop of a photo."""
    crop = np.ascontiguousarray(read_rgb("group_four.png")[60:572, 300:812])
    oracle = gfpganer(gfpgan_package, gfpgan_weights, "clean", 1, helper_weights, monkeypatch)
    _, (official_bgr,), _ = oracle.enhance(np.ascontiguousarray(crop[..., ::-1]), has_aligned=True)
    try:
        result = restore_faces([crop], load_face_restorer(gfpgan_weights), RestoreOptions(flow="facexlib",
                               has_aligned=True))  # fmt: skip
    finally:
        clear_model_cache()
    ours = result.images[0].numpy().astype(np.float64) * 255
    decibels = psnr(ours, official_bgr[..., ::-1])
    print(f"GFPGAN aligned: {decibels:.1f} dB, largest difference {np.abs(ours - official_bgr[..., ::-1]).max():.3f}")
    assert decibels >= 45
