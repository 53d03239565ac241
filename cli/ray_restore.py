"""``codeformer-restore --ray``: restore a whole bucket of images on a Ray cluster.

    codeformer-restore s3://bucket/photos -o s3://bucket/restored --ray --report report.json

Needs the ``ray`` extra (``pip install 'codeformer-nodes[ray]'``); nothing here imports Ray
until a run starts. Inputs and the output folder are local paths (files, folders, globs)
or URIs of any pyarrow filesystem (``s3://``, ``gs://``, ``file://``, ...). The run is the
local CLI's, spread over a pool of Ray Data actors:

- The driver lists the inputs, names every output with :func:`~.restore.output_path` (so
  names never collide and never land on an input), leaves done outputs to
  ``--skip-existing``, and hands Ray Data rows of file names only: pixels never enter
  the object store.
- Each actor (one per GPU, or one per ``cpus_per_worker`` CPUs) loads the model once and
  restores its batches with the local CLI's own steps (:func:`~.restore.prefetch`,
  :func:`~.restore.restore_group`, :func:`~.imageio.write_image`, claims), so the faces
  of several images share a network chunk, a bad image fails alone, and every output is
  written atomically with the local names, formats and metadata; it returns one report
  entry per image.
- A killed worker loses nothing written: Ray restarts the actor and retries its task
  (Ray Data's defaults for actor pools, ``max_restarts=-1`` and ``max_task_retries=-1``,
  are kept); a small ledger actor remembers which images of a batch were finished, so a
  retry only redoes the rest, one image at a time, and an image that kills its worker
  ``attempts`` times is reported as failed instead of being retried for ever.
- Memory stays flat: Ray Data streams small blocks of rows (one batch each) to a
  fixed-size actor pool with at most two batches queued per actor, under an
  object-store limit; an actor holds at most the decodes of :data:`~.restore.PREFETCH`
  images ahead and the results of one batch still being written.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import types
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..models import CodeFormerWeightsError, load_codeformer
from ..models.checkpoint import RESTORATION
from ..models.official import OFFICIAL_CHECKPOINTS
from ..pipeline import RestoreOptions
from ..pipeline.inference import MAX_AUTO_CHUNK, RestorationNetwork, auto_chunk_size, device_of
from ..pipeline.tasks import resolve_task
from .claims import claim, release
from .imageio import IMAGE_SUFFIXES, PARTIAL_SUFFIX, WriteSettings, remove_stale_partials
from .restore import PREFETCH, RESTORED_NAME, Pending, Progress, expand_inputs, output_path, prefetch, restore_group
from .video import VIDEO_SUFFIXES

RAY_MISSING = "--ray needs Ray: pip install 'codeformer-nodes[ray]' (or 'ray[data]')"
# Images per Ray task: on a GPU two full chunks, so a chunk is always full; on a CPU (chunk 1) a few,
# so that a task is long enough to hide Ray's per-task cost and short enough to balance the tail.
GPU_BATCH = 2 * MAX_AUTO_CHUNK
CPU_BATCH = 8
# At least this many batches per worker when the images are few, so that the workers finish together.
BATCHES_PER_WORKER = 4
# Tasks queued per actor: one running and the next one waiting, so an actor never idles between batches.
TASKS_PER_ACTOR = 2
# Object store the run's blocks may hold (rows of names and report entries: kilobytes each).
OBJECT_STORE_LIMIT = 256 << 20
# What a CPU worker needs at most (weights and one face in flight, with room), for its default count.
CPU_WORKER_MEMORY = 2 << 30
# Times a task holding an image may die (killed, out of memory) before the image is reported as failed.
ATTEMPTS = 3
# pyarrow filesystems whose objects appear whole when their upload completes (no rename needed, or cheap).
OBJECT_STORES = ("s3", "gcs", "abfs")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


class WorkerSetupError(RuntimeError):
    """The workers could not load the model (bad weights, task mismatch, device)."""


@dataclass(frozen=True)
class ModelSpec:
    """How each worker gets its network.

    Attributes:
        weights: a local path (present on every node), an official bare name (fetched on
            each node when first needed) or a URI of any pyarrow filesystem (copied to each
            node's temporary folder once).
        precision: as :func:`codeformer_nodes.load_codeformer` takes it.
        device: where the network runs; None: ``cuda`` on a worker given a GPU, else ``cpu``.
        factory: instead of ``weights``, a picklable callable building the network in the
            worker (stand-ins for tests and benchmarks).
    """

    weights: str | None = None
    precision: str = "auto"
    device: str | None = None
    factory: Callable[[], RestorationNetwork] | None = None


def import_ray():
    """Ray and Ray Data, or an ``ImportError`` that says how to install them."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError(RAY_MISSING) from error
    return ray


# ---------------------------------------------------------------------------------------------- where files are


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and URI.match(text) is not None


def filesystem(uri: str):
    """The pyarrow filesystem of ``uri`` and the path inside it."""
    from pyarrow.fs import FileSystem

    return FileSystem.from_uri(uri)


def as_path(fs_path: str) -> Path:
    """A path inside a filesystem as an absolute ``Path``, for :func:`output_path` (object stores have none)."""
    return Path("/", fs_path)


def display_uri(uri: str, fs_path: str) -> str:
    """How the report names a file of ``uri``'s filesystem: the scheme, then the path (query left out)."""
    return f"{uri.split('://', 1)[0]}://{fs_path}"


def uri_of_path(path: Path) -> str | Path:
    """``-o s3://bucket/out`` reaches us through ``type=Path``, which folds ``//``: give the URI back."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]+):/(.*)", str(path), re.DOTALL)
    if match is None:
        return path
    scheme, rest = match.groups()
    return f"{scheme}:///{rest}" if scheme == "file" else f"{scheme}://{rest}"


@dataclass
class Source:
    """An input: what the report calls it, and where a worker reads it (a local path, or a URI's filesystem)."""

    shown: str
    path: str
    root: str | None = None  # the URI whose filesystem holds ``path``; None: a local file

    def key(self) -> Path:
        """Its identity among inputs and outputs: resolved on a disk (``file://`` too), else inside its store."""
        return Path(self.path).resolve() if self.root is None or self.path.startswith("/") else as_path(self.path)


def expand_uri(pattern: str, output_key: Path | None) -> tuple[list[Source], list[dict]]:
    """Files of a URI: a file, a folder's images (not recursive) or a glob in the last part, as for local paths."""
    from pyarrow.fs import FileSelector, FileType

    try:
        fs, path = filesystem(pattern)
        info = fs.get_file_info(path)
        if info.type == FileType.Directory:
            listed = fs.get_file_info(FileSelector(path, recursive=False))
            found = sorted(i.path for i in listed if i.type == FileType.File and _is_image(i.path))
            if output_key is not None and as_path(path) == output_key:
                found = [f for f in found if not RESTORED_NAME.fullmatch(PurePosixPath(f).stem)]
            if not found:
                return [], [{"input": pattern, "error": f"folder {pattern} holds no images ({IMAGE_SUFFIXES})"}]
        elif info.type == FileType.File:
            found = [path]
        else:
            parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
            listed = fs.get_file_info(FileSelector(parent, recursive=False, allow_not_found=True))
            found = sorted(i.path for i in listed if i.type == FileType.File and fnmatch.fnmatch(i.base_name, name))
            if not found:
                return [], [{"input": pattern, "error": f"{pattern} matches no file"}]
    except (OSError, ValueError) as error:  # pyarrow: ArrowIOError is an OSError, ArrowInvalid a ValueError
        return [], [{"input": pattern, "error": f"{pattern} cannot be listed ({error})"}]
    return [Source(display_uri(pattern, f), f, pattern) for f in found], []


def _is_image(fs_path: str) -> bool:
    return PurePosixPath(fs_path).suffix.lower() in IMAGE_SUFFIXES


def plan(inputs: Sequence[str | Path], output: str | Path, settings: WriteSettings) -> tuple[list[dict], list[dict]]:
    """Rows for the workers, one per input file, with its output named as the local CLI names it; and
    report entries for inputs that name nothing."""
    if is_uri(output):
        out_fs, out_path = filesystem(str(output))
        local_output = Path(out_path) if out_fs.type_name == "local" else None
        folder = Path(out_path) if local_output is not None else as_path(out_path)
    else:
        local_output = folder = Path(output)
    sources: list[Source] = []
    problems: list[dict] = []
    seen: set[Path] = set()
    for pattern in inputs:
        if is_uri(pattern):
            found, bad = expand_uri(str(pattern), folder)
        else:
            files, bad = expand_inputs([str(pattern)], folder)
            clips = [file for file in files if file.suffix.lower() in VIDEO_SUFFIXES]
            bad += [{"input": str(clip), "error": f"{clip} is a video: restore videos without --ray"} for clip in clips]
            found = [Source(str(file), os.path.abspath(file)) for file in files if file not in clips]
        problems += bad
        for source in found:
            if source.key() not in seen:
                seen.add(source.key())
                sources.append(source)
    taken = set(seen)
    rows = []
    for index, source in enumerate(sources):
        destination, kind = output_path(PurePosixPath(source.path), folder, settings, taken)  # type: ignore[arg-type]
        if not is_uri(output):
            shown, path, root = str(destination), os.path.abspath(destination), None
        elif local_output is not None:
            shown, path, root = display_uri(str(output), str(destination)), str(destination), str(output)
        else:
            fs_path = str(destination)[1:]
            shown, path, root = display_uri(str(output), fs_path), fs_path, str(output)
        rows.append(
            {"index": index, "input": source.shown, "output": shown, "kind": kind, "source_path": source.path,
             "source_root": source.root, "destination_path": path, "destination_root": root}
        )  # fmt: skip
    return rows, problems


def existing_outputs(rows: list[dict]) -> set[int]:
    """Rows whose output exists already (``--skip-existing``): one listing per output folder."""
    from pyarrow.fs import FileSelector, FileType

    done: set[int] = set()
    listings: dict[tuple[str | None, str], set[str]] = {}
    for row in rows:
        root, path = row["destination_root"], row["destination_path"]
        if root is None:
            if Path(path).exists():
                done.add(row["index"])
            continue
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if (root, parent) not in listings:
            fs = filesystem(root)[0]
            listed = fs.get_file_info(FileSelector(parent, allow_not_found=True))
            listings[root, parent] = {i.path for i in listed if i.type == FileType.File}
        if path in listings[root, parent]:
            done.add(row["index"])
    return done


# ---------------------------------------------------------------------------------------------- in the workers


class RemoteImage:
    """A file in a pyarrow filesystem that :func:`~.imageio.read_image` reads as it reads a path.

    ``stat()`` gives its size; ``read``/``seek``/``tell`` serve Pillow from a copy fetched whole
    on first use (a decoder's many small reads never go over the network); ``str()`` is the
    URI, which error messages name.
    """

    def __init__(self, fs, path: str, shown: str) -> None:
        self.fs, self.path, self.shown = fs, path, shown
        self.name = PurePosixPath(path).name
        self._data: io.BytesIO | None = None

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:  # Pillow names an unreadable file object by its repr
        return repr(self.shown)

    def stat(self):
        from pyarrow.fs import FileType

        info = self.fs.get_file_info(self.path)
        if info.type != FileType.File:
            raise FileNotFoundError(2, "No such file", self.shown)
        return types.SimpleNamespace(st_size=info.size)

    def _buffer(self) -> io.BytesIO:
        if self._data is None:
            with self.fs.open_input_file(self.path) as file:
                self._data = io.BytesIO(file.read())
        return self._data

    def read(self, size: int = -1) -> bytes:
        return self._buffer().read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buffer().seek(offset, whence)

    def tell(self) -> int:
        return self._buffer().tell()


def upload(local: Path, fs, path: str) -> None:
    """Put a written file at ``path`` of ``fs`` so that readers see all of it or nothing.

    An object store shows an object only once its upload completes; elsewhere (a disk, HDFS)
    a temporary file beside the destination, named as :func:`~.imageio.write_image` names its
    own (``.NAME.PID.XXXX.partial``, so a killed writer's is cleaned up), is renamed into place.
    """
    from pyarrow.fs import FileType

    data = local.read_bytes()
    if fs.type_name in OBJECT_STORES:
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    temporary = f"{parent}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    try:
        with fs.open_output_stream(temporary) as stream:
            stream.write(data)
        fs.move(temporary, path)
    finally:
        if fs.get_file_info(temporary).type != FileType.NotFound:
            fs.delete_file(temporary)


def local_weights(weights: str) -> str:
    """A local copy of weights named by a URI, fetched once per node (atomically); other names as they are."""
    if not is_uri(weights):
        return weights
    fs, path = filesystem(weights)
    if fs.type_name == "local":
        return path
    size = fs.get_file_info(path).size
    folder = Path(tempfile.gettempdir()) / "codeformer_nodes_weights" / hashlib.sha256(weights.encode()).hexdigest()
    copy = folder / PurePosixPath(path).name
    if not copy.is_file() or copy.stat().st_size != size:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{copy.name}.{os.getpid()}{PARTIAL_SUFFIX}"
        with fs.open_input_stream(path) as stream, partial.open("wb") as file:
            while chunk := stream.read(16 << 20):
                file.write(chunk)
        os.replace(partial, copy)
    return str(copy)


class _Quiet:
    """Progress for :func:`restore_group` inside a worker: the driver reports each image."""

    def step(self, source: object, entry: dict) -> None:
        pass


@dataclass(frozen=True)
class WorkerConfig:
    model: ModelSpec
    options: RestoreOptions
    settings: WriteSettings
    skip_existing: bool
    threads: int
    ledger: str
    attempts: int = ATTEMPTS


class Ledger:
    """Per image: how many tasks holding it started, and its entry once finished; a retry reads it.

    The driver forgets images as their entries reach it, so it holds only those in flight.
    """

    def __init__(self) -> None:
        self.started: dict[int, int] = {}
        self.finished: dict[int, str] = {}

    def start(self, indices: list[int]) -> dict[int, tuple[int, str | None]]:
        """Each image's (starts so far, finished entry); images never started count as started now."""
        known = {i: (self.started.get(i, 0), self.finished.get(i)) for i in indices}
        for index, (count, _) in known.items():
            if count == 0:
                self.started[index] = 1
        return known

    def begin(self, indices: list[int]) -> None:
        for index in indices:
            self.started[index] = self.started.get(index, 0) + 1

    def finish(self, entries: dict[int, str]) -> None:
        self.finished.update(entries)

    def forget(self, indices: list[int]) -> None:
        for index in indices:
            self.started.pop(index, None)
            self.finished.pop(index, None)


class RestoreWorker:
    """A Ray Data actor: loads the network once, then restores batches of rows and returns their entries."""

    def __init__(self, config: WorkerConfig) -> None:
        import ray
        import torch

        self.config = config
        self.failure: str | None = None
        torch.set_num_threads(config.threads)
        self.ledger = ray.get_actor(config.ledger)
        self.pool = ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="codeformer-io")
        self.settling = ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="codeformer-upload")
        self.scratch = Path(tempfile.mkdtemp(prefix="codeformer-ray-"))
        self.filesystems: dict[str, Any] = {}
        self.claimed: dict[int, Path] = {}  # row index -> destination claimed and not yet released
        spec = config.model
        try:
            if spec.factory is not None:
                self.model = spec.factory()
            else:
                device = spec.device or ("cuda" if ray.get_gpu_ids() else "cpu")
                weights = local_weights(spec.weights or OFFICIAL_CHECKPOINTS[config.options.task or RESTORATION].name)
                self.model = load_codeformer(weights, device=torch.device(device), precision=spec.precision)
            resolve_task(self.model, config.options)
        except (CodeFormerWeightsError, ValueError, RuntimeError, AssertionError, OSError) as error:
            self.failure = str(error)
            return
        self.group_size = config.options.chunk_size or auto_chunk_size(device_of(self.model))

    def _fs(self, root: str):
        if root not in self.filesystems:
            self.filesystems[root] = filesystem(root)[0]
        return self.filesystems[root]

    def __call__(self, batch):
        import pyarrow as pa
        import ray

        rows = batch.to_pylist()
        if self.failure is not None:
            entries = {row["index"]: {"fatal": self.failure} for row in rows}
        else:
            entries = {}
            try:
                known = ray.get(self.ledger.start.remote([row["index"] for row in rows]))
                self._restore(rows, known, entries)
            except (RuntimeError, OSError, ValueError, ray.exceptions.RayError) as error:  # reported per image
                for row in rows:
                    entry = entries.setdefault(row["index"], {"input": row["input"], "output": row["output"]})
                    if "faces" not in entry and not entry.get("error"):
                        entry.update(error=f"the worker failed: {type(error).__name__}: {error}", output=None)
        for row in rows:  # errors name the file as the driver was given it, as the local CLI's do
            entry = entries.get(row["index"], {})
            if entry.get("error") and row["source_root"] is None:
                entry["error"] = entry["error"].replace(row["source_path"], row["input"])
        indices = list(entries)
        texts = [json.dumps(entries[index]) for index in indices]
        return pa.table({"index": pa.array(indices, pa.int64()), "entry": pa.array(texts, pa.string())})

    def _restore(self, rows: list[dict], known: dict[int, tuple[int, str | None]], entries: dict[int, dict]) -> None:
        """The local CLI's ``run`` for one batch (claims, decodes ahead, groups, writes), entries by row index.

        The ledger hears of each image as soon as it is final (written, failed or skipped), so that
        a retry after this worker dies redoes only the others.
        """
        import ray

        config = self.config
        fresh: list[tuple[dict, Pending]] = []
        suspects: list[tuple[dict, Pending]] = []
        settling: list[Future] = []
        try:
            for row in rows:
                index = row["index"]
                count, finished = known.get(index, (0, None))
                if finished is not None:  # final in an earlier try of this task
                    entries[index] = json.loads(finished)
                    self._clear_stale_claim(row)
                    continue
                entry: dict = {"input": row["input"], "output": row["output"]}
                entries[index] = entry
                if count >= config.attempts:
                    entry.update(error=f"its worker died {count} times restoring it (killed, or out of memory?)")
                    entry.update(output=None)
                    self._clear_stale_claim(row)
                    self._final(row, entry)
                    continue
                item = self._pending(row, entry)
                if item is None:
                    self._final(row, entry)
                else:
                    (suspects if count else fresh).append((row, item))
            # A first try fills chunks; a retry runs each image it had not finished alone, counting its tries.
            size = self.group_size
            groups = [(False, fresh[i : i + size]) for i in range(0, len(fresh), size)]
            groups += [(True, [one]) for one in suspects]
            order = [item for _, group in groups for _, item in group]
            decodes = prefetch(self.pool, [item.source for item in order], ahead=max(PREFETCH, size))
            for retried, group in groups:
                for _, item in group:
                    item.decoded = next(decodes)[1]
                if retried:  # counted before it runs, so that a worker dying on it is counted
                    ray.get(self.ledger.begin.remote([row["index"] for row, _ in group]))
                writes = restore_group([item for _, item in group], self.model, config.options, config.settings,
                                       self.pool, _Quiet())  # fmt: skip
                by_entry = {id(entry): future for entry, future in writes}
                for row, item in group:
                    write = by_entry.get(id(item.entry))
                    if write is None:  # not restored: its error is final
                        self._final(row, item.entry, retried)
                    else:
                        settling.append(self.settling.submit(self._settle, row, item.entry, write, retried))
                if retried:  # written and recorded before the next one starts, so that a death is its own
                    wait(settling)
            wait(settling)
            for future in settling:
                future.result()  # a failure other than a write's is the batch's
        finally:
            for index in list(self.claimed):
                release(self.claimed.pop(index))

    def _pending(self, row: dict, entry: dict) -> Pending | None:
        """The image as the local CLI takes it up: claimed, or left to another run or to ``--skip-existing``."""
        root, path = row["destination_root"], row["destination_path"]
        fs = None if root is None else self._fs(root)
        on_disk = fs is None or fs.type_name == "local"
        holder = None
        if on_disk:
            holder = claim(Path(path))
            if holder is None:
                self.claimed[row["index"]] = Path(path)
        if holder is not None or (self.config.skip_existing and self._exists(fs, path)):
            note = {} if holder is None else {"note": f"another run (process {holder}) is restoring it"}
            entry.update(skipped=True, faces=[], seconds=0.0, **note)
            return None
        if row["source_root"] is None:
            source: Any = Path(row["source_path"])
        else:
            source = RemoteImage(self._fs(row["source_root"]), row["source_path"], row["input"])
        destination = Path(path) if on_disk else self._scratch_file(row)
        return Pending(entry, source, destination, row["kind"], None)  # type: ignore[arg-type]

    def _scratch_file(self, row: dict) -> Path:
        return self.scratch / f"{row['index']}-{PurePosixPath(row['destination_path']).name}"

    def _clear_stale_claim(self, row: dict) -> None:
        """Remove the claim a dead try of this task left on an image it no longer restores (a live run's stays)."""
        root, path = row["destination_root"], row["destination_path"]
        if (root is None or self._fs(root).type_name == "local") and claim(Path(path)) is None:
            release(Path(path))

    @staticmethod
    def _exists(fs, path: str) -> bool:
        from pyarrow.fs import FileType

        return Path(path).exists() if fs is None else fs.get_file_info(path).type != FileType.NotFound

    def _settle(self, row: dict, entry: dict, write: Future, sync: bool) -> None:
        """Wait for an image's write (and upload it to an object store); a failure is its error. Then final."""
        root = row["destination_root"]
        remote = root is not None and self._fs(root).type_name != "local"
        try:
            write.result()
            if remote:
                upload(self._scratch_file(row), self._fs(root), row["destination_path"])
        except (OSError, ValueError) as error:
            entry.update(error=f"could not write {row['output']}: {error}", output=None)
        finally:
            if remote:
                self._scratch_file(row).unlink(missing_ok=True)
        self._final(row, entry, sync)

    def _final(self, row: dict, entry: dict, sync: bool = False) -> None:
        """The image is done with: tell the ledger (and wait for it to hear, on a retry), let go of its claim."""
        import ray

        told = self.ledger.finish.remote({row["index"]: json.dumps(entry)})
        if sync:
            ray.get(told)
        destination = self.claimed.pop(row["index"], None)
        if destination is not None:
            release(destination)


# ---------------------------------------------------------------------------------------------- the driver


def restore_with_ray(
    inputs: Sequence[str | Path],
    output: str | Path,
    options: RestoreOptions,
    model_spec: ModelSpec | str,
    address: str | None = None,
    *,
    settings: WriteSettings | None = None,
    skip_existing: bool = False,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    batch_size: int | None = None,
    attempts: int = ATTEMPTS,
    entries: list[dict] | None = None,
) -> list[dict]:
    """Restore every image of ``inputs`` into ``output`` on a Ray cluster; returns the report entries.

    Args:
        inputs: files, folders and globs, local or URIs of pyarrow filesystems.
        output: a local folder or a URI; names, formats and metadata as the local CLI writes them.
        options: the restore options (``cli.restore.options_from`` builds the CLI's).
        model_spec: a :class:`ModelSpec`, or the weights alone.
        address: the cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None: ``RAY_ADDRESS`` or
            a local one started for the run. An already initialised Ray is used as it is.
        workers: actors; default one per GPU, else one per ``cpus_per_worker`` CPUs (as memory allows).
        cpus_per_worker: CPUs (and torch threads) per actor; default 1.
        batch_size: images per Ray task; default 32 with GPUs, 8 without.
        attempts: tasks holding an image that may die before it is reported as failed (at least 2: the
            first try counts every image of a batch, a retry each image alone).
        entries: a list to fill (in input order, as entries arrive), so a report can be written
            however the run ends.

    Raises:
        WorkerSetupError: when the workers cannot load the model.
        ImportError: when Ray is not installed.
    """
    if attempts < 2:
        raise ValueError(f"attempts must be at least 2 (a first try, then one alone); got {attempts}")
    ray = import_ray()
    spec = ModelSpec(weights=str(model_spec)) if not isinstance(model_spec, ModelSpec) else model_spec
    settings = settings or WriteSettings()
    entries = [] if entries is None else entries
    rows, problems = plan(inputs, output, settings)
    entries += problems
    progress = Progress(len(rows))
    results: dict[int, dict] = {}
    by_index = {row["index"]: row for row in rows}
    started_ray = not ray.is_initialized()
    ray_logger = logging.getLogger("ray.data")
    ray_level = ray_logger.level
    try:
        if skip_existing:
            for index in sorted(existing_outputs(rows)):
                results[index] = {"input": by_index[index]["input"], "output": by_index[index]["output"]}
                results[index].update(skipped=True, faces=[], seconds=0.0)
                progress.step(PurePosixPath(by_index[index]["input"]), results[index])
        todo = [row for row in rows if row["index"] not in results]
        if not todo:
            return entries
        if started_ray:
            ray.init(address=address, logging_level=logging.WARNING)
        ray_logger.setLevel(logging.ERROR)  # its notes (progress bars off, ...) would drown the per-image lines
        resources = ray.cluster_resources()
        on_gpu = spec.factory is None and (spec.device or "cuda").startswith("cuda")
        gpus = int(resources.get("GPU", 0)) if on_gpu else 0
        cpus = cpus_per_worker or 1.0
        if workers is None:
            by_memory = int(resources.get("memory", math.inf) // CPU_WORKER_MEMORY)
            workers = gpus or max(1, min(int(resources.get("CPU", 1) // cpus), by_memory))
        # Few images: smaller batches, so that each worker gets several and they end together.
        largest = GPU_BATCH if gpus else CPU_BATCH
        batch = batch_size or max(1, min(largest, math.ceil(len(todo) / (workers * BATCHES_PER_WORKER))))
        workers = min(workers, math.ceil(len(todo) / batch))
        ledger_name = f"codeformer-ledger-{uuid.uuid4().hex}"
        ledger = ray.remote(num_cpus=0)(Ledger).options(name=ledger_name).remote()
        config = WorkerConfig(spec, options, settings, skip_existing, max(1, round(cpus)), ledger_name, attempts)
        dataset = _dataset(ray, todo, config, workers, cpus, 1 if gpus else 0, batch)
        batches = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        try:
            for table in batches:
                received = []
                for index, text in zip(table["index"].to_pylist(), table["entry"].to_pylist(), strict=True):
                    entry = json.loads(text)
                    if "fatal" in entry:
                        raise WorkerSetupError(entry["fatal"])
                    received.append(index)
                    if index not in results:
                        results[index] = entry
                        progress.step(PurePosixPath(by_index[index]["input"]), entry)
                ledger.forget.remote(received)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            ray.kill(ledger)
        for row in todo:
            if row["index"] not in results:  # its task failed in a way the worker could not report
                results[row["index"]] = {"input": row["input"], "output": None, "error": "no result came back from "
                                         "the workers (see the Ray logs)"}  # fmt: skip
                progress.step(PurePosixPath(row["input"]), results[row["index"]])
    finally:
        entries += [results[index] for index in sorted(results)]
        ray_logger.setLevel(ray_level)
        if started_ray and ray.is_initialized():
            ray.shutdown()
        progress.close()
        _remove_partials(rows)
    return entries


def _dataset(ray, rows: list[dict], config: WorkerConfig, workers: int, cpus: float, gpus: int, batch: int):
    """Rows in blocks of one batch, through a fixed pool of restore actors, streamed under small limits."""
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch)))
    context = dataset.context
    context.enable_progress_bars = False
    context.max_errored_blocks = -1  # a task that fails for good loses its batch only; the driver reports it
    context.execution_options.preserve_order = False
    context.execution_options.resource_limits = ray.data.ExecutionResources(object_store_memory=OBJECT_STORE_LIMIT)
    return dataset.map_batches(
        RestoreWorker,
        fn_constructor_args=(config,),
        batch_size=batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=TASKS_PER_ACTOR),
        num_cpus=cpus,
        num_gpus=gpus,
    )


def _remove_partials(rows: list[dict]) -> None:
    """Temporary files of workers killed mid-write, in this run's local output folders."""
    folders = {Path(row["destination_path"]).parent for row in rows if row["destination_root"] is None}
    for folder in folders:
        for stale in remove_stale_partials(folder):
            print(f"codeformer-restore: removed {stale.name}, left by a worker that was killed", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- the command line

ADDRESS = re.compile(r"^(auto|local|ray://.+|https?://.+|[\w.-]+:\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and its knobs (added by ``cli.restore.build_parser``; Ray is imported only by a run)."""
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="restore on a Ray cluster (pip install 'codeformer-nodes[ray]'): ADDRESS (auto, "
                             "HOST:PORT, ray://HOST:10001), else RAY_ADDRESS or a local one; inputs and -o may "
                             "then be URIs (s3://, gs://, file://)")  # fmt: skip
    parser.add_argument("--ray-workers", type=int, help="actors (default: one per GPU, else one per CPU)")
    parser.add_argument("--ray-cpus-per-worker", type=float, help="CPUs and torch threads per actor (default 1)")
    parser.add_argument("--ray-batch-size", type=int, help="images per Ray task (default 32 with GPUs, else 8)")


def main(
    args: argparse.Namespace, options: RestoreOptions, argv: Iterable[str], parser: argparse.ArgumentParser
) -> int:
    """``codeformer-restore ... --ray``: as the local run, with the restoring done by the cluster."""
    from .restore import execute

    address: str | None = args.ray or None
    inputs = list(args.inputs)
    if address is not None and not ADDRESS.match(address):  # `--ray photos/ -o out`: an input, not an address
        inputs.insert(0, address)
        address = None
    if not inputs or args.output is None:
        parser.error("give INPUT... and -o OUTDIR (or --export-workflow FILE)")
    explicit_device = any(arg == "--device" or arg.startswith("--device=") for arg in argv)
    spec = ModelSpec(weights=args.model, precision=args.precision, device=args.device if explicit_device else None)
    output = uri_of_path(args.output)
    settings = WriteSettings(args.format, args.jpeg_quality, args.jpeg_subsampling)
    try:
        import_ray()
        if is_uri(output):
            filesystem(str(output))
    except (ImportError, ValueError, OSError) as error:  # pyarrow: a malformed URI, unknown scheme, credentials
        print(f"codeformer-restore: {error}", file=sys.stderr)
        return 2

    entries: list[dict] = []

    def work() -> None:
        restore_with_ray(inputs, output, options, spec, None if address == "local" else address,
                         settings=settings, skip_existing=args.skip_existing, workers=args.ray_workers,
                         cpus_per_worker=args.ray_cpus_per_worker, batch_size=args.ray_batch_size,
                         entries=entries)  # fmt: skip

    try:
        return execute(args, entries, work)
    except (WorkerSetupError, ConnectionError) as error:  # ConnectionError: no cluster at ADDRESS
        print(f"codeformer-restore: {error}", file=sys.stderr)
        return 2
