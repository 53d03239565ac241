"""Build a face restorer (CodeFormer, or GFPGAN / RestoreFormer through spandrel) from a weights file, with a
small cache of loaded models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..codeformer_arch import CodeFormer, CodeFormerConfig, Encoded
from .checkpoint import StateDict, check_keys, is_codeformer, read_state_dict, recognise
from .cpu_memory import keep_freed_cpu_memory
from .devices import usable_device
from .downloads import PinnedFile, file_sha256, locate, user_cache_dir
from .errors import WeightsFileError
from .official import FACE_RESTORER_NAMES, OFFICIAL_NAMES
from .precision import FLOAT32, Precision, choose_precision
from .restorers import CODEFORMER_KIND, RestorerKind, SpandrelFaceRestorer, build_spandrel_restorer, restorer_precision

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


class DescribedCodeFormer:
    """What a CodeFormer built from a checkpoint says of itself (``restorers.LoadedRestorer``), read from its
    ``description``: the torch network and the onnxruntime one say it alike."""

    kind: ClassVar[RestorerKind] = CODEFORMER_KIND
    description: ModelDescription

    @property
    def task(self) -> str:
        return self.description.task

    @property
    def source(self) -> Path:
        return self.description.source


class LoadedCodeFormer(DescribedCodeFormer, CodeFormer):
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
# Where a cached network runs, as it was handed out.
RunsIn = tuple[torch.device, Precision]
FaceRestorer = LoadedCodeFormer | SpandrelFaceRestorer
Builder = Callable[[Path, Precision], torch.nn.Module]
_cache: OrderedDict[CacheKey, tuple[torch.nn.Module, RunsIn]] = OrderedDict()
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

    def build(resolved: Path, target: Precision) -> LoadedCodeFormer:
        return build_codeformer(resolved, target)

    return _load(path, device, precision, OFFICIAL_NAMES, build, _not_spandrel)


def load_face_restorer(
    path: str | Path,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> FaceRestorer:
    """Load any face restorer: CodeFormer as :func:`load_codeformer` loads it, or a file spandrel
    recognises as face restoration (GFPGAN 1.2-1.4, RestoreFormer). Bare official names fetch as
    there, and ``GFPGANv1.4.pth`` too.

    The family is recognised by the keys, read through the same safe reader, and shares
    :func:`load_codeformer`'s cache. The result's ``kind`` says what it takes: only CodeFormer
    reads the fidelity ``w``. GFPGAN and RestoreFormer run in the modes they keep >= 40 dB against fp32 in
    (``restorers.HALF_MODES_MEASURED``): GFPGAN in fp32 or bf16 (``auto``: bf16 where the device computes it
    natively), RestoreFormer in fp32 only; they need spandrel (``pip install 'codeformer-nodes[upsample]'``).
    """

    def runs_as_asked(cached: torch.nn.Module) -> bool:
        # "auto" and "mixed-bf16" share a cache key where bfloat16 is native (both mean CodeFormer's mixed-bf16),
        # and GFPGAN built for "auto" runs in bf16: a later "mixed-bf16" must still be refused, not handed it.
        if isinstance(cached, SpandrelFaceRestorer):
            restorer_precision(cached.kind, precision, source=cached.source)  # refuses a mode the family lacks
        return True

    def build(resolved: Path, target: Precision) -> FaceRestorer:
        return build_face_restorer(resolved, target, precision)

    return _load(path, device, precision, FACE_RESTORER_NAMES, build, runs_as_asked)


def _not_spandrel(cached: torch.nn.Module) -> bool:
    """``load_codeformer`` hands out no other family cached from the same file (it names the family instead)."""
    return not isinstance(cached, SpandrelFaceRestorer)


def _load(
    path: str | Path,
    device: str | torch.device | None,
    precision: str | Precision,
    known: Mapping[str, PinnedFile],
    build: Builder,
    reuses: Callable[[torch.nn.Module], bool],
) -> torch.nn.Module:
    """The network ``build`` makes of ``path`` (or of the ``known`` file it names) on ``device``, from the
    cache when the file is unchanged and ``reuses`` takes the cached network."""
    given = Path(path).expanduser()
    if given.name == str(path) and given.name in known and not given.exists():
        given = locate(known[given.name], [user_cache_dir()])  # a bare known name: the per-user copy, fetched if needed
    try:
        resolved = given.resolve()
    except RuntimeError as error:  # a symlink loop
        raise WeightsFileError(f"{path} cannot be opened ({error}); check the path") from error
    target_device = usable_device(device)
    target = precision if isinstance(precision, Precision) else choose_precision(precision, target_device)
    stat = resolved.stat() if resolved.is_file() else None
    if stat is None:
        return build(resolved, target).to(device=target_device)  # names what is wrong with the path
    key = (str(resolved), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, str(target_device), target)
    with _build_lock(key):  # callers asking at once for one key wait for one build
        cached = _cached(key)
        if cached is not None and reuses(cached):
            return cached
        model = None
        try:
            model = build(resolved, target).to(device=target_device)
            return model
        finally:
            with _cache_lock:
                if model is not None:
                    _cache[key] = (model, _runs_in(model))
                    while len(_cache) > MAX_CACHED_MODELS:
                        _cache.popitem(last=False)
                _building.pop(key, None)  # later callers find the model in the cache (or build it again)


def _build_lock(key: CacheKey) -> threading.Lock:
    with _cache_lock:
        return _building.setdefault(key, threading.Lock())


def precision_of(network: FaceRestorer) -> Precision:
    """What ``network`` computes in as built: another family may run in other than the mode asked for."""
    return Precision(next(network.parameters()).dtype, network.generator_dtype)


def _runs_in(model: FaceRestorer) -> RunsIn | None:
    parameter = next(model.parameters(), None)
    return None if parameter is None else (parameter.device, precision_of(model))


def _cached(key: CacheKey) -> torch.nn.Module | None:
    """The cached network of ``key``, unless it was moved or cast since it was cached."""
    with _cache_lock:
        model, runs_in = _cache.get(key, (None, None))
        if model is None or _runs_in(model) != runs_in:
            return None
        _cache.move_to_end(key)
        return model


def build_codeformer(path: Path, precision: Precision = FLOAT32) -> LoadedCodeFormer:
    """Read, recognise and check a weights file, then build the network on the CPU in ``precision``."""
    return codeformer_from_state_dict(read_state_dict(path), path, precision)


def build_face_restorer(path: Path, precision: Precision, asked: str | Precision) -> FaceRestorer:
    """Read a weights file once and build the face restorer it holds on the CPU: CodeFormer in
    ``precision`` (what ``asked`` means on the device), another family in what it runs in for ``asked``."""
    state_dict = read_state_dict(path)
    if is_codeformer(state_dict):
        return codeformer_from_state_dict(state_dict, path, precision)
    return build_spandrel_restorer(state_dict, path, file_sha256(path), asked, precision)


def codeformer_from_state_dict(state_dict: StateDict, path: Path, precision: Precision) -> LoadedCodeFormer:
    """Recognise and check the state dict read from ``path``, then build the network on the CPU in ``precision``."""
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
