"""Face detection with facexlib's RetinaFace, as the official CodeFormer inference runs it.

The detector sees a uint8 copy of the image resized (LANCZOS4) so that its short side is
``detection_size``; boxes and landmarks are mapped back to input pixels. facexlib and
OpenCV are imported on first use only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..models.auxiliary import DETECTOR_WEIGHTS, check_auxiliary_weights, find_auxiliary_weights

DETECTORS = tuple(DETECTOR_WEIGHTS)
DEFAULT_DETECTOR = "retinaface_resnet50"
DEFAULT_DETECTION_SIZE = 640
# The official flow keeps faces the detector scores above this.
DEFAULT_CONFIDENCE = 0.97
# Long side of the detection copy is capped so that a 1:20 panorama never allocates gigabytes.
MAX_DETECTION_LONG_SIDE = 4096
NMS_THRESHOLD = 0.4


@dataclass(frozen=True)
class Detection:
    """One face in input-image pixels: box (x1, y1, x2, y2), score, 5 landmarks (x, y).

    Landmarks are left eye, right eye, nose, left and right mouth corner.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def size(self) -> float:
        """Face size: the larger side of the box."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def eye_distance(self) -> float:
        (left_x, left_y), (right_x, right_y) = self.landmarks[:2]
        return float(np.hypot(left_x - right_x, left_y - right_y))


class FaceDetector(Protocol):
    """What the pipeline asks of a face detector (``RestoreOptions.detector`` may be one)."""

    def detect(self, image: np.ndarray, detection_size: int | None, confidence: float) -> list[Detection]:
        """Faces of an (H, W, 3) uint8 RGB image in its pixels, in the detector's order (best first)."""
        ...


class RetinaFaceDetector:
    """facexlib's RetinaFace, safe to share between threads.

    facexlib keeps each call's input scale on the module itself, so two threads detecting
    at once in images of different sizes would get each other's boxes; a lock serialises
    calls.
    """

    def __init__(self, network: torch.nn.Module, name: str) -> None:
        self.network = network
        self.name = name
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, detection_size: int | None, confidence: float) -> list[Detection]:
        import cv2

        height, width = image.shape[:2]
        scale = detection_scale(height, width, detection_size)
        bgr = np.ascontiguousarray(image[..., ::-1])
        if scale != 1.0:
            size = (max(int(width / scale), 1), max(int(height / scale), 1))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4)
        with self._lock, torch.inference_mode():
            rows = self.network.detect_faces(bgr, confidence, NMS_THRESHOLD)
        detections = []
        for row in rows:
            points = row[5:15] * scale
            detections.append(
                Detection(
                    box=tuple(float(v) for v in row[:4] * scale),
                    score=float(row[4]),
                    landmarks=tuple((float(points[i]), float(points[i + 1])) for i in range(0, 10, 2)),
                )
            )
        return detections


_detectors: dict[tuple[str, str, str], RetinaFaceDetector] = {}
_detectors_lock = threading.Lock()


def load_detector(name: str, device: torch.device, weights_dir: str | Path | None = None) -> RetinaFaceDetector:
    """A RetinaFace detector, cached per (name, device, weights file): facexlib pins its device when built."""
    if name not in DETECTOR_WEIGHTS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    weights = DETECTOR_WEIGHTS[name]
    path = find_auxiliary_weights(weights, weights_dir)
    key = (name, str(device), str(path.resolve()))
    with _detectors_lock:
        if key not in _detectors:
            from facexlib.detection.retinaface import RetinaFace

            network = RetinaFace(network_name=name.removeprefix("retinaface_"), half=False, device=device)
            network.load_state_dict(check_auxiliary_weights(weights, path), strict=True)
            _detectors[key] = RetinaFaceDetector(network.eval().to(device), name)
        return _detectors[key]


def detection_scale(height: int, width: int, detection_size: int | None) -> float:
    """Input pixels per detection-copy pixel (1 when detecting at the original size)."""
    if detection_size is None:
        return 1.0
    return max(min(height, width) / detection_size, max(height, width) / MAX_DETECTION_LONG_SIDE)
