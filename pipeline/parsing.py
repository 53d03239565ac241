"""Optional paste mask from facexlib's ParseNet face parser, instead of the soft square.

The parser labels each pixel of the restored crop; face classes are kept, the mask is
blurred wide so the seam disappears, and its rim is cleared so crop borders never show.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.auxiliary import PARSENET_WEIGHTS, check_auxiliary_weights, find_auxiliary_weights
from .geometry import FACE_SIZE, gaussian_blur, warp_from_crop
from .images import to_network_range

# ParseNet classes that are not face: background, neck, cloth, hair, hat.
NON_FACE_CLASSES = (0, 14, 16, 17, 18)
BLUR_SIZE = 101
BLUR_SIGMA = 11
CLEARED_RIM_PIXELS = 10

_parsers: dict[str, torch.nn.Module] = {}
_parsers_lock = threading.Lock()


def load_parser(device: torch.device, weights_dir: str | Path | None = None) -> torch.nn.Module:
    path = find_auxiliary_weights(PARSENET_WEIGHTS, weights_dir)
    key = f"{device}|{path.resolve()}"
    with _parsers_lock:
        if key not in _parsers:
            from facexlib.parsing.parsenet import ParseNet

            network = ParseNet(in_size=FACE_SIZE, out_size=FACE_SIZE, parsing_ch=19)
            network.load_state_dict(check_auxiliary_weights(PARSENET_WEIGHTS, path), strict=True)
            _parsers[key] = network.eval().to(device)
        return _parsers[key]


def parse_paste_mask(parser: torch.nn.Module, crop: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Soft mask of the face pixels of a restored (S, S, 3) float crop, sampled at ``source`` positions;
    ``parser`` is the ParseNet :func:`load_parser` gives.

    The parser sees the crop at 512x512; a larger (upsampled) crop is resized (linear) to
    512 for it, and the mask back to the crop's size, as the official flow does."""
    size = crop.shape[0]
    face = crop.permute(2, 0, 1)[None]
    if size != FACE_SIZE:
        face = F.interpolate(face, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False)
    x = to_network_range(face)
    with torch.inference_mode():
        labels = parser(x)[0].argmax(dim=1)[0]
    non_face = torch.tensor(NON_FACE_CLASSES, device=labels.device)
    mask = (~torch.isin(labels, non_face)).float()
    for _ in range(2):
        mask = gaussian_blur(mask, BLUR_SIZE, BLUR_SIGMA)
    rim = CLEARED_RIM_PIXELS
    mask[:rim, :] = mask[-rim:, :] = mask[:, :rim] = mask[:, -rim:] = 0
    if size != FACE_SIZE:
        mask = F.interpolate(mask[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return warp_from_crop(mask[None], source)[0]
