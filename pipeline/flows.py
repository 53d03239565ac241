"""The two face flows the pipeline reproduces, and the stage parameters in which they differ.

``codeformer``: CodeFormer's own ``facelib`` helper as the official command, the official
demo and facerestore_cf run it. ``facexlib``: facexlib's ``FaceRestoreHelper`` (GFPGAN,
AUTOMATIC1111). Both share every stage; a :class:`Flow` names what each stage does
differently, and the stages read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

CODEFORMER = "codeformer"
FACEXLIB = "facexlib"
FLOW_NAMES = (CODEFORMER, FACEXLIB)
DEFAULT_FLOW = CODEFORMER
MAX_ENLARGED_LONG_SIDE = 8192

DetectionResize = Literal["area-or-linear", "lanczos"]
Interpolation = Literal["linear", "lanczos"]
GreyRule = Literal["channel-variance", "channel-difference"]
EyeMeasure = Literal["codeformer", "distance"]


@dataclass(frozen=True)
class Flow:
    """Where a flow's stages differ.

    Attributes:
        name: "codeformer" or "facexlib".
        confidence: the detector's threshold unless the caller gives one.
        detection_resize: how the detector's copy is made: "area-or-linear" (INTER_AREA to
            shrink, INTER_LINEAR to enlarge) or "lanczos" (INTER_LANCZOS4).
        eye_measure: what the eye-distance threshold compares: "distance" (between the eyes)
            or "codeformer" (CodeFormer's helper reads the landmark row shifted by one: the
            gap between the eyes' heights and between right eye and nose in x).
        min_short_side: an image with a shorter short side is enlarged to it (INTER_LINEAR)
            before anything else; 0 never enlarges.
        background_interpolation: how the background is enlarged for ``upscale`` > 1 without
            an upsampler.
        parse_mask: whether faces are pasted through a ParseNet mask unless the caller says.
        parse_within_square: the parse mask is capped by the square soft mask and the face
            is the warped square (else the parse mask replaces the square, face unmasked).
        grey_rule: when an image counts as grey: "channel-variance" (the mean variance of the
            channel differences is at most 10) or "channel-difference" (no two channels of
            a pixel differ by more than 10 levels).
        grey_faces_take_input_colour: a grey image's restored face is made grey, then given
            the input crop's per-channel mean and spread (else it is pasted as its luma).
        rounds_restored_faces: restored crops are rounded to 8-bit levels before the paste.
    """

    name: str
    confidence: float
    detection_resize: DetectionResize
    eye_measure: EyeMeasure
    min_short_side: int
    background_interpolation: Interpolation
    parse_mask: bool
    parse_within_square: bool
    grey_rule: GreyRule
    grey_faces_take_input_colour: bool
    rounds_restored_faces: bool


FLOWS = {
    CODEFORMER: Flow(
        name=CODEFORMER,
        confidence=0.8,
        detection_resize="area-or-linear",
        eye_measure="codeformer",
        min_short_side=512,
        background_interpolation="linear",
        parse_mask=True,
        parse_within_square=True,
        grey_rule="channel-variance",
        grey_faces_take_input_colour=True,
        rounds_restored_faces=True,
    ),
    FACEXLIB: Flow(
        name=FACEXLIB,
        confidence=0.97,
        detection_resize="lanczos",
        eye_measure="distance",
        min_short_side=0,
        background_interpolation="lanczos",
        parse_mask=False,
        parse_within_square=False,
        grey_rule="channel-difference",
        grey_faces_take_input_colour=False,
        rounds_restored_faces=False,
    ),
}


def flow_named(name: str) -> Flow:
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; choose one of {', '.join(FLOW_NAMES)}")
    return FLOWS[name]


# Each flow's own detector confidence, as the node tooltip and --help say it: "codeformer 0.8, facexlib 0.97".
FLOW_CONFIDENCES = ", ".join(f"{name} {flow_named(name).confidence}" for name in FLOW_NAMES)


def working_scale(height: int, width: int, flow: Flow) -> float:
    """How much the flow enlarges an image before detection (1: not at all). Beyond the official
    flow, a long side is not enlarged past MAX_ENLARGED_LONG_SIDE (a 1x20000 strip would need
    gigabytes)."""
    short = min(height, width)
    if short >= flow.min_short_side:
        return 1.0
    return max(min(flow.min_short_side / short, MAX_ENLARGED_LONG_SIDE / max(height, width)), 1.0)


def cv2_interpolation(name: Interpolation) -> int:
    import cv2

    return {"linear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4}[name]


def grey_by_channel_variance(rgb: np.ndarray, threshold: float = 10.0) -> bool:
    """CodeFormer's test: the variances of the three channel differences average at most ``threshold``."""
    red, green, blue = (rgb[..., channel].astype(np.int16) for channel in range(3))
    return float((red - green).var() + (green - blue).var() + (blue - red).var()) / 3.0 <= threshold
