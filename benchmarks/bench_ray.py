"""The same folder restored by the local CLI's run and by ``restore_with_ray`` on a local Ray cluster.

Makes ``--images`` (40) small images from the two test photos in ``../shared/testdata``: a
square crop around each of their 8 faces, at 5 sizes, PNG and JPEG by turns. Restores them
with the real MobileNet-0.25 detector and a stand-in network (inverts each face: it isolates
the pipeline's and Ray's costs from CodeFormer's) in four ways, ``--repeats`` times in turn
(the best of each is kept; the machine may be shared):

- local: ``batch.runner.run`` in this process, at ``torch.get_num_threads()`` threads
  (the CLI's path after it has loaded the model);
- ray 1: ``restore_with_ray`` with one worker holding all CPUs (as many torch threads);
- ray 2: two workers of half the CPUs each;
- local 1 thread: the local run at one thread (the per-worker thread count of ray 2).

A Ray run includes starting its actors (a process each: importing torch, loading the model
and the detector); ``ray.init`` is not counted (a cluster is up before a job comes). For each
it prints seconds, images per second, the seconds to the first result, and the steady rate
after it; then Ray's overhead over the local run at one worker. ``--real N`` adds a run of N
images through the recipe network (``../shared/reference``, float32) locally and on one worker
with the same thread count, and checks that their files are identical.

    .venv/bin/python benchmarks/bench_ray.py [--images 40] [--repeats 2] [--real 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scenes import SHARED, recipe_checkpoint

TESTDATA = SHARED / "testdata"
DETECTOR = "retinaface_mobile0.25"
SIZES = (160, 176, 192, 208, 224)


class InvertingNetwork(torch.nn.Module):
    """A stand-in for CodeFormer that costs nothing: each face comes back inverted."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, w=0, adain=False):
        return (-x, None, None)


def make_images(folder: Path, count: int) -> None:
    """Square crops around each face of the test photos, at several sizes."""
    from codeformer_nodes import RestoreOptions, restore_faces

    options = RestoreOptions(detector=DETECTOR, weights_dir=TESTDATA / "weights")
    crops = []
    for name in ("group_four.png", "group_small.jpg"):
        photo = Image.open(TESTDATA / "photos" / name).convert("RGB")
        pixels = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255)
        for face in restore_faces([pixels], InvertingNetwork(), options).faces:
            x0, y0, x1, y1 = face.box
            side = 2.2 * max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            crops.append(photo.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))))
    folder.mkdir(parents=True)
    for index in range(count):
        crop = crops[index % len(crops)].resize((SIZES[index // len(crops) % len(SIZES)],) * 2, Image.LANCZOS)
        crop.save(folder / f"face_{index:03d}.{'png' if index % 2 else 'jpg'}", quality=95)


class Clock:
    """When each image's result reached the driver (``Progress.step``, which both paths call)."""

    def __init__(self) -> None:
        from codeformer_nodes.batch import runner as restore

        self.times: list[float] = []
        original = restore.Progress.step

        def step(progress, source, entry):
            self.times.append(time.perf_counter())
            original(progress, source, entry)

        restore.Progress.step = step


def measure(name: str, clock: Clock, work) -> dict:
    clock.times.clear()
    started = time.perf_counter()
    entries = work()
    seconds = time.perf_counter() - started
    failed = [e for e in entries if e.get("error")]
    assert not failed, failed[:2]
    first = clock.times[0] - started
    # The steady rate: images after the first result's burst, over the time after it.
    burst = sum(1 for t in clock.times if t - clock.times[0] < 0.05)
    rest = len(clock.times) - burst
    steady = rest / (clock.times[-1] - clock.times[0]) if rest and clock.times[-1] > clock.times[0] else float("nan")
    return {"name": name, "seconds": seconds, "rate": len(entries) / seconds, "first": first, "steady": steady}


def local(folder: Path, out: Path, network, options, threads: int) -> list[dict]:
    from codeformer_nodes.batch.imageio import WriteSettings
    from codeformer_nodes.batch.naming import expand_inputs, run

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        files, entries = expand_inputs([str(folder)], out)
        return run(files, network, options, out, WriteSettings(), False, entries)
    finally:
        torch.set_num_threads(before)


def on_ray(folder: Path, out: Path, spec, options, workers: int, cpus: float) -> list[dict]:
    from codeformer_nodes.batch.ray_driver import restore_with_ray

    return restore_with_ray([str(folder)], out, options, spec, workers=workers, cpus_per_worker=cpus)


def report(results: list[dict], label: str) -> None:
    best: dict[str, dict] = {}
    for result in results:
        if result["name"] not in best or result["seconds"] < best[result["name"]]["seconds"]:
            best[result["name"]] = result
    print(f"\n{label} (best of {len(results) // len(best)})")
    print(f"{'run':<22}{'seconds':>9}{'images/s':>10}{'first (s)':>11}{'steady/s':>10}")
    for result in best.values():
        print(
            f"{result['name']:<22}{result['seconds']:>9.2f}{result['rate']:>10.2f}{result['first']:>11.2f}"
            f"{result['steady']:>10.2f}"
        )
    base, one = best.get("local"), best.get("ray 1 worker")
    if base and one:
        print(
            f"Ray over local at one worker: {one['seconds'] / base['seconds'] - 1:+.1%} wall, "
            f"{base['steady'] / one['steady'] - 1:+.1%} steady"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--real", type=int, default=0, help="images through the recipe network (0: none)")
    args = parser.parse_args()
    if not TESTDATA.exists():
        sys.exit(f"{TESTDATA} is absent: the benchmark's photos and detector live there")
    import ray

    from codeformer_nodes import RestoreOptions
    from codeformer_nodes.batch.ray_worker import ModelSpec

    cpus = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    folder = work / "in"
    make_images(folder, args.images)
    clock = Clock()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"ray {ray.__version__}, torch {torch.__version__}, {cpus} CPUs (load {load}), {args.images} images")
    options = RestoreOptions(detector=DETECTOR, weights_dir=TESTDATA / "weights")
    spec = ModelSpec(factory=InvertingNetwork)
    runs = {
        "local": lambda out: local(folder, out, InvertingNetwork(), options, cpus),
        "ray 1 worker": lambda out: on_ray(folder, out, spec, options, 1, cpus),
        f"ray 2 workers x {cpus / 2:g} CPU": lambda out: on_ray(folder, out, spec, options, 2, cpus / 2),
        "local 1 thread": lambda out: local(folder, out, InvertingNetwork(), options, 1),
    }
    results = []
    for repeat in range(args.repeats):
        for name, run in runs.items():
            out = work / f"out-{repeat}-{len(results)}"
            results.append(measure(name, clock, lambda run=run, out=out: run(out)))
            shutil.rmtree(out)
    report(results, "stand-in network (pipeline and Ray only)")
    print(f"load after: {', '.join(f'{value:.1f}' for value in os.getloadavg())}", flush=True)

    if args.real:
        real_in = work / "real"
        real_in.mkdir()
        for file in sorted(folder.iterdir())[: args.real]:
            shutil.copy(file, real_in)
        weights = recipe_checkpoint(work)
        from codeformer_nodes import load_codeformer

        real_options = RestoreOptions(detector=DETECTOR, weights_dir=TESTDATA / "weights", face_selection="largest")
        real_spec = ModelSpec(weights=str(weights), precision="auto")
        local_real = lambda: local(real_in, work / "real-local", load_codeformer(weights), real_options, cpus)  # noqa: E731
        ray_real = lambda: on_ray(real_in, work / "real-ray", real_spec, real_options, 1, cpus)  # noqa: E731
        results = [measure("local", clock, local_real), measure("ray 1 worker", clock, ray_real)]
        report(results, f"recipe network, {args.real} images, one face each (local includes loading the model)")
        same = all((work / "real-local" / f.name).read_bytes() == f.read_bytes() for f in (work / "real-ray").iterdir())
        print(f"files identical (local vs ray 1 worker, {cpus} threads each): {same}")
    ray.shutdown()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
