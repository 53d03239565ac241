"""Regions that limit where faces are looked for: boxes from other detectors, in any common form.

ComfyUI's core detection nodes give a ``BOUNDING_BOX`` (a dict ``{x, y, width, height}``) or
``BOUNDING_BOXES`` (a list of them, or one list per image); other tools give ``[x1, y1, x2,
y2]`` lists. All become, per image, a list of :data:`Box` in input pixels.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .detection import Detection, FaceDetector, detect_faces
from .errors import OptionError
from .flows import DetectionResize

# (x1, y1, x2, y2) in input pixels.
Box = tuple[float, float, float, float]
# Each side of a region grows by this share of its size when the detector looks inside it alone.
REGION_CONTEXT = 0.5


def boxes_per_image(value: object, image_count: int | None = None) -> list[list[Box]]:
    """Boxes for each of ``image_count`` images: one set for all, or one list per image. Without
    ``image_count`` the boxes are only checked (one list per image stands for one image)."""
    count = 1 if image_count is None else image_count
    if _is_box(value):
        return [[_as_box(value)]] * count
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise OptionError(f"regions must be a box, a list of boxes or one list per image; got {type(value).__name__}")
    items = list(value)
    if items and all(not _is_box(item) and isinstance(item, Sequence) for item in items):
        if image_count is not None and len(items) not in (1, image_count):
            raise OptionError(
                f"regions: {len(items)} lists of boxes for {image_count} images; give one list, or one per image"
            )
        per_image = [[_as_box(box) for box in boxes] for boxes in items]
        return per_image * count if len(per_image) == 1 else per_image
    return [[_as_box(box) for box in items]] * count


def inside(detection: Detection, boxes: list[Box]) -> bool:
    """Whether the face's box centre lies in one of ``boxes``."""
    x, y = detection.centre
    return any(x1 <= x <= x2 and y1 <= y <= y2 for x1, y1, x2, y2 in boxes)


def detect_in_region(
    detector: FaceDetector,
    rgb: np.ndarray,
    box: Box,
    detection_size: int | None,
    confidence: float,
    resize: DetectionResize,
) -> list[Detection]:
    """Faces found by looking at ``box`` (with some context) alone, in image pixels, centres inside it.

    A face too small for the whole-image pass (a 40-pixel face in a 4K frame) is large
    enough here: the region is seen at its own resolution, or scaled up to ``detection_size``.
    """
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = box
    grow_x, grow_y = (x2 - x1) * REGION_CONTEXT, (y2 - y1) * REGION_CONTEXT
    left, top = max(int(x1 - grow_x), 0), max(int(y1 - grow_y), 0)
    right, bottom = min(int(np.ceil(x2 + grow_x)), width), min(int(np.ceil(y2 + grow_y)), height)
    if right - left < 2 or bottom - top < 2:
        return []
    size = max(detection_size or 0, min(bottom - top, right - left))
    found = detect_faces(detector, np.ascontiguousarray(rgb[top:bottom, left:right]), size, confidence, resize)
    moved = [
        Detection(
            box=(d.box[0] + left, d.box[1] + top, d.box[2] + left, d.box[3] + top),
            score=d.score,
            landmarks=tuple((x + left, y + top) for x, y in d.landmarks),
        )
        for d in found
    ]
    return [d for d in moved if inside(d, [box])]


def _is_box(value: object) -> bool:
    if isinstance(value, Mapping):
        return True
    return isinstance(value, Sequence) and len(value) == 4 and all(_is_number(v) for v in value)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_box(value: object) -> Box:
    if isinstance(value, Mapping):
        if not all(_is_number(value.get(key)) for key in ("x", "y", "width", "height")):
            raise OptionError(f"regions: a BOUNDING_BOX needs numbers x, y, width, height; got {dict(value)!r}")
        x, y, w, h = _floats(value[key] for key in ("x", "y", "width", "height"))
        corners = (x, y, x + w, y + h)
    elif _is_box(value):
        corners = _floats(value)
    else:
        raise OptionError(f"regions: a box is [x1, y1, x2, y2] or {{x, y, width, height}}; got {value!r}")
    if not all(math.isfinite(v) for v in corners):
        raise OptionError(f"regions: box {value!r} holds NaN or infinite values; give pixel positions")
    x1, y1, x2, y2 = corners
    if x2 < x1 or y2 < y1:
        raise OptionError(
            f"regions: box {value!r} has x2 < x1 or y2 < y1 (a negative width or height); boxes are "
            "[x1, y1, x2, y2] or {x, y, width, height} with width and height at least 0"
        )
    return corners


def _floats(values: Iterable[numbers.Real]) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except OverflowError as error:
        raise OptionError(f"regions: a box position is too large for a pixel position ({error})") from error
