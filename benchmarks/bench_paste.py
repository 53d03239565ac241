"""Paste-back cost and memory for one large face, and the cost of images too small to hold one.

``paste``: one face ``--face`` pixels wide (turned by 16 degrees, so its region is larger than the
face) in a ``--side`` x ``--side`` float image, pasted by ``paste_faces`` (no parse mask). Each variant
runs in its own process: ``pooled``, the erosion by max pooling and the blur by convolution, as the paste
took them first; ``convolved``, the blur by convolution alone, as it took it next; and ``current``. Each
reports seconds, the peak resident memory above what the inputs already took, and the largest difference
of its image and mask from ``current``'s (0: bit for bit).

``tiny``: ``--count`` images of ``--tiny-side`` pixels through ``restore_faces`` (the real MobileNet
detector from ``../shared/testdata``, a network that costs nothing): seconds per image, and the share
spent in detection. CodeFormer's flow enlarges such an image to 512 and detects at 640, as its own
command does, so the cost is the detector's at 640x640 whatever the image's size.

    .venv/bin/python benchmarks/bench_paste.py [--side 6000] [--face 4500] [--count 20] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scenes import SHARED

DETECTOR_WEIGHTS = SHARED / "testdata" / "weights" / "detection_mobilenet0.25_Final.pth"
VARIANTS = ("pooled", "convolved", "current")
TURN_DEGREES = 16


def pooled_erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """The paste's erosion as it was: a row then a column of max pooling, borders padded with infinity."""
    size = size or 3
    before, after = size // 2, size - 1 - size // 2
    padded = torch.nn.functional.pad(mask[None, None], (before, after, before, after), value=float("inf"))
    rows = -torch.nn.functional.max_pool2d(-padded, (size, 1), stride=1)
    return -torch.nn.functional.max_pool2d(-rows, (1, size), stride=1)[0, 0]


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def paste_worker(variant: str, side: int, face: int, out: Path) -> dict:
    from codeformer_nodes import RestoreOptions, paste_faces
    from codeformer_nodes.pipeline import geometry
    from codeformer_nodes.pipeline.results import FaceInfo

    if variant == "pooled":
        geometry.erode = pooled_erode
    if variant in ("pooled", "convolved"):
        geometry.gaussian_blur = geometry.gaussian_blur_by_convolution
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(side, side, 3, generator=generator)
    crop = torch.rand(1, 512, 512, 3, generator=generator)
    scale, turn = 512 / face, math.radians(TURN_DEGREES)
    cos, sin, centre = scale * math.cos(turn), scale * math.sin(turn), side / 2
    affine = ((cos, sin, 256 - (cos + sin) * centre), (-sin, cos, 256 - (cos - sin) * centre))
    info = FaceInfo(0, (0, 0, face, face), 0.9, ((0.0, 0.0),) * 5, face, 0.5, affine)
    before = resident_bytes()
    start = time.perf_counter()
    result = paste_faces([image], [info], crop, RestoreOptions(parse_mask=False))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    torch.save({"image": result.images[0], "mask": result.masks[0]}, out)
    return {"seconds": seconds, "peak_bytes": peak}


def tiny_worker(side: int, count: int) -> dict:
    from codeformer_nodes import RestoreOptions, restore_faces
    from codeformer_nodes.pipeline import faces

    class FreeNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, w=0, adain=False):
            return (-x, None, None)

    detecting = [0.0]
    detect = faces.detect_in_image

    def timed_detect(*args, **kwargs):
        start = time.perf_counter()
        found = detect(*args, **kwargs)
        detecting[0] += time.perf_counter() - start
        return found

    faces.detect_in_image = timed_detect
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / DETECTOR_WEIGHTS.name).symlink_to(DETECTOR_WEIGHTS)
        options = RestoreOptions(detector="retinaface_mobile0.25", weights_dir=folder, parse_mask=False)
        images = [np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8) for i in range(count)]
        restore_faces(images[:1], FreeNetwork(), options)  # loads the detector
        detecting[0] = 0.0
        start = time.perf_counter()
        for image in images:
            restore_faces([image], FreeNetwork(), options)
        seconds = time.perf_counter() - start
    return {"seconds_per_image": seconds / count, "detection_share": detecting[0] / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--face", type=int, default=4500)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--tiny-side", type=int, default=16)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--worker", choices=(*VARIANTS, "tiny"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "tiny":
        print(json.dumps(tiny_worker(args.tiny_side, args.count)))
        return
    if args.worker is not None:
        print(json.dumps(paste_worker(args.worker, args.side, args.face, args.out)))
        return
    with tempfile.TemporaryDirectory() as temporary:  # each variant's output: GBs at the default sizes
        folder = Path(temporary)
        sizes = ["--side", str(args.side), "--face", str(args.face)]
        reports = {}
        variants = [*dict.fromkeys([*args.variants, "current"])]
        for variant in variants:
            command = [sys.executable, __file__, "--worker", variant, *sizes, "--out", str(folder / variant)]
            reports[variant] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        current = torch.load(folder / "current")
        print(f"paste: one {args.face}-pixel face in a {args.side}x{args.side} image")
        for variant, report in reports.items():
            output = torch.load(folder / variant)
            image, mask = ((output[key] - current[key]).abs().max().item() for key in ("image", "mask"))
            print(f"  {variant:9s} {report['seconds']:7.2f} s   peak +{report['peak_bytes'] / 2**30:5.2f} GiB   "
                  f"max difference from current: image {image:.1e}, mask {mask:.1e}")  # fmt: skip
    command = [sys.executable, __file__, "--worker", "tiny", "--tiny-side", str(args.tiny_side)]
    tiny = json.loads(subprocess.run([*command, "--count", str(args.count)], check=True, capture_output=True,
                                     text=True).stdout)  # fmt: skip
    print(
        f"tiny: {args.count} images of {args.tiny_side}x{args.tiny_side}: {tiny['seconds_per_image']:.3f} s an image, "
        f"{tiny['detection_share']:.0%} of it in detection"
    )


if __name__ == "__main__":
    main()
