"""A folder run on a Ray cluster (``codeformer-restore --ray``): restore a whole bucket of images.

    codeformer-restore s3://bucket/photos -o s3://bucket/restored --ray --report report.json

Needs the ``ray`` extra (``pip install 'codeformer-nodes[ray]'``); nothing here imports Ray
until a run starts. Inputs and the output folder are local paths (files, folders, globs)
or URIs of any pyarrow filesystem (``s3://``, ``gs://``, ``file://``, ...). The run is the
local CLI's, spread over a pool of Ray Data actors:

- The driver lists the inputs, names every output with :func:`~.naming.output_path` (so
  names never collide and never land on an input), leaves done outputs to
  ``--skip-existing``, and hands Ray Data rows of file names only: pixels never enter
  the object store.
- Each actor (one per GPU, or one per ``cpus_per_worker`` CPUs) loads the model once and
  restores its batches with the local run's own steps (:func:`~.runner.prefetch`,
  :func:`~.runner.restore_group`, :func:`~.imageio.write_image`, claims), so the faces
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
  object-store limit; an actor holds at most the decodes of :data:`~.runner.PREFETCH`
  images ahead and the results of one batch still being written.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..models.files import remove_stale_partials
from ..pipeline import RestoreOptions
from ..pipeline.inference import MAX_AUTO_CHUNK
from .imageio import WriteSettings
from .ray_files import existing_outputs, plan
from .ray_worker import ATTEMPTS, Ledger, ModelSpec, RestoreWorker, WorkerConfig, WorkerSetupError
from .runner import Progress

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


def import_ray():
    """Ray and Ray Data, or an ``ImportError`` that says how to install them."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError(RAY_MISSING) from error
    return ray


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
        options: the restore options.
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
        on_gpu = spec.factory is None and (spec.device or "cuda").startswith("cuda")
        pool = _pool(ray.cluster_resources(), on_gpu, len(todo), workers, cpus_per_worker or 1.0, batch_size)
        gpus, cpus, workers, batch = pool.gpus, pool.cpus, pool.workers, pool.batch
        ledger_name = f"codeformer-ledger-{uuid.uuid4().hex}"
        ledger = ray.remote(num_cpus=0)(Ledger).options(name=ledger_name).remote()
        config = WorkerConfig(spec, options, settings, skip_existing, max(1, round(cpus)), ledger_name, attempts)
        dataset = _dataset(ray, todo, config, workers, cpus, gpus, batch)
        try:
            _collect(dataset, ledger, results, by_index, progress)
        finally:
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


@dataclass(frozen=True)
class _Pool:
    """The actor pool of a run: GPUs per actor (0 or 1), CPUs per actor, actors, images per task."""

    gpus: int
    cpus: float
    workers: int
    batch: int


def _pool(
    resources: dict, on_gpu: bool, images: int, workers: int | None, cpus: float, batch_size: int | None
) -> _Pool:
    """One actor per GPU, else per ``cpus`` CPUs as memory allows; batches small enough that every actor
    gets several when the images are few (so that they end together), and no actor without a batch."""
    gpus = int(resources.get("GPU", 0)) if on_gpu else 0
    if workers is None:
        by_memory = int(resources.get("memory", math.inf) // CPU_WORKER_MEMORY)
        workers = gpus or max(1, min(int(resources.get("CPU", 1) // cpus), by_memory))
    largest = GPU_BATCH if gpus else CPU_BATCH
    batch = batch_size or max(1, min(largest, math.ceil(images / (workers * BATCHES_PER_WORKER))))
    return _Pool(1 if gpus else 0, cpus, min(workers, math.ceil(images / batch)), batch)


def _collect(dataset, ledger, results: dict[int, dict], by_index: dict[int, dict], progress: Progress) -> None:  # noqa: ANN001 (Ray objects)
    """Take each image's entry as its batch comes back (the first one counts: a retried batch repeats some)."""
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
