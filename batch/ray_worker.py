"""The Ray Data actor of a ``--ray`` run: loads the network once, restores batches of rows with the
local command line's own steps, and reports one entry per image; a ledger actor lets a retried
batch redo only what a killed worker had not finished."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..models import CodeFormerWeightsError, load_face_restorer
from ..models.checkpoint import RESTORATION
from ..models.official import OFFICIAL_CHECKPOINTS
from ..pipeline import RestoreOptions
from ..pipeline.inference import RestorationNetwork, faces_per_forward
from ..pipeline.tasks import resolve_task
from .claims import claim, mark_skipped, release
from .imageio import WriteSettings
from .naming import record_output
from .ray_files import RemoteImage, filesystem, local_weights, upload
from .runner import PREFETCH, Pending, prefetch, restore_group

# Times a task holding an image may die (killed, out of memory) before the image is reported as failed.
ATTEMPTS = 3


class WorkerSetupError(RuntimeError):
    """The workers could not load the model (bad weights, task mismatch, device)."""


@dataclass(frozen=True)
class ModelSpec:
    """How each worker gets its network.

    Attributes:
        weights: a local path (present on every node), an official bare name (fetched on
            each node when first needed) or a URI of any pyarrow filesystem (copied to each
            node's temporary folder once).
        precision: as :func:`codeformer_nodes.load_face_restorer` takes it.
        device: where the network runs; None: ``cuda`` on a worker given a GPU, else ``cpu``.
        factory: instead of ``weights``, a picklable callable building the network in the
            worker (stand-ins for tests and benchmarks).
    """

    weights: str | None = None
    precision: str = "auto"
    device: str | None = None
    factory: Callable[[], RestorationNetwork] | None = None


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
                self.model = load_face_restorer(weights, device=device, precision=spec.precision)
            resolve_task(self.model, config.options)
        except (CodeFormerWeightsError, ValueError, OSError) as error:
            self.failure = str(error)
            return
        self.group_size = faces_per_forward(self.model, config.options)

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
            except (torch.OutOfMemoryError, OSError, ValueError, ray.exceptions.RayError) as error:  # per image
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
            mark_skipped(entry, holder)
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
            else:
                record_output(Path(row["destination_path"]))
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
