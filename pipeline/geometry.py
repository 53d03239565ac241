"""Align faces to the FFHQ template and paste restored faces back with a soft mask.

The geometry follows facexlib's ``FaceRestoreHelper`` (the official CodeFormer flow):
5-point similarity fit with LMedS, a constant grey border, and a paste mask that is
eroded and blurred in proportion to the face's area. Paste work is confined to the face's
own region, so pixels outside it are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FACE_SIZE = 512
# Five landmarks (eyes, nose, mouth corners) of an FFHQ-aligned 512x512 face.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
# Grey (RGB) that fills crop pixels falling outside the image, as in the official flow.
CROP_BORDER_RGB = (132, 133, 135)
# The blend edge is 1/20 of the pasted face's side (the square root of its area).
EDGE_FRACTION = 20


def estimate_alignment(landmarks: np.ndarray) -> np.ndarray | None:
    """2x3 similarity transform from image pixels to the 512x512 template, or None if degenerate."""
    import cv2

    affine, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float32), FFHQ_TEMPLATE_512, method=cv2.LMEDS
    )
    return affine


def crop_face(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Warp an (H, W, 3) uint8 RGB image into the 512x512 aligned crop."""
    import cv2

    return cv2.warpAffine(
        image, affine, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=CROP_BORDER_RGB
    )


def paste_affine(affine: np.ndarray, upscale: int) -> np.ndarray:
    """Crop-to-output transform for an output ``upscale`` times the input's size."""
    import cv2

    inverse = cv2.invertAffineTransform(affine) * upscale
    if upscale > 1:
        inverse[:, 2] += 0.5 * upscale  # pixel centres move when the output grows
    return inverse


@dataclass(frozen=True)
class Region:
    """A rectangle of the output image: rows ``top:bottom``, columns ``left:right``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def paste_region(inverse: np.ndarray, height: int, width: int) -> Region:
    """The part of the output the face can reach, with room for the mask's erosion and blur."""
    corners = np.array([[0, 0, 1], [FACE_SIZE, 0, 1], [0, FACE_SIZE, 1], [FACE_SIZE, FACE_SIZE, 1]], dtype=np.float64)
    points = corners @ inverse.T
    side = math.hypot(*(points[1] - points[0]))
    margin = int(side / EDGE_FRACTION) + 8
    left, top = np.floor(points.min(axis=0)).astype(int) - margin
    right, bottom = np.ceil(points.max(axis=0)).astype(int) + margin
    return Region(max(top, 0), min(bottom, height), max(left, 0), min(right, width))


def square_paste_mask(inverse: np.ndarray, region: Region, upscale: int) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, soft mask) of the face square within ``region``.

    Coverage is the warped square eroded by a pixel or two (its interpolated rim would
    darken the face); the soft mask is the coverage eroded further and Gaussian-blurred
    by an edge proportional to the face size.
    """
    import cv2

    local = _shift(inverse, region)
    size = (region.right - region.left, region.bottom - region.top)
    warped = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), local, size)
    rim = int(2 * upscale)
    coverage = cv2.erode(warped, np.ones((rim, rim), np.uint8))
    edge = int(float(coverage.sum()) ** 0.5) // EDGE_FRACTION
    centre = cv2.erode(coverage, np.ones((2 * edge, 2 * edge), np.uint8))
    soft = cv2.GaussianBlur(centre, (2 * edge + 1, 2 * edge + 1), 0)
    return coverage, soft


def warp_to_region(face: np.ndarray, inverse: np.ndarray, region: Region, flags: int | None = None) -> np.ndarray:
    """Warp a 512x512 crop (float32) back into ``region`` of the output."""
    import cv2

    size = (region.right - region.left, region.bottom - region.top)
    if flags is None:
        return cv2.warpAffine(face, _shift(inverse, region), size)
    return cv2.warpAffine(face, _shift(inverse, region), size, flags=flags)


def _shift(inverse: np.ndarray, region: Region) -> np.ndarray:
    local = inverse.copy()
    local[:, 2] -= (region.left, region.top)
    return local
