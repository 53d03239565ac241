"""Finding the faces to restore: detect, filter, select, align and crop."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ..models.checkpoint import COLORIZATION, RESTORATION
from .detection import Detection, FaceDetector, detect_faces, load_detector
from .flows import working_scale
from .geometry import (
    FACE_SIZE,
    affine_in_input_pixels,
    crop_face,
    estimate_alignment,
    from_input_pixels,
    to_input_pixels,
)
from .images import enlarged, image_is_grey, to_uint8_rgb
from .options import RestoreOptions
from .regions import Box, detect_in_region, inside
from .results import FaceInfo
from .tasks import task_fidelity

# More detections than this in one image mean a wrong threshold or broken detector weights;
# cropping them all would exhaust memory (each crop is 0.75 MiB).
MAX_FACES_PER_IMAGE = 1000


def find_faces(
    pictures: list[torch.Tensor], options: RestoreOptions, device: torch.device
) -> tuple[list[FaceInfo], np.ndarray]:
    """Detect, select and align faces; returns their info and (N, 512, 512, 3) uint8 crops.

    Faces come image by image, left to right (then top to bottom) within an image. Where the
    flow enlarges a small image first, faces are found and cropped in the enlarged image, as
    that flow does, and reported in input pixels.
    """
    detector = options.detector
    if isinstance(detector, str):
        detector = load_detector(detector, device, options.weights_dir)
    flow = options.rules
    task = options.task or RESTORATION
    faces: list[FaceInfo] = []
    crops: list[np.ndarray] = []
    for index, picture in enumerate(pictures):
        rgb = to_uint8_rgb(picture)
        grey = image_is_grey(picture, rgb, flow)
        scale = working_scale(picture.shape[0], picture.shape[1], flow)
        if scale != 1.0:
            rgb = to_uint8_rgb(enlarged(picture, scale))
        found = [(in_input_pixels(d, scale), d) for d in detect_in_image(detector, rgb, options)]
        if options.regions is not None:
            found = _within_regions(found, options.regions[index], detector, rgb, scale, options)
        found = [pair for pair in found if _inside_selection_mask(pair[0], options.selection_masks, index, picture)]
        if len(found) > MAX_FACES_PER_IMAGE:
            raise ValueError(
                f"image {index}: the detector found {len(found)} faces, over the limit of {MAX_FACES_PER_IMAGE}; "
                f"raise the confidence (now {options.detection_confidence}) or check the detector weights"
            )
        detections = [detection for detection, _ in found]
        for detection in select_faces(detections, options, picture.shape[0], picture.shape[1]):
            rank = detections.index(detection)
            affine = estimate_alignment(np.array(found[rank][1].landmarks))  # aligned where it was found
            if affine is None:
                continue
            crops.append(crop_face(rgb, affine))
            faces.append(
                FaceInfo(
                    image_index=index,
                    box=detection.box,
                    score=detection.score,
                    landmarks=detection.landmarks,
                    face_size=detection.size,
                    fidelity=task_fidelity(task, options.fidelity_for(detection.size)),
                    affine=tuple(tuple(float(v) for v in row) for row in affine_in_input_pixels(affine, scale)),
                    grey=grey and task != COLORIZATION,
                    detection_rank=rank,
                )
            )
    stacked = np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    return faces, stacked


def detect_in_image(detector: FaceDetector, rgb: np.ndarray, options: RestoreOptions) -> list[Detection]:
    """The faces the detector finds in ``rgb`` (in its pixels) whose eyes pass the flow's threshold."""
    found = detect_faces(
        detector, rgb, options.detection_size, options.detection_confidence, options.rules.detection_resize
    )
    return [d for d in found if _eyes_pass(d, options)]


def _eyes_pass(detection: Detection, options: RestoreOptions) -> bool:
    """The flow's eye-distance rule (side views and tiny faces fail it)."""
    return detection.eye_measure(options.rules.eye_measure) >= options.eye_distance_threshold


def in_input_pixels(detection: Detection, scale: float) -> Detection:
    """A detection in an image enlarged ``scale`` times, in the input's pixels."""
    return detection if scale == 1.0 else detection.mapped(partial(to_input_pixels, scale=scale))


def select_faces(detections: list[Detection], options: RestoreOptions, height: int, width: int) -> list[Detection]:
    """Order faces left to right (then top to bottom) and apply the size filters and selection.

    ``max_faces`` keeps the largest faces; an index list counts the faces left after the
    size filters, and indices past the end are skipped (images of a batch differ).
    """
    ordered = sorted(detections, key=lambda d: (d.centre[0], d.centre[1]))
    kept = [
        d
        for d in ordered
        if d.size >= options.min_face_size and (options.max_face_size is None or d.size <= options.max_face_size)
    ]
    if options.max_faces is not None and len(kept) > options.max_faces:
        largest = sorted(kept, key=lambda d: d.size, reverse=True)[: options.max_faces]
        kept = [d for d in kept if d in largest]
    selection = options.face_selection
    if not kept or selection == "all":
        return kept
    if selection == "largest":
        return [max(kept, key=lambda d: _clipped_area(d, height, width))]
    if selection == "center":
        return [min(kept, key=lambda d: np.hypot(d.centre[0] - width / 2, d.centre[1] - height / 2))]
    return [kept[i] for i in selection if 0 <= i < len(kept)]


def _within_regions(
    found: list[tuple[Detection, Detection]],
    boxes: list[Box],
    detector: FaceDetector,
    rgb: np.ndarray,
    scale: float,
    options: RestoreOptions,
) -> list[tuple[Detection, Detection]]:
    """The faces (in input and in ``rgb``'s pixels) whose centre lies in one of ``boxes`` (input pixels);
    a box where the whole-image pass found none is searched on its own (its faces then follow, in
    the detector's order)."""
    kept = [pair for pair in found if inside(pair[0], boxes)]
    for box in boxes:
        if any(inside(detection, [box]) for detection, _ in kept):
            continue
        region = tuple(float(v) for v in from_input_pixels(np.array(box, np.float64), scale))
        for working in detect_in_region(
            detector, rgb, region, options.detection_size, options.detection_confidence, options.rules.detection_resize
        ):
            if _eyes_pass(working, options):
                kept.append((in_input_pixels(working, scale), working))
    return kept


def _inside_selection_mask(detection: Detection, masks: torch.Tensor | None, index: int, picture: torch.Tensor) -> bool:
    """Whether the face's box centre lies where the image's selection mask is >= 0.5."""
    if masks is None:
        return True
    mask = masks[index if masks.shape[0] > 1 else 0]
    x, y = detection.centre
    row = min(max(int(y * mask.shape[0] / picture.shape[0]), 0), mask.shape[0] - 1)
    column = min(max(int(x * mask.shape[1] / picture.shape[1]), 0), mask.shape[1] - 1)
    return bool(mask[row, column] >= 0.5)


def _clipped_area(detection: Detection, height: int, width: int) -> float:
    x1, y1, x2, y2 = detection.box
    return (min(max(x2, 0), width) - min(max(x1, 0), width)) * (min(max(y2, 0), height) - min(max(y1, 0), height))
