"""Faces followed from frame to frame: which detection continues which track, and where a scene cuts."""

from __future__ import annotations

import numpy as np

from .detection import Detection

# Thumbnails compared for scene cuts: this many pixels a side, grey.
CUT_THUMBNAIL = 32


class Tracker:
    """Greedy association of detections with live tracks by landmark distance; a cut ends all tracks."""

    def __init__(self, memory: int, match_distance: float) -> None:
        self.memory, self.match_distance = memory, match_distance
        self.last: dict[int, tuple[int, Detection]] = {}
        self.next_id = 0

    def update(self, frame: int, detections: list[Detection], cut: bool) -> dict[int, Detection]:
        if cut:
            self.last.clear()
        alive = {tid: seen for tid, seen in self.last.items() if frame - seen[0] <= self.memory + 1}
        pairs = sorted(
            (_distance(seen[1], d), tid, di) for tid, seen in alive.items() for di, d in enumerate(detections)
        )
        taken: dict[int, Detection] = {}
        used: set[int] = set()
        for cost, tid, di in pairs:
            if cost <= self.match_distance and tid not in taken and di not in used:
                taken[tid] = detections[di]
                used.add(di)
        for di in sorted(set(range(len(detections))) - used, key=lambda i: detections[i].centre):
            taken[self.next_id] = detections[di]
            self.next_id += 1
        for tid, detection in taken.items():
            self.last[tid] = (frame, detection)
        return taken


def _distance(a: Detection, b: Detection) -> float:
    """Mean landmark distance as a share of the face size."""
    gap = np.linalg.norm(np.array(a.landmarks) - np.array(b.landmarks), axis=1).mean()
    return float(gap / max(a.size, b.size, 1.0))


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A small grey copy of a frame; consecutive ones far apart mean a scene cut."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (CUT_THUMBNAIL, CUT_THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
