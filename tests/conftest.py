"""Shared fixtures: reference vectors and recipe weights from ../shared/reference.

Tests that need ../shared skip with a reason when it is absent (a user's clone has none).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from benchmarks.scenes import NOISE_STRENGTH, SHARED
from codeformer_nodes import CodeFormer, load_codeformer

REFERENCE = SHARED / "reference"
TESTDATA = SHARED / "testdata"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the numerical reference lives in ../shared beside the project")
    return path


def _load_recipe_module():
    spec = importlib.util.spec_from_file_location("codeformer_recipe", _require(REFERENCE / "recipe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def recipe_weights() -> Callable[[str], dict[str, torch.Tensor]]:
    """``recipe_weights("manifest.json")``: the recipe state dict in float32, computed once per manifest."""
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def build(manifest: str) -> dict[str, torch.Tensor]:
        if manifest not in cache:
            recipe = _load_recipe_module()
            arrays = recipe.recipe_state_dict(str(_require(REFERENCE / manifest)))
            cache[manifest] = {key: torch.from_numpy(array).float() for key, array in arrays.items()}
        return cache[manifest]

    return build


@pytest.fixture(scope="session")
def recipe_checkpoint(recipe_weights, tmp_path_factory) -> Path:
    """A fake ``codeformer.pth`` in the official layout, made from the recipe weights."""
    path = tmp_path_factory.mktemp("weights") / "codeformer.pth"
    torch.save({"params_ema": recipe_weights("manifest.json")}, path)
    return path


@pytest.fixture(scope="session")
def model(recipe_checkpoint) -> CodeFormer:
    """The recipe network in float32 throughout, whatever ``auto`` would pick on this machine."""
    return load_codeformer(recipe_checkpoint, precision="fp32")


@pytest.fixture(scope="session")
def vectors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(_require(REFERENCE / "vectors.safetensors")))


@pytest.fixture(scope="session")
def variant_vectors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(_require(REFERENCE / "variants.safetensors")))


@pytest.fixture(scope="session")
def helper_weights(tmp_path_factory) -> Path:
    """A weights folder with the real MobileNet detector and a randomly initialised ParseNet (seed 0):
    no trained parser exists here, and any ParseNet of the right shape exercises the mask path."""
    source = _require(TESTDATA / "weights" / "detection_mobilenet0.25_Final.pth")
    folder = tmp_path_factory.mktemp("helper_weights")
    shutil.copy(source, folder / source.name)
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    return folder


@pytest.fixture(scope="session")
def gfpgan_package():
    """The ``gfpgan`` package, importable on current torchvision (see test_face_restorers.py)."""
    import torchvision.transforms.functional

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torchvision.transforms.functional_tensor", torchvision.transforms.functional)
        pytest.importorskip("basicsr", reason="the gfpgan oracle needs basicsr: scripts/setup.sh installs it")
        gfpgan = pytest.importorskip("gfpgan", reason="the oracle is the gfpgan package: scripts/setup.sh installs it")
        yield gfpgan


@pytest.fixture(scope="session")
def gfpgan_weights(gfpgan_package, tmp_path_factory) -> Path:
    """A random GFPGANv1.4-shaped file (GFPGANv1Clean, channel multiplier 2) in the official layout."""
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    torch.manual_seed(0)
    network = GFPGANv1Clean(
        out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False, num_mlp=8,
        input_is_latent=True, different_w=True, narrow=1, sft_half=True,
    )  # fmt: skip
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith("weight") and parameter.numel() == 1:  # a noise injection's strength
                parameter.fill_(NOISE_STRENGTH)
    path = tmp_path_factory.mktemp("gfpgan") / "any-name.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path
