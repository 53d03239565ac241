"""Half precision of the face restorers other than CodeFormer (GFPGAN, RestoreFormer) against float32.

The issue's rule for these decoders: offer a half-precision mode only where its output keeps
>= 40 dB PSNR against float32. Each family gets seeded random weights of its official shapes
(spandrel's builds with their defaults: GFPGANv1.4, i.e. GFPGANv1Clean with channel multiplier
2, its noise strengths set to 0.3 (``scenes.NOISE_STRENGTH``, as the test fixture sets them) so the stored
noise matters; RestoreFormer as GFPGANer builds it), saved in the official layout and loaded by
``load_face_restorer`` in fp32. The half modes cast that whole network (what ``fp16`` / ``bf16``
build: ``descriptor.model.to(dtype)``); the cast is done here, because the loader refuses fp16
off CUDA and bf16 where the hardware emulates it.

The faces are real aligned 512x512 crops: the faces of ``group_four.png`` (``../shared/testdata``),
found and aligned by ``restore_faces(..., return_crops=True)`` with the MobileNet detector and a
network that costs nothing. Each face goes through each mode once (``torch.inference_mode``); the
table gives seconds per face and the PSNR of each mode's restored face against float32's, both on
the 8-bit levels the family's inference pastes (``SpandrelFaceRestorer`` rounds them). float32
runs first, in the same process, as the baseline.

    .venv/bin/python benchmarks/bench_restorers.py [--faces 4] [--families GFPGAN RestoreFormer]
        [--modes fp32 fp16 bf16] [--arithmetic rounded] [--side 512] [--weights GFPGAN=GFPGANv1.4.pth]
        [--device cpu]

Arithmetic: ``native`` runs the half network as the device computes it. On an AVX2 CPU both
half types are emulated, ~80-150x slower than float32 (a 3x3 convolution: 0.05 s in float32,
7 s in either half type): 20 minutes and more per 512x512 face. ``rounded`` computes every op in
float32 and rounds its result to the half type (:class:`RoundedToHalf`), the numbers of half
kernels that accumulate in float32, as a GPU's do, at float32's speed: its PSNR is the figure, its
seconds are not a half network's. ``--side 64 --families RestoreFormer --arithmetic native
rounded`` checks one against the other where native half is bearable.

Random weights are not trained ones: trained weights have other activation ranges (float16 can
overflow where random weights stay small), so a PSNR here is evidence for a mode, not a proof.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scenes import PHOTOS, SHARED, random_weights
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

DETECTOR = "retinaface_mobile0.25"
DETECTOR_WEIGHTS = SHARED / "testdata" / "weights" / "detection_mobilenet0.25_Final.pth"
PHOTO = "group_four.png"
FAMILIES = ("GFPGAN", "RestoreFormer")
MODES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ARITHMETIC = ("native", "rounded")


def aligned_faces(count: int, side: int) -> torch.Tensor:
    """The first ``count`` faces of the photo, aligned to 512x512 by the pipeline and resized to ``side``:
    (N, 3, side, side) in [-1, 1]."""
    from codeformer_nodes import RestoreOptions, restore_faces
    from codeformer_nodes.pipeline.images import to_network_range

    class FreeNetwork(torch.nn.Module):
        """Returns its input: only the crops are wanted."""

        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor, w: object = None, adain: object = None) -> tuple[torch.Tensor]:
            return (x,)

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / DETECTOR_WEIGHTS.name).symlink_to(DETECTOR_WEIGHTS)
        options = RestoreOptions(detector=DETECTOR, weights_dir=folder, parse_mask=False, return_crops=True)
        image = np.array(Image.open(PHOTOS / PHOTO).convert("RGB"))
        crops = restore_faces([image], FreeNetwork(), options).crops[:count]
    faces = crops.permute(0, 3, 1, 2)
    if side != faces.shape[-1]:
        faces = torch.nn.functional.interpolate(faces, size=(side, side), mode="bilinear", antialias=True)
    return to_network_range(faces.contiguous())


class RoundedToHalf(TorchDispatchMode):
    """Every aten op computed in float32 from its half inputs, its floating results rounded to ``dtype``: the
    numbers of half kernels that accumulate in float32 (as a GPU's do), at float32's speed on a CPU that has
    no half arithmetic. Views stay views, explicit casts to float32 stay float32, and in-place ops write their
    rounded result back into their operand."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        if func.is_view:  # no arithmetic: the view of the half tensor, aliasing kept
            return func(*args, **kwargs)
        if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.float32:
            return func(*args, **kwargs)  # an explicit cast to float32 (the restorer's rounding to levels) is kept
        if not any(isinstance(value, torch.Tensor) and value.dtype == self.dtype for value in tree_leaves(args)):
            return func(*args, **kwargs)  # float32 operands (after such a cast) compute in float32, as natively
        wide = tree_map(self._widen, (args, kwargs))
        result = tree_map(self._round, func(*wide[0], **wide[1]))
        if func._schema.is_mutable and isinstance(args[0], torch.Tensor) and args[0].dtype == self.dtype:
            with torch.no_grad():
                args[0].copy_(result if isinstance(result, torch.Tensor) else result[0])
            return args[0]
        return result

    def _widen(self, value: object) -> object:
        return value.float() if isinstance(value, torch.Tensor) and value.dtype == self.dtype else value

    def _round(self, value: object) -> object:
        return value.to(self.dtype) if isinstance(value, torch.Tensor) and value.dtype == torch.float32 else value


def levels(face: torch.Tensor) -> np.ndarray:
    """A restored face in [-1, 1] on 8-bit levels -> those levels (NaN stays NaN)."""
    return ((face.float().cpu() + 1) / 2 * 255).round().numpy().astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def run_family(
    family: str, path: Path, faces: torch.Tensor, modes: list[str], arithmetic: list[str], device: torch.device
) -> None:
    from codeformer_nodes import load_face_restorer
    from codeformer_nodes.models import clear_model_cache

    baseline: list[np.ndarray] = []
    runs = [("fp32", "native")] + [(m, way) for m in modes if m != "fp32" for way in arithmetic]
    for mode, way in runs:
        clear_model_cache()
        restorer = load_face_restorer(path, device=device, precision="fp32").to(MODES[mode])
        seconds, decibels, bad = [], [], 0
        for index, face in enumerate(faces):
            x = face[None].to(device=device, dtype=MODES[mode])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with torch.inference_mode(), RoundedToHalf(MODES[mode]) if way == "rounded" else nullcontext():
                (out,) = restorer(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
            restored = levels(out)
            bad += int(np.count_nonzero(~np.isfinite(restored)))
            if mode == "fp32":
                baseline.append(restored)
            else:
                decibels.append(psnr(np.nan_to_num(restored, nan=-255.0), baseline[index]))
            print(f"    {family} {mode} {way} face {index}: {seconds[-1]:.1f} s", flush=True)
        if mode == "fp32":
            quality = "baseline"
        else:
            quality = f"{min(decibels):6.1f} dB min, {statistics.mean(decibels):6.1f} dB mean"
            quality += f", {bad} non-finite values" if bad else ""
        name = mode if way == "native" else f"{mode} {way}"
        print(f"  {family:13s} {name:12s} {statistics.mean(seconds):7.1f} s/face   {quality}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=4, help="faces of group_four.png to run (1-4)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    parser.add_argument(
        "--arithmetic",
        nargs="+",
        choices=ARITHMETIC,
        default=["rounded"],
        help="native: the half network computed by the device (seconds mean something); rounded: each op in "
        "float32, its result rounded to half (a GPU's half numbers at float32's speed on a CPU; PSNR only)",
    )
    parser.add_argument(
        "--side",
        type=int,
        default=512,
        help="face side in pixels; below 512 (RestoreFormer only, a multiple of 32) to check the rounded "
        "arithmetic against native half where native half is too slow at 512",
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        default=[],
        metavar="FAMILY=PATH",
        help="a trained file to run instead of a family's random weights, e.g. GFPGAN=GFPGANv1.4.pth",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.side != 512 and "GFPGAN" in args.families:
        parser.error("GFPGAN takes 512x512 faces only: give --side 512 or --families RestoreFormer")
    trained = dict(entry.split("=", 1) for entry in args.weights if "=" in entry)
    if len(trained) != len(args.weights) or not set(trained) <= set(FAMILIES):
        parser.error(f"--weights takes FAMILY=PATH with FAMILY one of {', '.join(FAMILIES)}; got {args.weights}")
    faces = aligned_faces(args.faces, args.side)
    print(
        f"{len(faces)} aligned faces of {PHOTO} at {args.side}x{args.side}; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
    )
    print("  family        mode         seconds/face   PSNR against fp32 (8-bit levels)")
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families:
            path = Path(trained[family]) if family in trained else random_weights(family, Path(folder))
            run_family(family, path, faces, args.modes, args.arithmetic, device)


if __name__ == "__main__":
    main()
