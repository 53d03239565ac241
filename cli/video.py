"""The command line's options for video inputs (``codeformer-restore clip.mp4 ...``)."""

from __future__ import annotations

import argparse

from ..batch.formats import VIDEO_SUFFIXES
from ..pipeline.option_help import VIDEO_HELP
from ..pipeline.video_options import VideoOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line's options for video inputs."""
    group = parser.add_argument_group("video inputs (" + ", ".join(VIDEO_SUFFIXES) + ")")
    defaults = VideoOptions()
    group.add_argument("--landmark-window", type=int, default=defaults.landmark_window,
                       help=VIDEO_HELP["landmark_window"])  # fmt: skip
    group.add_argument("--code-window", type=int, default=defaults.code_window,
                       help=VIDEO_HELP["code_window"])  # fmt: skip
    group.add_argument("--code-margin", type=float, default=defaults.code_margin,
                       help=VIDEO_HELP["code_margin"])  # fmt: skip
    group.add_argument("--feature-window", type=int, default=defaults.feature_window,
                       help=VIDEO_HELP["feature_window"])  # fmt: skip
    group.add_argument("--max-gap", type=int, default=defaults.max_gap, help=VIDEO_HELP["max_gap"])
    group.add_argument("--causal", action="store_true", help="no look-ahead (smoothing lags on steady motion)")


def video_options_from(args: argparse.Namespace) -> VideoOptions:
    tracks = tuple(args.face_indices) if args.face_indices else None
    return VideoOptions(
        landmark_window=args.landmark_window, code_window=args.code_window, code_margin=args.code_margin,
        feature_window=args.feature_window, max_gap=args.max_gap, causal=args.causal, tracks=tracks,
    )  # fmt: skip
