"""Video steadiness on several kinds of clip: flicker, code changes and landmark lag, against frame by frame.

Each kind of clip is made from a real photo (one face in view) with a known motion and a
known degradation, so the true place of every landmark is known (``KINDS``): a still camera
with fresh sensor noise and one faceless grey frame in the middle, a slow pan and zoom with
JPEG, fast motion, a cut to another shot, a face that leaves and comes back, heavy
compression. The face is restored with the recipe-weight network frame by frame
(landmark_window = code_window = feature_window = 1, code_margin = 0, the reference of every
ratio) and steadied (the defaults, with ``--feature-windows`` choosing the feature windows
tried), in the same run.

- flicker: mean absolute difference (levels) between consecutive outputs inside the face's
  square, after each output is warped back by its known motion; only pairs of frames that
  both show the face, in the same shot. ratio: against frame by frame (target <= 0.5);
- codes changed: tokens (of 256) whose code differs from the previous frame's;
- jitter: the RMS change from one frame to the next of the landmarks used minus the true
  ones, over the square root of 2 (for independent errors, their size): the shaking one sees;
- lag: the length of the mean shift of the landmarks used from the raw detections (those of
  frame by frame), averaged over the five: smoothing that trails steady motion shows here,
  noise averages out (target <= 0.5 px).

Runs that place a face alike share its encoding (the network's encoder and transformer run
once per distinct crop), so the later rows of a kind cost only the generator.

``--streaming FRAMES`` also runs the command line on a faceless 720p clip of that many
frames and on one of a tenth as many, and prints each run's peak RSS: memory should not
grow with the length.

    .venv/bin/python benchmarks/bench_video.py [--kinds still,pan] [--frames 12] [--feature-windows 1,5]
        [--streaming 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scenes import SHARED, read_rgb, recipe_checkpoint

GREY = 128


@dataclass(frozen=True)
class Shot:
    """A still view with one face, and where the detector finds that face's landmarks in it."""

    pixels: np.ndarray
    landmarks: np.ndarray  # (5, 2)


@dataclass(frozen=True)
class FramePlan:
    """One frame of a clip: its shot, the known motion from the shot's pixels, whether the face shows."""

    shot: int
    motion: np.ndarray  # 2x3 affine, shot pixels -> frame pixels
    face_shown: bool = True


@dataclass(frozen=True)
class Clip:
    frames: list[np.ndarray]
    plans: list[FramePlan]


def shots(detector) -> list[Shot]:
    """group_four.png cut around its second face (320x360), and group_small.jpg cut around its second face and
    enlarged 2.5 times (375x325): each shows one face only."""
    import cv2

    from codeformer_nodes.pipeline.detection import detect_faces

    four = np.ascontiguousarray(read_rgb("group_four.png")[0:360, 300:620])
    small = cv2.resize(read_rgb("group_small.jpg")[40:170, 120:270], (375, 325), interpolation=cv2.INTER_CUBIC)
    found = []
    for pixels in (four, small):
        (face,) = detect_faces(detector, pixels, 640, 0.97, "lanczos")
        found.append(Shot(pixels, np.array(face.landmarks)))
    return found


def motion(shift: tuple[float, float] = (0, 0), zoom: float = 1.0, degrees: float = 0.0, centre=(160, 180)):
    """2x3 affine: rotate and zoom about ``centre``, then shift."""
    import cv2

    affine = cv2.getRotationMatrix2D(centre, degrees, zoom)
    affine[:, 2] += shift
    return affine


STILL = motion()


def degrade(rgb: np.ndarray, rng: np.random.Generator, noise: float, jpeg: int | None) -> np.ndarray:
    """Fresh Gaussian noise of ``noise`` levels, then (optionally) JPEG at quality ``jpeg``."""
    from PIL import Image

    noisy = np.clip(rgb + rng.normal(0, noise, rgb.shape), 0, 255).astype(np.uint8)
    if jpeg is None:
        return noisy
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=jpeg)
    return np.array(Image.open(buffer))


def render(scenes: list[Shot], plans: list[FramePlan], noise: float, jpeg: int | None, seed: int = 0) -> Clip:
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for plan in plans:
        shot = scenes[plan.shot]
        height, width = shot.pixels.shape[:2]
        moved = cv2.warpAffine(shot.pixels, plan.motion, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        if not plan.face_shown:
            (x1, y1), (x2, y2) = face_square(np.c_[shot.landmarks, np.ones(5)] @ plan.motion.T)
            moved[max(y1, 0) : y2, max(x1, 0) : x2] = GREY  # covered: a hand, a passer-by
        frames.append(degrade(moved, rng, noise, jpeg))
    return Clip(frames, plans)


def still_with_grey(scenes: list[Shot], count: int) -> Clip:
    """The issue's clip: a still camera, sensor noise of sigma 2 levels, one faceless grey frame (added) in the
    middle."""
    clip = render(scenes, [FramePlan(0, STILL) for _ in range(count + 1)], noise=2.0, jpeg=None)
    middle = count // 2
    clip.frames[middle] = np.full_like(clip.frames[middle], GREY)
    clip.plans[middle] = FramePlan(0, STILL, face_shown=False)
    return clip


def slow_pan(scenes: list[Shot], count: int) -> Clip:
    """A slow pan (0.37 px a frame) and zoom (0.15% a frame), noise sigma 3, JPEG q75."""
    plans = [FramePlan(0, motion((0.37 * t, 0), 1 + 0.0015 * t)) for t in range(count)]
    return render(scenes, plans, noise=3.0, jpeg=75)


def fast_motion(scenes: list[Shot], count: int) -> Clip:
    """A fast pan (5 px a frame, about 4% of the face) with a turn of 0.5 degrees a frame, noise sigma 2."""
    plans = [FramePlan(0, motion((5.0 * t, 0), degrees=0.5 * t)) for t in range(count)]
    return render(scenes, plans, noise=2.0, jpeg=None)


def cut(scenes: list[Shot], count: int) -> Clip:
    """Half the clip on one face, then a cut to another shot and face; still camera, noise sigma 2."""
    plans = [FramePlan(0 if t < count // 2 else 1, STILL) for t in range(count)]
    return render(scenes, plans, noise=2.0, jpeg=None)


def leaves_and_returns(scenes: list[Shot], count: int) -> Clip:
    """The face covered for 5 frames (added) in the middle, longer than the gap filled by default; noise sigma 2."""
    hidden = range(count // 2, count // 2 + 5)
    plans = [FramePlan(0, STILL, face_shown=t not in hidden) for t in range(count + 5)]
    return render(scenes, plans, noise=2.0, jpeg=None)


def compressed(scenes: list[Shot], count: int) -> Clip:
    """A still camera, noise sigma 2, then JPEG q30: blocks and ringing that change with every frame."""
    return render(scenes, [FramePlan(0, STILL) for _ in range(count)], noise=2.0, jpeg=30)


KINDS: dict[str, Callable[[list[Shot], int], Clip]] = {
    "still": still_with_grey,
    "pan": slow_pan,
    "fast": fast_motion,
    "cut": cut,
    "leave": leaves_and_returns,
    "jpeg": compressed,
}
STEADY_MOTION = ("pan", "fast")  # where a lag would show


class RecordingNetwork(torch.nn.Module):
    """Wraps a CodeFormer: records the codes each face was restored with, and encodes each distinct crop once."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.codes: list[torch.Tensor] = []
        self.encodings: dict[str, object] = {}

    def forward(self, x, w=0, adain=False):
        out, logits, lq_feat = self.network(x, w=w, adain=adain)
        self.codes += list(logits.argmax(dim=2))
        return out, logits, lq_feat

    def encode(self, x):
        key = hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest()
        if key not in self.encodings:
            self.encodings[key] = self.network.encode(x)
        return self.encodings[key]

    def decode(self, encoded, codes, w, adain):
        self.codes += list(codes)
        return self.network.decode(encoded, codes, w, adain)


def face_square(landmarks: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """A box around the landmarks, grown by half their extent on every side."""
    (x1, y1), (x2, y2) = landmarks.min(axis=0), landmarks.max(axis=0)
    grow = max(x2 - x1, y2 - y1) * 0.5
    return (int(x1 - grow), int(y1 - grow)), (int(x2 + grow), int(y2 + grow))


def restore(clip: Clip, scenes: list[Shot], network: RecordingNetwork, options, video) -> dict:
    """Per frame: the restored frame warped back into its shot's pixels, the landmarks used on the face and its
    codes (None where the face is not shown or not restored)."""
    import cv2

    from codeformer_nodes.pipeline.video import restore_video

    network.codes = []
    started = time.perf_counter()
    results = list(restore_video(clip.frames, network, options, video))
    seconds = time.perf_counter() - started
    assert all(len(result.faces) <= 1 for result in results), "one face a frame at most"
    codes = iter(network.codes)
    backs, landmarks, face_codes = [], [], []
    for plan, result in zip(clip.plans, results, strict=True):
        height, width = scenes[plan.shot].pixels.shape[:2]
        image = result.images[0].numpy() * 255
        backs.append(cv2.warpAffine(image, cv2.invertAffineTransform(plan.motion), (width, height)))
        face = result.faces[0] if result.faces else None
        landmarks.append(np.array(face.landmarks) if face and plan.face_shown else None)
        face_codes.append(next(codes) if face else None)
        if not plan.face_shown:
            face_codes[-1] = None
    return {"backs": backs, "landmarks": landmarks, "codes": face_codes, "seconds": seconds}


def measure(clip: Clip, scenes: list[Shot], run: dict, plain: dict) -> dict[str, float]:
    flicker, changes, steps, shifts = [], [], [], []
    truths = [np.c_[scenes[p.shot].landmarks, np.ones(5)] @ p.motion.T for p in clip.plans]
    for t, plan in enumerate(clip.plans):
        here = run["landmarks"][t]
        if here is not None and plain["landmarks"][t] is not None:
            shifts.append(here - plain["landmarks"][t])
        if t == 0 or clip.plans[t - 1].shot != plan.shot or not (plan.face_shown and clip.plans[t - 1].face_shown):
            continue
        (x1, y1), (x2, y2) = face_square(scenes[plan.shot].landmarks)
        square = (slice(max(y1, 0), y2), slice(max(x1, 0), x2))
        flicker.append(np.abs(run["backs"][t][square] - run["backs"][t - 1][square]).mean())
        if run["codes"][t] is not None and run["codes"][t - 1] is not None:
            changes.append(float((run["codes"][t] != run["codes"][t - 1]).sum()))
        before = run["landmarks"][t - 1]
        if here is not None and before is not None:
            steps.append((here - truths[t]) - (before - truths[t - 1]))
    return {
        "flicker": float(np.mean(flicker)),
        "codes_changed": float(np.mean(changes)) if changes else float("nan"),
        "jitter_px": float(np.sqrt(np.mean(np.sum(np.square(steps), axis=2)) / 2)),
        "lag_px": float(np.linalg.norm(np.mean(shifts, axis=0), axis=1).mean()),
        "seconds_per_frame": run["seconds"] / len(clip.frames),
    }


def steadiness(kinds: list[str], frames: int, feature_windows: list[int]) -> None:
    from codeformer_nodes import RestoreOptions, load_codeformer
    from codeformer_nodes.pipeline.detection import load_detector
    from codeformer_nodes.pipeline.video import VideoOptions

    weights_dir = SHARED / "testdata" / "weights"
    with tempfile.TemporaryDirectory() as folder:
        network = load_codeformer(recipe_checkpoint(Path(folder)), precision="fp32")
    detector = load_detector("retinaface_mobile0.25", torch.device("cpu"), weights_dir)
    scenes = shots(detector)
    options = RestoreOptions(detector=detector, parse_mask=False)
    modes = {"frame by frame": VideoOptions(landmark_window=1, code_window=1, code_margin=0, feature_window=1,
                                            max_gap=0)}  # fmt: skip
    modes |= {f"steadied, feature_window {size}": VideoOptions(feature_window=size) for size in feature_windows}
    print(f"{frames}-frame clips, one face each (group_four.png 320x360, after the cut group_small.jpg x2.5)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, recipe weights, w 0.5, "
          f"no parse mask; steadied: {VideoOptions()} but the feature window")  # fmt: skip
    print(f"{'kind':<7}{'mode':<31}{'flicker':>9}{'ratio':>7}{'codes changed':>15}{'jitter px':>11}{'lag px':>8}"
          f"{'s/frame':>9}")  # fmt: skip
    worst: dict[str, tuple[float, str]] = {}
    for kind in kinds:
        clip = KINDS[kind](scenes, frames)
        recorder = RecordingNetwork(network)  # encodings shared by this clip's runs only
        runs = {name: restore(clip, scenes, recorder, options, video) for name, video in modes.items()}
        plain = runs["frame by frame"]
        reference = measure(clip, scenes, plain, plain)["flicker"]
        for name, run in runs.items():
            row = measure(clip, scenes, run, plain)
            ratio = row["flicker"] / reference
            if name != "frame by frame":
                worst[name] = max(worst.get(name, (0.0, "")), (ratio, kind))
            print(f"{kind:<7}{name:<31}{row['flicker']:>9.3f}{ratio:>7.2f}{row['codes_changed']:>15.2f}"
                  f"{row['jitter_px']:>11.3f}{row['lag_px']:>8.3f}{row['seconds_per_frame']:>9.2f}")  # fmt: skip
    for name, (ratio, kind) in worst.items():
        print(f"{name}: worst flicker ratio {ratio:.2f} ({kind}; target <= 0.5)")


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
    parser.add_argument("--frames", type=int, default=12,
                        help="frames showing the face in each kind of clip (0: skip)")  # fmt: skip
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"kinds of clip, of {', '.join(KINDS)}")
    parser.add_argument("--feature-windows", default="1,5", help="feature windows of the steadied runs")
    parser.add_argument("--streaming", type=int, default=0, help="frames of the long faceless clip (0: skip)")
    parser.add_argument("--cli-peak", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_peak:
        cli_peak(*args.cli_peak)
        return
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}: choose among {', '.join(KINDS)}")
    if args.frames:
        steadiness(kinds, args.frames, [int(size) for size in args.feature_windows.split(",")])
    if args.streaming:
        streaming(args.streaming)


if __name__ == "__main__":
    main()
