"""Align faces to the FFHQ template and paste restored faces back with a soft mask.

The geometry follows facexlib's ``FaceRestoreHelper`` (the official CodeFormer flow):
5-point similarity fit with LMedS, a constant grey border, and a paste mask that is
eroded and blurred in proportion to the face's area. Crops come from OpenCV on the CPU,
bit for bit as the official flow cuts them; the way back is torch, on whichever device the
network runs, and confined to the face's own region, so pixels outside it are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..codeformer_arch.config import IMAGE_SIZE

# Aligned faces are cut at the network's input size.
FACE_SIZE = IMAGE_SIZE
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


def to_input_pixels(positions: np.ndarray, scale: float) -> np.ndarray:
    """Positions in an image enlarged ``scale`` times (``cv2.resize``'s pixel centres) as input positions."""
    return positions if scale == 1.0 else (positions + 0.5) / scale - 0.5


def from_input_pixels(positions: np.ndarray, scale: float) -> np.ndarray:
    """Input positions as positions in the image enlarged ``scale`` times."""
    return positions if scale == 1.0 else (positions + 0.5) * scale - 0.5


def _enlargement(scale: float) -> np.ndarray:
    """3x3 map from input pixels to the image enlarged ``scale`` times."""
    shift = 0.5 * (scale - 1.0)
    return np.array([[scale, 0.0, shift], [0.0, scale, shift], [0.0, 0.0, 1.0]])


def affine_in_input_pixels(affine: np.ndarray, scale: float) -> np.ndarray:
    """An alignment of the enlarged image as one of the input image."""
    return affine if scale == 1.0 else np.asarray(affine, np.float64) @ _enlargement(scale)


def affine_in_working_pixels(affine: np.ndarray, scale: float) -> np.ndarray:
    """An alignment of the input image as one of the image enlarged ``scale`` times."""
    return affine if scale == 1.0 else np.asarray(affine, np.float64) @ np.linalg.inv(_enlargement(scale))


def paste_affine(affine: np.ndarray, upscale: int, face_upsampled: bool = False) -> np.ndarray:
    """Crop-to-output transform for an output ``upscale`` times the input's size; with
    ``face_upsampled``, from the crop enlarged ``upscale`` times (as the official flow maps it)."""
    import cv2

    inverse = cv2.invertAffineTransform(affine)
    if face_upsampled:
        inverse[:, 2] *= upscale
        return inverse
    inverse *= upscale
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


def paste_region(inverse: np.ndarray, height: int, width: int, size: int = FACE_SIZE) -> Region:
    """The part of the output a ``size``-pixel face can reach, with room for the mask's erosion and blur."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    points = corners @ inverse.T
    side = math.hypot(*(points[1] - points[0]))
    margin = int(side / EDGE_FRACTION) + 8
    left, top = np.floor(points.min(axis=0)).astype(int) - margin
    right, bottom = np.ceil(points.max(axis=0)).astype(int) + margin
    return Region(max(top, 0), min(bottom, height), max(left, 0), min(right, width))


def source_positions(inverse: np.ndarray, region: Region, device: torch.device) -> torch.Tensor:
    """(h, w, 2) float32 crop positions (x, y) of the output pixels of ``region``.

    ``inverse`` maps crop pixels to output pixels (pixel centres at integers, as in OpenCV).
    The transform is shifted to the region in float64 first, so positions stay exact to
    about 1e-4 pixel in float32 (which every device has).
    """
    import cv2

    local = inverse.copy()
    local[:, 2] -= (region.left, region.top)
    to_crop = torch.from_numpy(cv2.invertAffineTransform(local)).float().to(device)
    rows = torch.arange(region.bottom - region.top, dtype=torch.float32, device=device)
    cols = torch.arange(region.right - region.left, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    return x[..., None] * to_crop[:, 0] + y[..., None] * to_crop[:, 1] + to_crop[:, 2]


def warp_from_crop(crop: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a (C, S, S) crop at ``source`` positions, zero outside the crop.

    As ``cv2.warpAffine`` (linear, constant zero border) does, except that OpenCV rounds
    positions to 1/32 pixel and this does not.
    """
    grid = (source * (2.0 / (crop.shape[-1] - 1))).sub_(1.0).to(crop.dtype)
    return F.grid_sample(crop[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def square_paste_mask(source: torch.Tensor, upscale: int, size: int = FACE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, soft mask) of the face square at ``source`` positions, as (h, w) tensors.

    Coverage is the warped square eroded by a pixel or two (its interpolated rim would
    darken the face); the soft mask is the coverage eroded further and Gaussian-blurred
    by an edge proportional to the face size.
    """
    coverage = erode(crop_coverage(source, size), int(2 * upscale))
    edge = int(float(coverage.to("cpu", torch.float64).sum()) ** 0.5) // EDGE_FRACTION  # mps has no float64
    soft = gaussian_blur(erode(coverage, 2 * edge), 2 * edge + 1)
    return coverage, soft


def crop_coverage(source: torch.Tensor, size: int = FACE_SIZE) -> torch.Tensor:
    """(h, w) share of each bilinear sample at ``source`` that falls inside the crop: the warp of a
    ``size`` x ``size`` image of ones, computed without sampling it."""
    outside = torch.maximum(-source, source - (size - 1)).clamp_(min=0.0)
    return outside.neg_().add_(1.0).clamp_(min=0.0).prod(dim=-1)  # 1 - outside, in place


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """``cv2.erode`` of an (h, w) mask with a size x size square (anchor at its centre; borders never
    erode). Size 0 means 3, as in OpenCV, where an empty kernel is a 3x3 square.

    A minimum is exact however it is taken, so on the CPU OpenCV takes it (its cost does not grow
    with the square: 0.5 s on a 6000x6000 mask where pooling takes 22 s); elsewhere pooling keeps the
    mask on its device."""
    size = size or 3
    if mask.device.type == "cpu":
        import cv2

        square = np.ones((size, size), np.uint8)
        return torch.from_numpy(cv2.erode(np.ascontiguousarray(mask.numpy(), np.float32), square))
    return erode_by_pooling(mask, size)


def erode_by_pooling(mask: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`erode` in torch, on any device: the square taken as a row then a column of max pooling, so
    the cost grows with its side times the mask's area."""
    before, after = size // 2, size - 1 - size // 2
    padded = F.pad(mask[None, None], (before, after, before, after), value=float("inf"))
    rows = -F.max_pool2d(-padded, (size, 1), stride=1)
    return -F.max_pool2d(-rows, (1, size), stride=1)[0, 0]


def gaussian_blur(mask: torch.Tensor, size: int, sigma: float = 0.0) -> torch.Tensor:
    """``cv2.GaussianBlur(mask, (size, size), sigma)`` of an (h, w) mask, borders reflected (BORDER_REFLECT_101).

    On the CPU OpenCV blurs, as both official helpers do, with a few rows of workspace (a 7000-pixel
    face's mask is blurred in place of gigabytes); elsewhere two convolutions keep the mask on its
    device. The two agree within 2e-6."""
    if size == 1:
        return mask
    if mask.device.type == "cpu":
        import cv2

        blurred = cv2.GaussianBlur(
            np.ascontiguousarray(mask.numpy()), (size, size), sigma, borderType=cv2.BORDER_REFLECT_101
        )
        return torch.from_numpy(blurred)
    return gaussian_blur_by_convolution(mask, size, sigma)


def gaussian_blur_by_convolution(mask: torch.Tensor, size: int, sigma: float = 0.0) -> torch.Tensor:
    """:func:`gaussian_blur` in torch, on any device: OpenCV's kernel as a column then a row convolution."""
    import cv2

    kernel = torch.from_numpy(cv2.getGaussianKernel(size, sigma, cv2.CV_32F).ravel()).to(mask.device, mask.dtype)
    half = size // 2
    rows = mask.index_select(0, _reflect_101(mask.shape[0], half, mask.device))
    image = F.conv2d(rows[None, None], kernel.reshape(1, 1, -1, 1))[0, 0]
    del rows  # each pass holds only its own input: the convolution's workspace is the peak
    columns = image.index_select(1, _reflect_101(image.shape[1], half, mask.device))
    del image
    return F.conv2d(columns[None, None], kernel.reshape(1, 1, 1, -1))[0, 0]


def _reflect_101(length: int, half: int, device: torch.device) -> torch.Tensor:
    """Indices of ``half`` reflected positions on each side (``cba|abcd|dcb``), repeating for short axes."""
    positions = torch.arange(-half, length + half, device=device).abs()
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    positions = positions % period
    return torch.where(positions >= length, period - positions, positions)


def box_border(source: torch.Tensor, coverage: torch.Tensor, size: int = FACE_SIZE) -> torch.Tensor:
    """The official ``--draw_box`` border at ``source`` positions: a rim of the ``size``-pixel crop
    ``int(1400 / sqrt(face area))`` pixels wide (the area being the pasted square's), warped."""
    area = float(coverage.to("cpu", torch.float64).sum())
    width = int(1400 / math.sqrt(area)) if area > 0 else 0
    rim = torch.ones(size, size, device=source.device)
    rim[width : size - width, width : size - width] = 0
    return warp_from_crop(rim[None], source)[0]
