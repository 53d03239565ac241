"""Face detection with facexlib's RetinaFace (CodeFormer's facelib runs the same network).

The detector sees a uint8 copy of the image resized so that its short side is
``detection_size``, made as the chosen flow makes it (:func:`detect_faces`); boxes and
landmarks are mapped back to input pixels. facexlib and OpenCV are imported on first use only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..models.auxiliary import DETECTOR_WEIGHTS, check_auxiliary_weights, find_auxiliary_weights
from .flows import DetectionResize, EyeMeasure

if TYPE_CHECKING:  # torch and facexlib load on first use
    import torch

DETECTORS = tuple(DETECTOR_WEIGHTS)
DEFAULT_DETECTOR = "retinaface_resnet50"
DEFAULT_DETECTION_SIZE = 640
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

    def eye_measure(self, rule: EyeMeasure) -> float:
        """What a flow's eye-distance threshold compares (see :class:`~.flows.Flow`)."""
        if rule == "distance":
            return self.eye_distance
        (_, left_y), (right_x, right_y), (nose_x, _) = self.landmarks[:3]
        return float(np.linalg.norm([left_y - right_y, right_x - nose_x]))

    def mapped(self, to_image: Callable[[np.ndarray], np.ndarray]) -> Detection:
        """The detection with its positions mapped by ``to_image`` (applied to float32 arrays, as
        both helpers map the detector's float32 rows)."""
        box, landmarks = to_image(np.array(self.box, np.float32)), to_image(np.array(self.landmarks, np.float32))
        return Detection(
            box=tuple(float(v) for v in box),
            score=self.score,
            landmarks=tuple((float(x), float(y)) for x, y in landmarks),
        )


class FaceDetector(Protocol):
    """What the pipeline asks of a face detector (``RestoreOptions.detector`` may be one)."""

    def detect(self, image: np.ndarray, confidence: float) -> list[Detection]:
        """Faces of an (H, W, 3) uint8 RGB image, as it is, in its pixels, in the detector's order (best first)."""
        ...


class RetinaFaceDetector:
    """facexlib's RetinaFace, safe to share between threads.

    facexlib keeps each call's input scale on the module itself, so two threads detecting
    at once in images of different sizes would get each other's boxes; a lock serialises
    calls.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, confidence: float) -> list[Detection]:
        import torch

        bgr = np.ascontiguousarray(image[..., ::-1])
        with self._lock, torch.inference_mode():
            rows = self.network.detect_faces(bgr, confidence, NMS_THRESHOLD)
        return [
            Detection(
                box=tuple(float(v) for v in row[:4]),
                score=float(row[4]),
                landmarks=tuple((float(row[i]), float(row[i + 1])) for i in range(5, 15, 2)),
            )
            for row in rows
        ]


def detect_faces(
    detector: FaceDetector, rgb: np.ndarray, detection_size: int | None, confidence: float, resize: DetectionResize
) -> list[Detection]:
    """Faces of an (H, W, 3) uint8 image found in its detection copy, in the image's pixels."""
    import cv2

    height, width = rgb.shape[:2]
    if resize == "lanczos":  # facexlib: input pixels per copy pixel, sizes truncated
        scale = detection_scale(height, width, detection_size)
        if scale == 1.0:
            return detector.detect(rgb, confidence)
        size = (max(int(width / scale), 1), max(int(height / scale), 1))
        copy = cv2.resize(rgb, size, interpolation=cv2.INTER_LANCZOS4)
        return [d.mapped(lambda positions: positions * scale) for d in detector.detect(copy, confidence)]
    if detection_size is None:
        return detector.detect(rgb, confidence)
    # CodeFormer's facelib: copy pixels per input pixel, sizes truncated, positions divided back
    enlargement = detection_size / min(height, width)
    enlargement = min(enlargement, MAX_DETECTION_LONG_SIDE / max(height, width))
    size = (max(int(width * enlargement), 1), max(int(height * enlargement), 1))
    interpolation = cv2.INTER_AREA if enlargement < 1 else cv2.INTER_LINEAR
    copy = cv2.resize(rgb, size, interpolation=interpolation)
    return [d.mapped(lambda positions: positions / enlargement) for d in detector.detect(copy, confidence)]


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
            _detectors[key] = RetinaFaceDetector(network.eval().to(device))
        return _detectors[key]


def detection_scale(height: int, width: int, detection_size: int | None) -> float:
    """Input pixels per detection-copy pixel (1 when detecting at the original size)."""
    if detection_size is None:
        return 1.0
    return max(min(height, width) / detection_size, max(height, width) / MAX_DETECTION_LONG_SIDE)
