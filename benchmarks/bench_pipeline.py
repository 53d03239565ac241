"""Whole-pipeline time and memory: ours against the official flow.

Runs on the two test photos, on an 8-face crowd whose faces overlap (``scenes.crowd_rgb``)
and on a synthetic 3840x2160 image holding 2 faces. With ``--flow codeformer`` (default) the
official flow is CodeFormer's own: codeformer-pip's helper and network (float32, one face per
forward, ParseNet on, upscale 1) stepped through as its ``inference_codeformer.py`` runs
(``tests/official_flow_runner.py``); with ``--flow facexlib`` it is facexlib's
``FaceRestoreHelper`` with the reference network (spandrel_extra_arches' build). Ours is
``restore_faces`` in the same flow at the official size, with ``load_codeformer(precision=...)``
(``auto`` by default). Both use the real MobileNet-0.25 detector from ``../shared/testdata``, a
random ParseNet and the recipe weights, ``w=0.5, adain=True``. For each (side, image) pair a
worker process reports total seconds, seconds inside the network, peak RSS and its output
image; the parent gives ours' PSNR against the official output.

    .venv/bin/python benchmarks/bench_pipeline.py [--flow codeformer] [--repeats 1] [--precision auto] \
        [--images crowd ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scenes import SHARED, recipe_checkpoint

DETECTOR_WEIGHTS = SHARED / "testdata" / "weights" / "detection_mobilenet0.25_Final.pth"
DETECTOR = "retinaface_mobile0.25"
FIDELITY = 0.5
IMAGES = ("group_small.jpg", "group_four.png", "crowd", "synthetic_4k")
SIDES = ("ours", "official")
SPANDREL_MODULE = "spandrel_extra_arches.architectures.CodeFormer"


class TimedNetwork(torch.nn.Module):
    """Wraps a network and adds up the seconds spent in its forward calls."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.seconds = 0.0

    def forward(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.network(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return result


def load_image(name: str) -> np.ndarray:
    from scenes import crowd_rgb, read_rgb, synthetic_4k

    return {"synthetic_4k": synthetic_4k, "crowd": crowd_rgb}.get(name, lambda: read_rgb(name))()


def run_ours(image: np.ndarray, network: TimedNetwork, weights_dir: Path, flow: str) -> tuple[int, np.ndarray]:
    from codeformer_nodes import RestoreOptions, restore_faces

    options = RestoreOptions(flow=flow, detector=DETECTOR, weights_dir=weights_dir, fidelity=FIDELITY, keep_size=False)
    result = restore_faces([image], network, options)
    return len(result.faces), result.images[0].mul(255).round_().to(torch.uint8).numpy()  # float IMAGE -> levels


def run_facexlib(image: np.ndarray, network: TimedNetwork, weights_dir: Path, flow: str) -> tuple[int, np.ndarray]:
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    helper = FaceRestoreHelper(
        1, face_size=512, det_model=DETECTOR, use_parse=False, device=torch.device("cpu"), model_rootpath=weights_dir
    )
    helper.read_image(np.ascontiguousarray(image[..., ::-1]))
    helper.get_face_landmarks_5(resize=640, eye_dist_threshold=5)
    helper.align_warp_face()
    for crop in helper.cropped_faces:
        x = torch.from_numpy(crop[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            out = network((x - 0.5) / 0.5, weight=FIDELITY)[0]  # the reference always applies AdaIN
        face = ((out[0].clamp(-1, 1) + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy()
        helper.add_restored_face(np.ascontiguousarray(face[..., ::-1]))
    helper.get_inverse_affine()
    return len(helper.cropped_faces), helper.paste_faces_to_input_image()[..., ::-1]


def load_network(flow: str, weights: Path, precision: str) -> torch.nn.Module:
    """Ours in ``precision``, or the reference network in float32 (the official flow's)."""
    if flow == "ours":
        from codeformer_nodes import load_codeformer

        return load_codeformer(weights, precision=precision)
    import importlib

    state_dict = torch.load(weights, weights_only=True)["params_ema"]
    return importlib.import_module(SPANDREL_MODULE).CodeFormerArch().load(state_dict).model.eval()


def worker(side: str, flow: str, image_name: str, weights: Path, weights_dir: Path, repeats: int, precision: str,
           out: Path) -> dict:  # fmt: skip
    if side == "official" and flow == "codeformer":
        return official_codeformer_worker(image_name, weights, weights_dir, repeats, out)
    network = TimedNetwork(load_network(side, weights, precision))
    image = load_image(image_name)
    run = run_ours if side == "ours" else run_facexlib
    run(image, network, weights_dir, flow)  # warm-up: detector load, first-call allocations
    totals, inside = [], []
    for _ in range(repeats):
        network.seconds = 0.0
        start = time.perf_counter()
        faces, restored = run(image, network, weights_dir, flow)
        totals.append(time.perf_counter() - start)
        inside.append(network.seconds)
    np.save(out, restored)
    best = int(np.argmin(totals))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"faces": faces, "total": totals[best], "network": inside[best], "peak_mib": peak_mib}


def official_codeformer_worker(image_name: str, weights: Path, weights_dir: Path, repeats: int, out: Path) -> dict:
    """CodeFormer's own flow and network, through the tests' runner in a process of its own."""
    from scenes import official_codeformer

    folder = out.parent / "official"
    if not folder.exists():
        folder.mkdir()
        if official_codeformer(folder, weights_dir) is None:
            sys.exit("codeformer-pip is not installed: bash scripts/setup.sh installs it")
    source = out.parent / f"{image_name}-bgr.npy"
    np.save(source, np.ascontiguousarray(load_image(image_name)[..., ::-1]))
    case = {"name": f"official-{image_name}", "image": str(source), "upscale": 1, "weights": str(weights),
            "w": FIDELITY}  # fmt: skip
    job = out.parent / f"official-{image_name}.json"
    job.write_text(json.dumps({"cases": [case], "out": str(out.parent), "repeats": repeats}))
    runner = Path(__file__).resolve().parents[1] / "tests" / "official_flow_runner.py"
    done = subprocess.run([sys.executable, str(runner), str(job)], env={**os.environ, "PYTHONPATH": str(folder)},
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the official flow failed on {image_name}:\n{done.stderr[-3000:]}")
    result = np.load(out.parent / f"official-{image_name}.npz")
    np.save(out, result["image"][..., ::-1])
    return {
        "faces": int(result["faces"]),
        "total": float(result["seconds"]),
        "network": float(result["network_seconds"]),
        "peak_mib": float(result["peak_mib"]),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


def prepare(folder: Path) -> tuple[Path, Path]:
    """Recipe weights as a checkpoint, and a model folder with the detector and a random ParseNet."""
    weights = recipe_checkpoint(folder)
    weights_dir = folder / "facexlib"
    weights_dir.mkdir()
    shutil.copy(DETECTOR_WEIGHTS, weights_dir / DETECTOR_WEIGHTS.name)
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), weights_dir / "parsing_parsenet.pth")
    return weights, weights_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precision", default="auto", help="ours' precision (see codeformer-restore --help)")
    parser.add_argument("--images", nargs="+", choices=IMAGES, default=IMAGES)
    parser.add_argument(
        "--flow",
        choices=("codeformer", "facexlib"),
        default="codeformer",
        help="whose flow both sides follow (and so which official code is the baseline)",
    )
    parser.add_argument("--worker", nargs=5, metavar=("SIDE", "IMAGE", "WEIGHTS", "DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, image, weights, weights_dir, out = args.worker
        result = worker(
            side, args.flow, image, Path(weights), Path(weights_dir), args.repeats, args.precision, Path(out)
        )
        print(json.dumps(result))
        return
    if not DETECTOR_WEIGHTS.exists():
        sys.exit(f"{DETECTOR_WEIGHTS} is absent: this benchmark needs ../shared/testdata beside the project")
    from codeformer_nodes.models import choose_precision

    ours = choose_precision(args.precision, torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, detector {DETECTOR}")
    baseline = "codeformer-pip's helper and network" if args.flow == "codeformer" else "facexlib helper + reference"
    print(f"flow {args.flow}; ours: precision {args.precision} ({ours}); official: {baseline}, float32")
    print(f"best of {args.repeats} run(s) after a warm-up; PSNR of ours against the official output")
    print(f"{'image':<17}{'flow':<11}{'faces':>6}{'total s':>10}{'network s':>11}{'outside s':>11}"
          f"{'outside %':>11}{'peak MiB':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory() as temporary:
        weights, weights_dir = prepare(Path(temporary))
        for image in args.images:
            results, outputs = {}, {}
            for side in SIDES:
                out = Path(temporary) / f"{side}-{image}.npy"
                command = [sys.executable, __file__, "--repeats", str(args.repeats), "--precision", args.precision]
                command += ["--flow", args.flow, "--worker", side, image, str(weights), str(weights_dir), str(out)]
                output = subprocess.run(command, capture_output=True, text=True)
                if output.returncode != 0:
                    sys.exit(f"worker {side} {image} failed:\n{output.stderr}")
                result = results[side] = json.loads(output.stdout.strip().splitlines()[-1])
                outputs[side] = np.load(out)
                outside = result["total"] - result["network"]
                print(
                    f"{image:<17}{side:<11}{result['faces']:>6}{result['total']:>10.2f}{result['network']:>11.2f}"
                    f"{outside:>11.3f}{100 * outside / result['network']:>10.1f}%{result['peak_mib']:>10.0f}"
                )
            speedup = results["official"]["total"] / results["ours"]["total"]
            similarity = psnr(outputs["ours"], outputs["official"])
            print(
                f"{'':<17}ours: {speedup:.2f}x the official flow's speed, {similarity:.1f} dB PSNR against its output"
            )


if __name__ == "__main__":
    main()
