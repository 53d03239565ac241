"""Finding the faces to restore: detect, filter, select, align and crop."""

from __future__ import annotations

import numpy as np
import torch

from ..models.checkpoint import COLORIZATION, RESTORATION
from .detection import Detection, FaceDetector, load_detector
from .geometry import FACE_SIZE, crop_face, estimate_alignment
from .images import is_grey, to_uint8_rgb
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

    Faces come image by image, left to right (then top to bottom) within an image.
    """
    detector = options.detector
    if isinstance(detector, str):
        detector = load_detector(detector, device, options.weights_dir)
    task = options.task or RESTORATION
    faces: list[FaceInfo] = []
    crops: list[np.ndarray] = []
    for index, picture in enumerate(pictures):
        rgb = to_uint8_rgb(picture)
        grey = is_grey(picture, rgb)
        found = detector.detect(rgb, options.detection_size, options.confidence)
        if options.regions is not None:
            found = _within_regions(found, options.regions[index], detector, rgb, options)
        detections = [
            d
            for d in found
            if d.eye_distance >= options.eye_distance_threshold
            and _inside_selection_mask(d, options.selection_masks, index, picture)
        ]
        if len(detections) > MAX_FACES_PER_IMAGE:
            raise ValueError(
                f"image {index}: the detector found {len(detections)} faces, over the limit of "
                f"{MAX_FACES_PER_IMAGE}; raise the confidence (now {options.confidence}) or check the detector weights"
            )
        for detection in select_faces(detections, options, picture.shape[0], picture.shape[1]):
            affine = estimate_alignment(np.array(detection.landmarks))
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
                    affine=tuple(tuple(float(v) for v in row) for row in affine),
                    grey=grey and task != COLORIZATION,
                    detection_rank=detections.index(detection),
                )
            )
    stacked = np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    return faces, stacked


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
    found: list[Detection], boxes: list[Box], detector: FaceDetector, rgb: np.ndarray, options: RestoreOptions
) -> list[Detection]:
    """The faces whose centre lies in one of ``boxes``; a box where the whole-image pass found none
    is searched on its own (its faces then follow, in the detector's order)."""
    kept = [d for d in found if inside(d, boxes)]
    for box in boxes:
        if not any(inside(d, [box]) for d in kept):
            kept += detect_in_region(detector, rgb, box, options.detection_size, options.confidence)
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
