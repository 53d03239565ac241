"""Read a weights file safely and recognise a CodeFormer state dict by its keys.

Nothing here unpickles arbitrary objects: ``.pth``/``.pt``/``.ckpt`` files go through
``torch.load(weights_only=True)``, ``.safetensors`` through safetensors.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from ..codeformer_arch import CodeFormerConfig
from .choices import COLORIZATION, INPAINTING, RESTORATION
from .errors import StateDictMismatchError, UnsupportedModelError, WeightsFileError
from .pickles import load_pickle_safely

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHT_SUFFIXES = (*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX)

# Containers in which training frameworks nest the state dict, in the order tried.
CONTAINER_KEYS = ("params_ema", "params", "state_dict")

CODEFORMER_KEYS = (
    "position_emb",
    "quantize.embedding.weight",
    "feat_emb.weight",
    "ft_layers.0.self_attn.in_proj_weight",
    "ft_layers.0.linear1.weight",
    "idx_pred_layer.1.weight",
    "encoder.blocks.0.weight",
    "generator.blocks.0.weight",
)
# Keys whose shapes give the configuration: each must be a matrix.
SHAPE_KEYS = ("position_emb", "quantize.embedding.weight", "ft_layers.0.linear1.weight")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Keys that identify architectures users often confuse with CodeFormer, for the message.
OTHER_ARCHITECTURES = {
    "GFPGAN": ("stylegan_decoder.style_mlp.1.weight", "conv_body_first.weight"),
    "RestoreFormer": ("vqvae.encoder.conv_in.weight",),
    "GPEN": ("generator.style.1.weight",),
    "ESRGAN / Real-ESRGAN": ("conv_first.weight", "body.0.rdb1.conv1.weight"),
    "ESRGAN (old layout)": ("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"),
    "RetinaFace detector": ("body.stage1.0.0.weight", "ClassHead.0.conv1x1.weight"),
    "ParseNet / BiSeNet parser": ("encoder.0.conv2d.weight", "cp.backbone.conv1.weight"),
}

# (codebook size, CFT sizes) of the official checkpoints -> the task each was trained for.
TASK_SIGNATURES = {
    (1024, (32, 64, 128, 256)): RESTORATION,
    (1024, (32, 64, 128)): COLORIZATION,
    (512, (32, 64, 128)): INPAINTING,
}

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Recognised:
    """What a CodeFormer state dict is: its configuration and the task it was trained for."""

    config: CodeFormerConfig
    task: str


DATA_PARALLEL_PREFIX = "module."
Value = TypeVar("Value")


def checked_task(checkpoint_task: str, source: object, asked: str | None, architecture: str = "CodeFormer") -> str:
    """The task a run asked for (None: the checkpoint's), which must be the one ``source`` was trained for.
    Only CodeFormer publishes colorization and inpainting checkpoints; the other families restore."""
    if asked is not None and asked != checkpoint_task:
        raise ValueError(
            f"{source} holds a {architecture} {checkpoint_task} checkpoint, but task {asked!r} was asked for; load "
            f"CodeFormer's {asked} checkpoint or drop the task setting"
        )
    return checkpoint_task


def read_state_dict(path: Path) -> StateDict:
    """Load the tensors of a weights file, unwrapped to a flat CodeFormer-style state dict."""
    check_weights_file(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        try:
            loaded: object = load_safetensors(str(path), device="cpu")
        except SafetensorError as error:
            raise WeightsFileError(
                f"{path} is not a readable .safetensors file ({error}); it is probably truncated "
                "or corrupt: download or convert it again."
            ) from error
    else:
        loaded = load_pickle_safely(path)
    return unwrap_state_dict(loaded, path)


def check_weights_file(path: Path) -> None:
    """Refuse, with the reason, a path that is not a readable weights file."""
    try:
        status = path.stat()
    except FileNotFoundError as error:
        raise WeightsFileError(f"weights file {path} does not exist; check the path or put the file there.") from error
    except PermissionError as error:
        raise WeightsFileError(f"{path} cannot be read: permission denied; check the permissions") from error
    except OSError as error:  # e.g. a symlink loop
        raise WeightsFileError(f"{path} cannot be opened ({error.strerror or error}); check the path") from error
    if stat.S_ISDIR(status.st_mode):
        raise WeightsFileError(f"{path} is a folder; give the path of a weights file inside it (e.g. codeformer.pth).")
    if status.st_size == 0:
        raise WeightsFileError(f"weights file {path} is empty (0 bytes); an interrupted download? Fetch it again.")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WeightsFileError(f"{path} has suffix {path.suffix!r}; expected one of {', '.join(WEIGHT_SUFFIXES)}.")
    if not os.access(path, os.R_OK):
        raise WeightsFileError(f"{path} cannot be read: permission denied; check the file's permissions")


def unwrap_state_dict(loaded: object, path: Path) -> StateDict:
    """Take the state dict out of its container and drop a ``module.`` prefix (DataParallel)."""
    state = loaded
    while isinstance(state, Mapping):
        container = next((key for key in CONTAINER_KEYS if isinstance(state.get(key), Mapping)), None)
        if container is None:
            break
        state = state[container]
    if not isinstance(state, Mapping) or not state:
        raise UnsupportedModelError(
            f"{path} holds {type(loaded).__name__}, not a state dict of tensors; expected a dict "
            f"of tensors, possibly under one of {', '.join(CONTAINER_KEYS)}."
        )
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise UnsupportedModelError(f"{path} holds no tensors under keys {_preview(state)}.")
    odd_keys = [repr(key) for key in tensors if not isinstance(key, str)]
    if odd_keys:
        raise UnsupportedModelError(
            f"{path} holds tensors under keys that are not names ({', '.join(odd_keys[:4])}); "
            "a state dict is keyed by parameter names: use an official checkpoint."
        )
    tensors = without_module_prefix(tensors)
    check_tensors(tensors, path)
    return tensors


def without_module_prefix(state: Mapping[str, Value]) -> dict[str, Value]:
    """A state dict saved from ``DataParallel`` as one saved without it: the ``module.`` prefix dropped
    when every key has it (a key of another network that merely starts so is left alone)."""
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return {key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in state.items()}
    return dict(state)


def check_tensors(tensors: StateDict, path: Path) -> None:
    """Refuse weights that would load but not compute: not dense floating point, or not finite."""
    for what, bad in (
        ("are not dense tensors with data (sparse, or 'meta')", lambda t: t.layout != torch.strided or t.is_meta),
        ("are not floating point", lambda t: t.dtype not in FLOAT_DTYPES),
        ("hold NaN or infinite values", lambda t: not bool(torch.isfinite(t).all())),
    ):
        keys = [key for key, tensor in tensors.items() if bad(tensor)]
        if keys:
            raise StateDictMismatchError(
                f"{path}: {len(keys)} weights {what} ({', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}); "
                "the file is damaged or not a trained CodeFormer: download the official checkpoint again."
            )


def is_codeformer(state_dict: Mapping[str, object]) -> bool:
    """Whether a state dict has CodeFormer's keys (it may still be damaged: :func:`recognise` says)."""
    return all(key in state_dict for key in CODEFORMER_KEYS)


def recognise(state_dict: StateDict, path: Path) -> Recognised:
    """Read the configuration from the weights and say which official task they match."""
    missing = [key for key in CODEFORMER_KEYS if key not in state_dict]
    if missing:
        raise UnsupportedModelError(
            f"{path} is not a CodeFormer checkpoint: {guess_architecture(state_dict)}; "
            f"it lacks {', '.join(missing[:4])}. Pick a CodeFormer file (e.g. codeformer.pth), or load GFPGAN and "
            "RestoreFormer with load_face_restorer (the loader node and --model take them)."
        )
    flat = [key for key in SHAPE_KEYS if state_dict[key].ndim != 2]
    fuse_levels = {key.split(".")[1] for key in state_dict if key.startswith("fuse_convs_dict.")}
    odd_levels = sorted(level for level in fuse_levels if not level.isdigit())
    if flat or odd_levels:
        detail = [f"{key} is {state_dict[key].ndim}-D, not 2-D" for key in flat]
        detail += [f"fuse_convs_dict.{level} names no feature-map size" for level in odd_levels]
        raise StateDictMismatchError(
            f"{path} does not fit the CodeFormer network: {'; '.join(detail)}. The file may be damaged "
            "or from a modified model; use an official checkpoint."
        )
    codebook_size = state_dict["quantize.embedding.weight"].shape[0]
    connect_sizes = tuple(sorted(int(level) for level in fuse_levels))
    task = TASK_SIGNATURES.get((codebook_size, connect_sizes))
    if task is None:
        known = "; ".join(
            f"{size} codes with CFT at {sizes} ({name})" for (size, sizes), name in TASK_SIGNATURES.items()
        )
        raise UnsupportedModelError(
            f"{path} is a CodeFormer with {codebook_size} codes and CFT at sizes {connect_sizes}, "
            f"which matches no official checkpoint ({known})."
        )
    config = CodeFormerConfig(
        codebook_size=codebook_size,
        connect_sizes=connect_sizes,
        dim_embd=state_dict["position_emb"].shape[1],
        n_layers=len({key.split(".")[1] for key in state_dict if key.startswith("ft_layers.")}),
        dim_mlp=state_dict["ft_layers.0.linear1.weight"].shape[0],
        emb_dim=state_dict["quantize.embedding.weight"].shape[1],
    )
    return Recognised(config=config, task=task)


def check_keys(expected: Mapping[str, torch.Tensor], state_dict: StateDict, path: Path) -> None:
    """Compare a state dict with a network's parameters; list every difference in one error."""
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(keys)} {what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if problems:
        raise StateDictMismatchError(
            f"{path} does not fit the CodeFormer network: {'; '.join(problems)}. "
            "The file may be damaged or from a modified model; use an official checkpoint."
        )


def guess_architecture(state_dict: Mapping[str, object]) -> str:
    """What a state dict that is not CodeFormer looks like, for an error message."""
    for name, keys in OTHER_ARCHITECTURES.items():
        if any(key in state_dict for key in keys):
            article = "an" if name[0] in "AEIOU" else "a"
            return f"it looks like {article} {name} model"
    return f"its keys start {_preview(state_dict)}"


def _preview(mapping: Mapping[str, object]) -> str:
    keys = list(mapping)
    return ", ".join(map(str, keys[:4])) + (" ..." if len(keys) > 4 else "")
