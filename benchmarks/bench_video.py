"""Video steadiness: landmark jitter, code changes and flicker, frame by frame against tracked and averaged.

A synthetic clip is made from group_four.png with a known motion (a slow sub-pixel pan and
zoom) and per-frame degradation (noise, JPEG re-encoding), so the true position of every
landmark is known. One face (track 0) is restored with the recipe-weight network, once
frame by frame (landmark_window = code_window = 1, code_margin = 0) and once steadied
(the defaults).

- landmark offset, wander and jitter: the landmarks used to align the face minus the true
  (moved) ones (the residual). Offset is its part that stays the same in every frame (the
  detector's bias on this face: it does not move the face, and no smoothing changes it);
  wander the RMS of the rest (slow drifts included); jitter the RMS change of the residual
  from one frame to the next, over the square root of 2 (for independent errors, their
  size): the shaking one sees. Raw detections against smoothed ones;
- code changes: tokens (of 256) whose code differs from the previous frame's;
- flicker: mean absolute difference (levels) between consecutive outputs over the face,
  after each output is warped back by its known motion.

``--streaming FRAMES`` also runs the command line on a faceless 720p clip of that many
frames and on one of a tenth as many, and prints each run's peak RSS: memory should not
grow with the length.

    .venv/bin/python benchmarks/bench_video.py [--frames 24] [--streaming 1000]
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scenes import SHARED, read_rgb, recipe_checkpoint

PAN_PER_FRAME = 0.37  # pixels
ZOOM_PER_FRAME = 0.0015
NOISE_LEVELS = 3.0
JPEG_QUALITY = 75
TRACK = 0


def true_motion(frame: int, centre: tuple[float, float]) -> np.ndarray:
    """2x3 affine taking base pixels to frame ``frame``'s pixels."""
    scale = 1 + ZOOM_PER_FRAME * frame
    cx, cy = centre
    return np.array([[scale, 0, cx - scale * cx + PAN_PER_FRAME * frame], [0, scale, cy - scale * cy]])


def make_clip(frames: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Degraded frames and their true motions."""
    import cv2
    from PIL import Image

    base = read_rgb("group_four.png")
    height, width = base.shape[:2]
    rng = np.random.default_rng(seed)
    clip, motions = [], []
    for index in range(frames):
        motion = true_motion(index, (width / 2, height / 2))
        moved = cv2.warpAffine(base, motion, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noisy = np.clip(moved + rng.normal(0, NOISE_LEVELS, moved.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        clip.append(np.array(Image.open(buffer)))
        motions.append(motion)
    return clip, motions


class CodeRecorder(torch.nn.Module):
    """Wraps a CodeFormer and records the codes each face was restored with."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.codes: list[torch.Tensor] = []

    def forward(self, x, w=0, adain=False):
        out, logits, lq_feat = self.network(x, w=w, adain=adain)
        self.codes += list(logits.argmax(dim=2))
        return out, logits, lq_feat

    def encode(self, x):
        return self.network.encode(x)

    def decode(self, encoded, codes, w, adain):
        self.codes += list(codes)
        return self.network.decode(encoded, codes, w, adain)


def run_mode(clip, network, options, video) -> dict:
    from codeformer_nodes.pipeline.video import restore_video

    recorder = CodeRecorder(network)
    started = time.perf_counter()
    results = list(restore_video(clip, recorder, options, video))
    return {"results": results, "codes": recorder.codes, "seconds": time.perf_counter() - started}


def measure(clip, motions, base_landmarks, run) -> dict[str, float]:
    import cv2

    height, width = clip[0].shape[:2]
    errors, flicker, previous = [], [], None  # one entry per frame, in order
    for motion, result in zip(motions, run["results"], strict=True):
        face = next(face for face in result.faces if face.track_id == TRACK)
        truth = np.c_[base_landmarks, np.ones(5)] @ motion.T
        errors.append(np.array(face.landmarks) - truth)
        back = cv2.warpAffine(result.images[0].numpy() * 255, cv2.invertAffineTransform(motion), (width, height))
        if previous is not None:
            flicker.append(np.abs(back - previous)[face_region(base_landmarks, height, width)].mean())
        previous = back
    codes = torch.stack(run["codes"])
    changes = (codes[1:] != codes[:-1]).sum(dim=1).float()
    residuals = np.stack(errors)  # (frames, 5, 2): landmarks found minus the true ones
    offset = residuals.mean(axis=0)  # the detector's steady bias on this face, the same in every frame
    return {
        "offset_px": float(np.linalg.norm(offset, axis=1).mean()),
        "wander_px": float(np.sqrt(np.mean(np.sum((residuals - offset) ** 2, axis=2)))),
        "jitter_px": float(np.sqrt(np.mean(np.sum(np.diff(residuals, axis=0) ** 2, axis=2)) / 2)),
        "code_changes": float(changes.mean()),
        "flicker": float(np.mean(flicker)),
        "seconds_per_frame": run["seconds"] / len(clip),
    }


def face_region(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """The face's area in base pixels: a box around its landmarks, grown by half."""
    (x1, y1), (x2, y2) = landmarks.min(axis=0), landmarks.max(axis=0)
    grow = max(x2 - x1, y2 - y1) * 0.5
    mask = np.zeros((height, width), bool)
    mask[int(max(y1 - grow, 0)) : int(y2 + grow), int(max(x1 - grow, 0)) : int(x2 + grow)] = True
    return mask


def steadiness(frames: int) -> None:
    from codeformer_nodes import RestoreOptions, load_codeformer
    from codeformer_nodes.pipeline.detection import detect_faces, load_detector
    from codeformer_nodes.pipeline.video import VideoOptions

    weights_dir = SHARED / "testdata" / "weights"
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = recipe_checkpoint(Path(folder))
        network = load_codeformer(checkpoint, precision="fp32")
    clip, motions = make_clip(frames)
    detector = load_detector("retinaface_mobile0.25", torch.device("cpu"), weights_dir)
    base = min(detect_faces(detector, read_rgb("group_four.png"), 640, 0.97, "lanczos"), key=lambda d: d.centre[0])
    base_landmarks = np.array(base.landmarks)
    options = RestoreOptions(detector=detector, face_selection=[TRACK])
    modes = {
        "frame by frame": VideoOptions(landmark_window=1, code_window=1, code_margin=0, max_gap=0),
        "steadied (defaults)": VideoOptions(),
    }
    print(f"clip: {frames} frames of group_four.png (1204x645), pan {PAN_PER_FRAME} px/frame, "
          f"zoom {ZOOM_PER_FRAME}/frame, noise sigma {NOISE_LEVELS} levels, JPEG q{JPEG_QUALITY}")  # fmt: skip
    print(f"restored: face track {TRACK}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, recipe weights")
    print(f"{'mode':<22}{'offset px':>11}{'wander px':>11}{'jitter px':>11}{'codes changed':>15}{'flicker':>9}"
          f"{'s/frame':>9}")  # fmt: skip
    measured = {}
    for name, video in modes.items():
        row = measured[name] = measure(clip, motions, base_landmarks, run_mode(clip, network, options, video))
        print(f"{name:<22}{row['offset_px']:>11.3f}{row['wander_px']:>11.3f}{row['jitter_px']:>11.3f}"
              f"{row['code_changes']:>15.2f}"
              f"{row['flicker']:>9.3f}{row['seconds_per_frame']:>9.2f}")  # fmt: skip
    plain, steady = measured["frame by frame"], measured["steadied (defaults)"]
    print(f"flicker ratio {steady['flicker'] / plain['flicker']:.2f} (target <= 0.5); code changes "
          f"{plain['code_changes'] / max(steady['code_changes'], 1e-9):.1f}x fewer (target >= 5x); landmark jitter "
          f"{plain['jitter_px']:.3f} -> {steady['jitter_px']:.3f} px (target <= 0.5)")  # fmt: skip


def streaming(frames: int) -> None:
    """Peak RSS of the command line on a faceless 720p clip, long and short."""
    import av

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = recipe_checkpoint(Path(folder))
        for count in (max(frames // 10, 1), frames):
            clip = Path(folder) / f"clip{count}.mp4"
            with av.open(str(clip), "w") as out:
                stream = out.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
                for index in range(count):
                    pixels = np.full((720, 1280, 3), (index * 7) % 200 + 30, np.uint8)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            command = [sys.executable, __file__, "--cli-peak", str(clip), str(Path(folder) / f"out{count}"),
                       str(checkpoint)]  # fmt: skip
            started = time.perf_counter()
            output = subprocess.run(command, capture_output=True, text=True, check=True)
            print(f"{count:>5} frames 1280x720 through codeformer-restore: {output.stdout.strip()} "
                  f"({time.perf_counter() - started:.0f} s)")  # fmt: skip


def cli_peak(clip: str, out: str, checkpoint: str) -> None:
    from codeformer_nodes.cli.restore import main

    weights = str(SHARED / "testdata" / "weights")
    status = main([clip, "-o", out, "--model", checkpoint, "--detector", "retinaface_mobile0.25",
                   "--weights-dir", weights])  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"exit {status}, peak RSS {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames of the steadiness clip (0: skip)")
    parser.add_argument("--streaming", type=int, default=0, help="frames of the long faceless clip (0: skip)")
    parser.add_argument("--cli-peak", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_peak:
        cli_peak(*args.cli_peak)
        return
    if args.frames:
        steadiness(args.frames)
    if args.streaming:
        streaming(args.streaming)


if __name__ == "__main__":
    main()
