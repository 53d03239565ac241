"""Build a CodeFormer network from a weights file, with a small cache of loaded models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..codeformer_arch import CodeFormer, CodeFormerConfig, Encoded
from .checkpoint import check_keys, read_state_dict, recognise
from .cpu_memory import keep_freed_cpu_memory
from .devices import usable_device
from .downloads import file_sha256
from .errors import WeightsFileError
from .official import OFFICIAL_NAMES, official_checkpoint
from .precision import FLOAT32, Precision, choose_precision

MAX_CACHED_MODELS = 2


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
    """A CodeFormer network built from a weights file, which says what it is.

    On a CPU its calls keep freed memory for the next activation (``cpu_memory``): the same
    numbers, without page-faulting every activation afresh.
    """

    def __init__(self, description: ModelDescription) -> None:
        super().__init__(description.config)
        self.description = description

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        """CodeFormer's call, its arguments passed on as they are (their defaults stay in one place)."""
        with keep_freed_cpu_memory(x.device):
            return super().forward(x, *args, **kwargs)

    def encode(self, x: Tensor) -> Encoded:
        with keep_freed_cpu_memory(x.device):
            return super().encode(x)

    def decode(self, encoded: Encoded, codes: Tensor, w: float | Tensor, adain: bool) -> Tensor:
        with keep_freed_cpu_memory(codes.device):
            return super().decode(encoded, codes, w, adain)


# (path, inode, size, mtime, ctime, device, precision): a file rewritten in place changes its
# ctime even when its size and mtime are kept (ctime cannot be set back), so it is reloaded.
CacheKey = tuple[str, int, int, int, int, str, Precision]
_cache: OrderedDict[CacheKey, LoadedCodeFormer] = OrderedDict()
_building: dict[CacheKey, threading.Lock] = {}  # one lock per key being built
_cache_lock = threading.Lock()  # guards both dicts


def load_codeformer(
    path: str | Path,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> LoadedCodeFormer:
    """Load CodeFormer weights (official ``.pth`` or ``.safetensors``) into an eval-mode network.

    The configuration and task come from the weights themselves, never from the file
    name. Pickled files are read with ``weights_only=True``, so no code in them runs.
    Loaded networks are cached by (path, inode, size, mtime, ctime, device, precision): a
    second call is free and a changed file is reloaded, even one rewritten in place with
    its size and mtime kept. Callers share a cached network; one that was moved
    or cast since is rebuilt rather than handed out.

    Args:
        path: the weights file; a bare official name (``codeformer.pth``,
            ``codeformer_colorization.pth``, ``codeformer_inpainting.pth``) that is no file
            here means the official checkpoint, from the per-user cache, fetched (checked)
            when first needed.
        device: where the network runs; CPU by default.
        precision: a name of :data:`PRECISIONS` (``auto``: code-exact, the fastest this
            device runs natively) or a :class:`Precision` (e.g. ``Precision(torch.float64)``).
    """
    given = Path(path).expanduser()
    if given.name == str(path) and given.name in OFFICIAL_NAMES and not given.exists():
        given = official_checkpoint(given.name)  # a bare official name: the per-user copy, fetched if needed
    try:
        resolved = given.resolve()
    except RuntimeError as error:  # a symlink loop
        raise WeightsFileError(f"{path} cannot be opened ({error}); check the path") from error
    target_device = usable_device(device)
    target = precision if isinstance(precision, Precision) else choose_precision(precision, target_device)
    stat = resolved.stat() if resolved.is_file() else None
    if stat is None:
        return build_codeformer(resolved, target).to(device=target_device)  # names what is wrong with the path
    key = (str(resolved), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, str(target_device), target)
    with _build_lock(key):  # callers asking at once for one key wait for one build
        cached = _cached(key, target_device, target)
        if cached is not None:
            return cached
        model = None
        try:
            model = build_codeformer(resolved, target).to(device=target_device)
            return model
        finally:
            with _cache_lock:
                if model is not None:
                    _cache[key] = model
                    while len(_cache) > MAX_CACHED_MODELS:
                        _cache.popitem(last=False)
                _building.pop(key, None)  # later callers find the model in the cache (or build it again)


def _build_lock(key: CacheKey) -> threading.Lock:
    with _cache_lock:
        return _building.setdefault(key, threading.Lock())


def _cached(key: CacheKey, device: torch.device, precision: Precision) -> LoadedCodeFormer | None:
    """The cached network of ``key``, unless it was moved or cast since it was cached."""
    with _cache_lock:
        cached = _cache.get(key)
        parameter = next(cached.parameters(), None) if cached is not None else None
        current = None if parameter is None else (parameter.device, parameter.dtype, cached.generator_dtype)
        if current != (device, precision.dtype, precision.generator_dtype):
            return None
        _cache.move_to_end(key)
        return cached


def build_codeformer(path: Path, precision: Precision = FLOAT32) -> LoadedCodeFormer:
    """Read, recognise and check a weights file, then build the network on the CPU in ``precision``."""
    state_dict = read_state_dict(path)
    recognised = recognise(state_dict, path)
    description = ModelDescription(
        task=recognised.task, config=recognised.config, source=path, sha256=file_sha256(path)
    )
    with torch.device("meta"):
        model = LoadedCodeFormer(description)
    check_keys(model.state_dict(), state_dict, path)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.to(precision.dtype).set_generator_dtype(precision.generator_dtype)
    return model.requires_grad_(False).eval()


def clear_model_cache() -> None:
    """Forget every cached network (e.g. to free memory)."""
    with _cache_lock:
        _cache.clear()
