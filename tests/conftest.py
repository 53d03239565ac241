"""Shared fixtures: reference vectors and recipe weights from ../shared/reference.

Tests that need ../shared skip with a reason when it is absent (a user's clone has none).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from benchmarks.scenes import SHARED
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
