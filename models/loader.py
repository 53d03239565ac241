"""Build a CodeFormer network from a weights file, with a small cache of loaded models."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..codeformer_arch import CodeFormer, CodeFormerConfig
from .checkpoint import check_keys, read_state_dict, recognise

MAX_CACHED_MODELS = 2
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelDescription:
    """What a loaded network is, for callers and for error messages.

    Attributes:
        task: "restoration", "colorization" or "inpainting".
        config: hyperparameters read from the weights.
        source: resolved path of the weights file.
        sha256: hex digest of the file, to tell copies and versions apart.
    """

    task: str
    config: CodeFormerConfig
    source: Path
    sha256: str


class LoadedCodeFormer(CodeFormer):
    """A CodeFormer network built from a weights file, which says what it is."""

    def __init__(self, description: ModelDescription) -> None:
        super().__init__(description.config)
        self.description = description


CacheKey = tuple[str, int, int, str, torch.dtype]
_cache: OrderedDict[CacheKey, LoadedCodeFormer] = OrderedDict()


def load_codeformer(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedCodeFormer:
    """Load CodeFormer weights (official ``.pth`` or ``.safetensors``) into an eval-mode network.

    The configuration and task come from the weights themselves, never from the file
    name. Pickled files are read with ``weights_only=True``, so no code in them runs.
    Loaded networks are cached by (path, size, mtime, device, dtype): a second call is
    free and a changed file is reloaded. Callers share a cached network; one that was moved
    or cast since is rebuilt rather than handed out.

    Args:
        path: the weights file.
        device: where the network runs; CPU by default.
        dtype: float32 by default; bfloat16, float16 (CUDA) or float64 also work.
    """
    resolved = Path(path).expanduser().resolve()
    target_device = torch.device(device or "cpu")
    target_dtype = dtype or torch.float32
    stat = resolved.stat() if resolved.is_file() else None
    key: CacheKey | None = None
    if stat is not None:
        key = (str(resolved), stat.st_size, stat.st_mtime_ns, str(target_device), target_dtype)
        cached = _cache.get(key)
        parameter = next(cached.parameters(), None) if cached is not None else None
        if parameter is not None and (parameter.device, parameter.dtype) == (target_device, target_dtype):
            _cache.move_to_end(key)
            return cached
    model = build_codeformer(resolved).to(device=target_device, dtype=target_dtype)
    if key is not None:
        _cache[key] = model
        while len(_cache) > MAX_CACHED_MODELS:
            _cache.popitem(last=False)
    return model


def build_codeformer(path: Path) -> LoadedCodeFormer:
    """Read, recognise and check a weights file, then build the network on the CPU."""
    state_dict = read_state_dict(path)
    recognised = recognise(state_dict, path)
    description = ModelDescription(
        task=recognised.task, config=recognised.config, source=path, sha256=file_sha256(path)
    )
    with torch.device("meta"):
        model = LoadedCodeFormer(description)
    check_keys(model.state_dict(), state_dict, path)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.requires_grad_(False).eval()


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def choose_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp32 on a CPU; on a GPU, auto picks bf16 where supported (fp16 can overflow the fusion)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("fp16 on a CPU is hundreds of times slower than fp32; choose fp32 or auto")
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX.

    Elsewhere torch emulates bfloat16 on the CPU, far slower than float32 (a full CodeFormer
    forward takes over ten minutes with AVX2 alone).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def clear_model_cache() -> None:
    """Forget every cached network (e.g. to free memory)."""
    _cache.clear()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
