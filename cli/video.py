"""The command line's options for video inputs (``codeformer-restore clip.mp4 ...``)."""

from __future__ import annotations

import argparse

from ..batch.formats import VIDEO_SUFFIXES
from ..pipeline.video_options import VideoOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line's options for video inputs."""
    group = parser.add_argument_group("video inputs (" + ", ".join(VIDEO_SUFFIXES) + ")")
    defaults = VideoOptions()
    group.add_argument("--landmark-window", type=int, default=defaults.landmark_window,
                       help="frames whose landmarks are averaged per face track (1: none)")  # fmt: skip
    group.add_argument("--code-window", type=int, default=defaults.code_window,
                       help="frames whose logits are averaged per face track before the codes are chosen")  # fmt: skip
    group.add_argument("--code-margin", type=float, default=defaults.code_margin,
                       help="logit lead a code needs to replace the one of the previous frame (0: argmax)")  # fmt: skip
    group.add_argument("--feature-window", type=int, default=defaults.feature_window,
                       help="frames whose encoder features (what the fidelity blends back in) are averaged per face "
                       "track: steadier against noise, softer on fast changes (1: none)")  # fmt: skip
    group.add_argument("--max-gap", type=int, default=defaults.max_gap, help="missed frames filled in per track")
    group.add_argument("--causal", action="store_true", help="no look-ahead (smoothing lags on steady motion)")


def video_options_from(args: argparse.Namespace) -> VideoOptions:
    tracks = tuple(args.face_indices) if args.face_indices else None
    return VideoOptions(
        landmark_window=args.landmark_window, code_window=args.code_window, code_margin=args.code_margin,
        feature_window=args.feature_window, max_gap=args.max_gap, causal=args.causal, tracks=tracks,
    )  # fmt: skip
