"""What each checkpoint's task changes: fidelity and AdaIN, colour for grey inputs, inpainting holes.

The conventions are the official scripts': colorization at w = 0 with AdaIN (grey in,
colour out), inpainting at w = 1 without AdaIN, filling the masked (or pure-white)
pixels and keeping every other pixel of the face.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..models.checkpoint import COLORIZATION, INPAINTING, RESTORATION, checked_task
from ..models.restorers import LoadedRestorer
from .geometry import FACE_SIZE
from .images import normalise
from .options import RestoreOptions
from .results import FaceInfo

# (w, adain) of the official scripts for the variant checkpoints; restoration takes both as asked.
TASK_CALLS = {COLORIZATION: (0.0, True), INPAINTING: (1.0, False)}


def takes_fidelity(model: object) -> bool:
    """Whether ``model`` reads the fidelity ``w``: CodeFormer (and a network that does not say) does."""
    return not isinstance(model, LoadedRestorer) or model.kind.accepts_fidelity


def as_restored_by(model: object, faces: list[FaceInfo]) -> list[FaceInfo]:
    """``faces`` as ``model`` restored them: without a fidelity where it reads none (GFPGAN, RestoreFormer)."""
    if takes_fidelity(model):
        return faces
    return [dataclasses.replace(face, fidelity=None) for face in faces]


def resolve_task(model: object, options: RestoreOptions) -> str:
    """The task to run: the one asked for, which must be the weights' when they say it (every loaded face
    restorer does: GFPGAN and RestoreFormer only restore, and asking them to colorize is refused, not run as
    a restoration that looks like a failed colorization)."""
    if isinstance(model, LoadedRestorer):
        return checked_task(model.task, model.source, options.task, model.kind.architecture)
    return options.task or RESTORATION


def task_fidelity(task: str | None, fidelity: float) -> float:
    """The w each task runs at: colorization 0, inpainting 1, restoration as asked."""
    return TASK_CALLS[task][0] if task in TASK_CALLS else fidelity


def task_adain(task: str | None, adain: bool) -> bool:
    """Whether a task uses AdaIN: colorization yes, inpainting no, restoration as asked."""
    return TASK_CALLS[task][1] if task in TASK_CALLS else adain


def network_adain(model: object, options: RestoreOptions) -> bool:
    """Whether ``model`` runs with AdaIN under ``options`` (what an exported network must bake in)."""
    return task_adain(resolve_task(model, options), options.adain)


def with_colour(picture: torch.Tensor) -> torch.Tensor:
    """Grey (H, W, 1) as three channels, so that colorization has somewhere to put colour."""
    return picture.expand(-1, -1, 3) if picture.shape[2] == 1 else picture


def white_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask of pure-white pixels of normalised (B, 3, H, W) faces: the official fill rule."""
    return (x.float().sum(dim=1, keepdim=True) == 3.0).to(x.dtype)


def white_crop_pixels(crops: np.ndarray) -> np.ndarray:
    """(N, 512, 512) bool: the pixels the official fill rule marks in uint8 crops."""
    return white_pixels(normalise(torch.from_numpy(crops)))[:, 0].bool().numpy()


def blend_inpainting(x: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Network output inside ``mask``, the input exactly outside it (masks (B, H, W) or (B, 1, H, W))."""
    inside = mask.reshape(mask.shape[0], 1, *mask.shape[-2:]).to(device=x.device) > 0
    return torch.where(inside, raw, x)


def inpaint_crop_masks(
    pictures: list[torch.Tensor], faces: list[FaceInfo], crops: np.ndarray, options: RestoreOptions
) -> np.ndarray:
    """(N, 512, 512) bool: which crop pixels inpainting fills.

    From ``options.inpaint_masks`` warped into each face's crop (nearest neighbour, so it
    stays binary), else the crop's pure-white pixels, as the official scripts do.
    """
    import cv2

    if options.inpaint_masks is None:
        return white_crop_pixels(crops)
    masks = []
    for face in faces:
        mask = options.inpaint_masks[face.image_index if options.inpaint_masks.shape[0] > 1 else 0]
        mask = mask.detach().to("cpu", torch.float32).numpy()
        height, width = pictures[face.image_index].shape[:2]
        to_image = np.diag([width / mask.shape[1], height / mask.shape[0], 1.0])  # mask pixels -> image pixels
        affine = np.array(face.affine) @ to_image
        warped = cv2.warpAffine(mask, affine, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
        masks.append(warped >= 0.5)
    return np.stack(masks) if masks else np.zeros((0, FACE_SIZE, FACE_SIZE), bool)


def aligned_inpaint_masks(masks: torch.Tensor, count: int) -> np.ndarray:
    """(count, 512, 512) bool holes of aligned faces from (1 or count, 512, 512) masks."""
    if masks.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"inpaint masks for aligned faces must be 512x512; got {tuple(masks.shape)}")
    return (masks.detach().to("cpu").expand(count, -1, -1) >= 0.5).numpy()
