"""``codeformer-restore ... --ray``: the command line's options and run for a Ray cluster (``batch.ray_driver``)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline.options import RestoreOptions

ADDRESS = re.compile(r"^(auto|local|ray://.+|https?://.+|[\w.-]+:\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and its knobs (Ray itself is imported only by a run)."""
    group = parser.add_argument_group("Ray cluster")
    group.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="restore on a Ray cluster (pip install 'codeformer-nodes[ray]'): ADDRESS (auto, "
                             "HOST:PORT, ray://HOST:10001), else RAY_ADDRESS or a local one; inputs and -o may "
                             "then be URIs (s3://, gs://, file://)")  # fmt: skip
    group.add_argument("--ray-workers", type=int, help="Ray actors (default: one per GPU, else one per CPU)")
    group.add_argument("--ray-cpus-per-worker", type=float, help="CPUs and torch threads per actor (default 1)")
    group.add_argument("--ray-batch-size", type=int, help="images per Ray task (default 32 with GPUs, else 8)")


def main(args: argparse.Namespace, options: RestoreOptions, parser: argparse.ArgumentParser) -> int:
    """``codeformer-restore ... --ray``: as the local run, with the restoring done by the cluster."""
    from ..batch.imageio import WriteSettings
    from ..batch.ray_driver import import_ray, restore_with_ray
    from ..batch.ray_files import filesystem, is_uri, uri_of_path
    from ..batch.ray_worker import ModelSpec, WorkerSetupError
    from ..batch.report import ReportEntry, reported_run

    address: str | None = args.ray or None
    inputs = list(args.inputs)
    if address is not None and not ADDRESS.match(address):  # `--ray photos/ -o out`: an input, not an address
        inputs.insert(0, address)
        address = None
    if not inputs or args.output is None:
        parser.error("give INPUT... and -o OUTDIR (or --export-workflow FILE)")
    spec = ModelSpec(weights=args.model, precision=args.precision, device=args.device)  # None: each worker's own
    output = uri_of_path(args.output)
    settings = WriteSettings(args.format, args.jpeg_quality, args.jpeg_subsampling)
    try:
        import_ray()
        if is_uri(output):
            filesystem(str(output))
    except (ImportError, ValueError, OSError) as error:  # pyarrow: a malformed URI, unknown scheme, credentials
        print(f"codeformer-restore: {error}", file=sys.stderr)
        return 2

    entries: list[ReportEntry] = []

    def work() -> None:
        restore_with_ray(inputs, output, options, spec, None if address == "local" else address,
                         settings=settings, skip_existing=args.skip_existing, workers=args.ray_workers,
                         cpus_per_worker=args.ray_cpus_per_worker, batch_size=args.ray_batch_size,
                         entries=entries)  # fmt: skip

    try:
        return reported_run(args.report, args.output, entries, work)
    except (WorkerSetupError, ConnectionError) as error:  # ConnectionError: no cluster at ADDRESS
        print(f"codeformer-restore: {error}", file=sys.stderr)
        return 2
