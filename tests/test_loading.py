"""Weights load from every common layout, never run pickled code, and fail with named errors."""

from __future__ import annotations

import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from codeformer_nodes import (
    StateDictMismatchError,
    UnsupportedModelError,
    WeightsFileError,
    load_codeformer,
)
from codeformer_nodes.cli.convert import main as convert_main
from codeformer_nodes.models import Precision, clear_model_cache, read_state_dict, recognise


@pytest.fixture
def restoration(recipe_weights) -> dict[str, torch.Tensor]:
    return recipe_weights("manifest.json")


def test_official_layout_loads_with_description(model, recipe_checkpoint):
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    description = model.description
    assert description.task == "restoration"
    assert description.config.codebook_size == 1024
    assert description.config.connect_sizes == (32, 64, 128, 256)
    assert description.source == recipe_checkpoint.resolve()
    assert len(description.sha256) == 64


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"params": sd}, id="params"),
        pytest.param(lambda sd: {"state_dict": sd}, id="state_dict"),
        pytest.param(lambda sd: sd, id="bare"),
        pytest.param(lambda sd: {"params_ema": {f"module.{k}": v for k, v in sd.items()}}, id="module-prefix"),
    ],
)
def test_container_layouts_unwrap_to_the_same_tensors(tmp_path, wrap):
    small = {"position_emb": torch.arange(6.0).reshape(2, 3), "feat_emb.bias": torch.ones(3)}
    path = tmp_path / "weights.pt"
    torch.save(wrap(small), path)
    loaded = read_state_dict(path)
    assert loaded.keys() == small.keys()
    assert all(torch.equal(loaded[k], small[k]) for k in small)


@pytest.mark.parametrize("manifest, task, codebook, sizes", [
    ("manifest.json", "restoration", 1024, (32, 64, 128, 256)),
    ("manifest_colorization.json", "colorization", 1024, (32, 64, 128)),
    ("manifest_inpainting.json", "inpainting", 512, (32, 64, 128)),
])  # fmt: skip
def test_each_official_checkpoint_is_recognised_by_keys(recipe_weights, tmp_path, manifest, task, codebook, sizes):
    path = tmp_path / "any-name-at-all.safetensors"
    save_file(recipe_weights(manifest), str(path))
    network = load_codeformer(path)
    assert network.description.task == task
    assert network.description.config.codebook_size == codebook
    assert network.description.config.connect_sizes == sizes
    clear_model_cache()


def test_pickled_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": {"position_emb": Payload()}}, path)
    with pytest.raises(WeightsFileError, match="refused: it would run code") as error:
        load_codeformer(path)
    assert str(path) in str(error.value) and "posix.system" in str(error.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proves the payload is live: an unsafe loader runs it
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_pickles_with_code_are_refused_as_code_never_as_corrupt(tmp_path, protocol):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "codeformer.pth"
    path.write_bytes(pickle.dumps({"params_ema": {"position_emb": Payload()}}, protocol=protocol))
    with pytest.raises(WeightsFileError) as error:
        load_codeformer(path)
    message = str(error.value)
    assert "refused: it would run code" in message and "system" in message
    assert "corrupt" not in message and "weights_only" not in message


@pytest.mark.parametrize(
    "keys, architecture",
    [
        (["conv_body_first.weight", "stylegan_decoder.style_mlp.1.weight"], "GFPGAN"),
        (["vqvae.encoder.conv_in.weight"], "RestoreFormer"),
        (["conv_first.weight", "body.0.rdb1.conv1.weight"], "ESRGAN"),
    ],
)
def test_other_architectures_are_named(tmp_path, keys, architecture):
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": {key: torch.zeros(2, 2) for key in keys}}, path)
    with pytest.raises(UnsupportedModelError, match=architecture) as error:
        load_codeformer(path)
    assert str(path) in str(error.value) and "position_emb" in str(error.value)
    assert "load_face_restorer" in str(error.value), "the way to load the other families is named"


def mutate(weights: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    changed = dict(weights)
    if kind == "missing":
        del changed["generator.blocks.24.bias"]
    elif kind == "unexpected":
        changed["generator.blocks.99.weight"] = torch.zeros(1)
    else:
        changed["feat_emb.bias"] = torch.zeros(7)
    return changed


@pytest.mark.parametrize(
    "kind, detail",
    [
        ("missing", "1 missing: generator.blocks.24.bias"),
        ("unexpected", "1 unexpected: generator.blocks.99.weight"),
        ("misshaped", "feat_emb.bias (7,) (expected (512,))"),
    ],
)
def test_key_mismatches_are_listed(restoration, tmp_path, kind, detail):
    path = tmp_path / "codeformer.safetensors"
    save_file(mutate(restoration, kind), str(path))
    with pytest.raises(StateDictMismatchError) as error:
        load_codeformer(path)
    assert detail in str(error.value) and str(path) in str(error.value)


def test_unknown_configuration_is_refused(restoration, tmp_path):
    path = tmp_path / "codeformer.safetensors"
    save_file({k: v for k, v in restoration.items() if not k.startswith("fuse_convs_dict.64.")}, str(path))
    with pytest.raises(UnsupportedModelError, match=r"CFT at sizes \(32, 128, 256\)"):
        load_codeformer(path)


def small_checkpoint(path: Path) -> Path:
    torch.save({"params_ema": {"position_emb": torch.zeros(64, 64)}}, path)
    return path


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"codeformer{suffix}"
    if suffix == ".pth":
        small_checkpoint(path)
    else:
        save_file({"position_emb": torch.zeros(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="truncated or corrupt") as error:
        load_codeformer(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("text", ["<html>404 Not Found</html>", "hello world", "xyz"])
def test_text_renamed_to_pth_is_corrupt_not_unsafe(tmp_path, text):
    path = tmp_path / "codeformer.pth"
    path.write_text(text)
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        load_codeformer(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.touch(), "is empty"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "does not exist"),
    ],
)
def test_empty_folder_and_missing_paths(tmp_path, make, message):
    path = tmp_path / "codeformer.pth"
    make(path)
    with pytest.raises(WeightsFileError, match=message):
        load_codeformer(path)


def test_cache_reuses_and_reloads_a_changed_file(tmp_path, monkeypatch):
    import codeformer_nodes.models.loader as loader

    path = small_checkpoint(tmp_path / "codeformer.pth")
    first_stat = path.stat()
    calls = []

    def counting_build(resolved, precision):
        calls.append(resolved)
        stand_in = torch.nn.Linear(1, 1).to(precision.dtype)
        stand_in.generator_dtype = precision.generator_dtype
        return stand_in

    monkeypatch.setattr(loader, "build_codeformer", counting_build)
    try:
        first = load_codeformer(path)
        assert load_codeformer(str(path)) is first
        os.utime(path, ns=(first_stat.st_atime_ns, first_stat.st_mtime_ns + 10**9))
        reloaded = load_codeformer(path)
        assert reloaded is not first
        assert load_codeformer(path, precision=Precision(torch.float64)) is not reloaded
        assert len(calls) == 3
        same_size = path.read_bytes().replace(b"position_emb", b"position_emc")  # rewritten in place
        with path.open("r+b") as file:
            file.write(same_size)
        os.utime(path, ns=(first_stat.st_atime_ns, first_stat.st_mtime_ns + 10**9))  # size and mtime as before
        assert load_codeformer(path) is not reloaded and len(calls) == 4
        calls.pop()
        for index in range(4):
            load_codeformer(small_checkpoint(tmp_path / f"other{index}.pth"))
        load_codeformer(path)
        assert len(calls) == 8, "the cache keeps only a few models"
    finally:
        clear_model_cache()


def test_concurrent_loads_of_one_file_build_one_network(tmp_path, monkeypatch):
    import codeformer_nodes.models.loader as loader

    path = small_checkpoint(tmp_path / "codeformer.pth")
    calls = []
    start = threading.Barrier(4)

    def slow_build(resolved, precision):
        calls.append(resolved)
        time.sleep(0.3)  # long enough for every caller to arrive while the first builds
        stand_in = torch.nn.Linear(1, 1).to(precision.dtype)
        stand_in.generator_dtype = precision.generator_dtype
        return stand_in

    def load(_: int) -> torch.nn.Module:
        start.wait()
        return load_codeformer(path, precision="fp32")

    monkeypatch.setattr(loader, "build_codeformer", slow_build)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            models = list(pool.map(load, range(4)))
        assert len(calls) == 1 and all(model is models[0] for model in models)
        assert load_codeformer(path, precision=Precision(torch.float64)) is not models[0] and len(calls) == 2
    finally:
        clear_model_cache()


def test_convert_to_safetensors_is_lossless(recipe_checkpoint, restoration, tmp_path, capsys):
    destination = tmp_path / "codeformer.safetensors"
    assert convert_main([str(recipe_checkpoint), str(destination)]) == 0
    assert "restoration" in capsys.readouterr().out
    converted = load_file(str(destination))
    assert converted.keys() == restoration.keys()
    assert all(torch.equal(converted[key], restoration[key]) for key in restoration)


def test_convert_refuses_a_non_codeformer_file(tmp_path, capsys):
    source = tmp_path / "gfpgan.pth"
    torch.save({"params_ema": {"conv_body_first.weight": torch.zeros(1)}}, source)
    assert convert_main([str(source), str(tmp_path / "out.safetensors")]) == 1
    assert "GFPGAN" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda sd: sd.pop("ft_layers.0.linear1.weight"), "lacks ft_layers.0.linear1.weight"),
        (lambda sd: sd.__setitem__(7, torch.zeros(1)), "keys that are not names"),
        (lambda sd: sd.__setitem__("position_emb", torch.zeros(256)), "position_emb is 1-D"),
        (lambda sd: sd.__setitem__("fuse_convs_dict.abc.scale.0.bias", torch.zeros(1)), "names no feature-map size"),
        (lambda sd: sd.__setitem__("feat_emb.bias", torch.zeros(512, dtype=torch.int32)), "not floating point"),
        (lambda sd: sd.__setitem__("feat_emb.bias", torch.zeros(512).to_sparse()), "not dense"),
        (lambda sd: sd.__setitem__("feat_emb.bias", torch.empty(512, device="meta")), "not dense"),
        (lambda sd: sd.__setitem__("feat_emb.bias", torch.full((512,), float("nan"))), "NaN or infinite"),
    ],
)
def test_malformed_state_dicts_get_named_errors(restoration, tmp_path, change, message):
    broken = dict(restoration)
    change(broken)
    with pytest.raises((UnsupportedModelError, StateDictMismatchError), match=message) as error:
        unwrap_and_recognise(broken, tmp_path / "codeformer.pth")
    assert "codeformer.pth" in str(error.value)


def unwrap_and_recognise(state_dict: dict, path: Path) -> None:
    """What loading does with a state dict before building the network (no file round trip)."""
    from codeformer_nodes.models.checkpoint import unwrap_state_dict

    recognise(unwrap_state_dict({"params_ema": state_dict}, path), path)


def test_unreadable_and_looping_paths_are_named(tmp_path):
    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop)
    with pytest.raises(WeightsFileError, match="cannot be opened"):
        load_codeformer(loop)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.safetensors"
        locked.write_bytes(b"x" * 16)
        locked.chmod(0)
        with pytest.raises(WeightsFileError, match="permission denied"):
            load_codeformer(locked)
