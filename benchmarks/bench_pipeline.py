"""Whole-pipeline time and memory: ours against the facexlib-helper flow, same network.

Runs on the two test photos and on a synthetic 3840x2160 image holding 2 faces. Both
flows use the real MobileNet-0.25 detector from ``../shared/testdata`` and the same
CodeFormer (recipe weights, float32, ``w=0.5, adain=True``); the helper flow restores one
face per forward, as the official inference script does. For each (flow, image) pair a
worker process reports total seconds, seconds inside the network, and peak RSS.

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "testdata" / "photos"
DETECTOR_WEIGHTS = SHARED / "testdata" / "weights" / "detection_mobilenet0.25_Final.pth"
DETECTOR = "retinaface_mobile0.25"
FIDELITY = 0.5
IMAGES = ("group_small.jpg", "group_four.png", "synthetic_4k")
FLOWS = ("ours", "facexlib-helper")


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


def synthetic_4k() -> np.ndarray:
    """3840x2160 RGB: two faces of group_four.png, enlarged 1.5x, on a smooth gradient."""
    from PIL import Image

    photo = Image.open(PHOTOS / "group_four.png").convert("RGB")
    canvas = np.empty((2160, 3840, 3), np.uint8)
    canvas[...] = np.linspace(40, 200, 3840, dtype=np.float32).astype(np.uint8)[None, :, None]
    for (left, top, right, bottom), (x, y) in (((380, 40, 560, 290), (700, 600)), ((610, 40, 780, 290), (2600, 1200))):
        face = photo.crop((left, top, right, bottom))
        face = np.array(face.resize((face.width * 3 // 2, face.height * 3 // 2), Image.LANCZOS))
        canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    return canvas


def load_image(name: str) -> np.ndarray:
    from PIL import Image

    return synthetic_4k() if name == "synthetic_4k" else np.array(Image.open(PHOTOS / name).convert("RGB"))


def run_ours(image: np.ndarray, network: TimedNetwork, weights_dir: Path) -> int:
    from codeformer_nodes import RestoreOptions, restore_faces

    options = RestoreOptions(detector=DETECTOR, weights_dir=weights_dir, fidelity=FIDELITY)
    return len(restore_faces([image], network, options).faces)


def run_helper(image: np.ndarray, network: TimedNetwork, weights_dir: Path) -> int:
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
            out = network((x - 0.5) / 0.5, w=FIDELITY, adain=True)[0]
        face = ((out[0].clamp(-1, 1) + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy()
        helper.add_restored_face(np.ascontiguousarray(face[..., ::-1]))
    helper.get_inverse_affine()
    helper.paste_faces_to_input_image()
    return len(helper.cropped_faces)


def worker(flow: str, image_name: str, weights: Path, weights_dir: Path, repeats: int) -> dict[str, float]:
    from codeformer_nodes import load_codeformer

    network = TimedNetwork(load_codeformer(weights))
    image = load_image(image_name)
    run = run_ours if flow == "ours" else run_helper
    run(image, network, weights_dir)  # warm-up: detector load, first-call allocations
    totals, inside = [], []
    for _ in range(repeats):
        network.seconds = 0.0
        start = time.perf_counter()
        faces = run(image, network, weights_dir)
        totals.append(time.perf_counter() - start)
        inside.append(network.seconds)
    best = int(np.argmin(totals))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"faces": faces, "total": totals[best], "network": inside[best], "peak_mib": peak_mib}


def prepare(folder: Path) -> tuple[Path, Path]:
    """Recipe weights as a checkpoint, and a model folder with the detector and a random ParseNet."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe", SHARED / "reference" / "recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    arrays = recipe.recipe_state_dict(str(SHARED / "reference" / "manifest.json"))
    weights = folder / "codeformer.pth"
    torch.save({"params_ema": {k: torch.from_numpy(v).float() for k, v in arrays.items()}}, weights)
    weights_dir = folder / "facexlib"
    weights_dir.mkdir()
    shutil.copy(DETECTOR_WEIGHTS, weights_dir / DETECTOR_WEIGHTS.name)
    from facexlib.parsing.parsenet import ParseNet

    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), weights_dir / "parsing_parsenet.pth")
    return weights, weights_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", nargs=4, metavar=("FLOW", "IMAGE", "WEIGHTS", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        flow, image, weights, weights_dir = args.worker
        print(json.dumps(worker(flow, image, Path(weights), Path(weights_dir), args.repeats)))
        return
    if not DETECTOR_WEIGHTS.exists():
        sys.exit(f"{DETECTOR_WEIGHTS} is absent: this benchmark needs ../shared/testdata beside the project")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, detector {DETECTOR}")
    print(f"{'image':<17}{'flow':<17}{'faces':>6}{'total s':>10}{'network s':>11}{'outside s':>11}"
          f"{'outside %':>11}{'peak MiB':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory() as temporary:
        weights, weights_dir = prepare(Path(temporary))
        for image in IMAGES:
            results = {}
            for flow in FLOWS:
                command = [sys.executable, __file__, "--repeats", str(args.repeats), "--worker", flow, image]
                output = subprocess.run([*command, str(weights), str(weights_dir)], capture_output=True, text=True)
                if output.returncode != 0:
                    sys.exit(f"worker {flow} {image} failed:\n{output.stderr}")
                result = results[flow] = json.loads(output.stdout.strip().splitlines()[-1])
                outside = result["total"] - result["network"]
                print(
                    f"{image:<17}{flow:<17}{result['faces']:>6}{result['total']:>10.2f}{result['network']:>11.2f}"
                    f"{outside:>11.3f}{100 * outside / result['network']:>10.1f}%{result['peak_mib']:>10.0f}"
                )
            speedup = results["facexlib-helper"]["total"] / results["ours"]["total"]
            print(f"{'':<17}ours is {speedup:.2f}x the helper flow's speed")


if __name__ == "__main__":
    main()
