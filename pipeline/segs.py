"""Impact Pack's SEGS, read and written duck-typed (no dependency on Impact Pack).

SEGS is ``((H, W), [SEG, ...])``; a SEG holds ``cropped_image`` (a (B, h, w, 3) IMAGE of its
crop region, or None), ``cropped_mask`` ((h, w) or (B, h, w), numpy or torch), ``confidence``,
``crop_region`` and ``bbox`` (``[x1, y1, x2, y2]`` in image pixels), ``label`` and
``control_net_wrapper``. SEGSPaste blends each SEG's ``cropped_image`` into the image through
its ``cropped_mask``, in list order.

Restoring SEGS puts each face, restored, into its SEG's ``cropped_image`` where CodeFormer
pastes it (elsewhere the crop is left as it was), so that SEGSPaste shows the restoration
through the SEG's own mask. SEGS made from our faces carry our soft paste masks and come in
our paste order: pasted with SEGSPaste (feather 0), they give the restore node's image.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections import namedtuple
from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError
from .images import as_image_list
from .inference import RestorationNetwork
from .options import RestoreOptions
from .paste import PasteSettings, face_layer, face_mask, input_levels, prepared_face
from .restore import restore_faces
from .results import FaceInfo

SEG = namedtuple(
    "SEG",
    ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label", "control_net_wrapper"],
    defaults=[None],
)
FACE_LABEL = "face"


def faces_to_segs(image: torch.Tensor, faces: Sequence[FaceInfo], options: RestoreOptions) -> tuple:
    """SEGS of the faces of one (H, W, C) or (1, H, W, C) image: crop regions, soft masks, label "face"."""
    (picture,) = _single(image)
    height, width = picture.shape[:2]
    segs = []
    for face in sorted(faces, key=lambda f: f.detection_rank):
        found = face_mask(face, tuple(picture.shape), options.upscale, options.visibility)
        if found is None:
            continue
        region, soft = found
        rows, cols = region.slices
        x1, y1, x2, y2 = face.box
        segs.append(
            SEG(
                cropped_image=picture[rows, cols, :3][None].clone(),
                cropped_mask=soft.numpy().astype(np.float32),
                confidence=np.float32(face.score),
                crop_region=[region.left, region.top, region.right, region.bottom],
                bbox=[int(max(x1, 0)), int(max(y1, 0)), int(min(x2, width)), int(min(y2, height))],
                label=FACE_LABEL,
            )
        )
    return ((height, width), segs)


def restore_segs(images: torch.Tensor, segs: tuple, model: RestorationNetwork, options: RestoreOptions) -> tuple:
    """SEGS whose ``cropped_image`` holds the faces restored inside each SEG's crop region.

    ``images`` is the (B, H, W, C) image the SEGS were made from; faces are looked for only
    in the crop regions (landmarks from our detector). A SEG with no face comes back as it was.
    """
    (height, width), items = segs
    pictures = as_image_list(images)
    if pictures and pictures[0].shape[:2] != (height, width):
        raise ValueError(
            f"the SEGS were made from a {width}x{height} image but a {pictures[0].shape[1]}x{pictures[0].shape[0]} "
            "image came in; restore SEGS with the image they were detected in"
        )
    if not items:
        return segs
    regions = [_checked_crop_region(seg, number, height, width) for number, seg in enumerate(items)]
    # SEGSPaste blends through each SEG's own mask, so the parse mask has no part here
    options = dataclasses.replace(options, regions=regions, return_crops=True, upscale=1, parse_mask=False)
    result = restore_faces(pictures, model, options)
    paste = PasteSettings.of(options, result.restored_crops.device)
    crops = [[] for _ in items]
    for index, picture in enumerate(pictures):
        faces = [(i, face) for i, face in enumerate(result.faces) if face.image_index == index]
        prepared = _prepared_faces(picture, faces, result.restored_crops, paste)
        for seg, per_image in zip(items, crops, strict=True):
            per_image.append(_restored_crop(picture, seg.crop_region, faces, prepared, paste))
    return (
        (height, width),
        [_with_image(seg, torch.stack(per_image)) for seg, per_image in zip(items, crops, strict=True)],
    )


def _checked_crop_region(seg: object, number: int, height: int, width: int) -> list[float]:
    """The SEG's ``crop_region`` [x1, y1, x2, y2]: whole pixels inside the ``width`` x ``height`` image, not
    empty (Impact Pack clips its regions to the image; a region outside it would cut the wrong pixels)."""
    region = getattr(seg, "crop_region", None)
    values = list(region) if isinstance(region, Sequence) and not isinstance(region, str) else []
    if len(values) != 4 or not all(isinstance(v, numbers.Real) and float(v).is_integer() for v in values):
        raise InputError(
            f"SEG {number}: crop_region must be four whole pixel positions [x1, y1, x2, y2]; got {region!r}"
        )
    x1, y1, x2, y2 = (int(v) for v in values)
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise InputError(
            f"SEG {number}: crop_region {values} is not a non-empty region inside the {width}x{height} image the SEGS "
            "describe; make the SEGS from this image (a detector's SEGS are clipped to it)"
        )
    return [float(v) for v in (x1, y1, x2, y2)]


def _prepared_faces(
    picture: torch.Tensor, faces: list[tuple[int, FaceInfo]], restored: torch.Tensor, options: PasteSettings
) -> dict[int, torch.Tensor]:
    """Each face's restored crop as the paste prepares it (``paste.prepared_face``), by its row in ``restored``."""
    rgb = input_levels(picture, [face for _, face in faces], options)
    return {index: prepared_face(face, restored[index], rgb, options) for index, face in faces}


def _restored_crop(
    picture: torch.Tensor, crop_region: Sequence[int], faces: list[tuple[int, FaceInfo]],
    prepared: dict[int, torch.Tensor], options: PasteSettings,
) -> torch.Tensor:  # fmt: skip
    """The crop region of ``picture`` with the restored faces inside it put where they are pasted."""
    x1, y1, x2, y2 = (int(v) for v in crop_region)
    crop = picture[y1:y2, x1:x2, :3].clone()
    box = (x1, y1, x2, y2)
    for index, face in sorted(faces, key=lambda item: item[1].detection_rank):
        if not inside_box(face, box):
            continue
        layer = face_layer(face, prepared[index], tuple(picture.shape), options)
        if layer is None:
            continue
        region = layer.region
        top, bottom = max(region.top, y1), min(region.bottom, y2)
        left, right = max(region.left, x1), min(region.right, x2)
        if bottom <= top or right <= left:
            continue
        pixels = layer.pixels[top - region.top : bottom - region.top, left - region.left : right - region.left]
        mask = layer.mask[top - region.top : bottom - region.top, left - region.left : right - region.left]
        target = crop[top - y1 : bottom - y1, left - x1 : right - x1, : pixels.shape[2]]
        target.copy_(torch.where(mask[..., None] > 0, pixels.to(target), target))
    return crop


def inside_box(face: FaceInfo, box: tuple[int, int, int, int]) -> bool:
    x1, y1, x2, y2 = face.box
    return box[0] <= (x1 + x2) / 2 <= box[2] and box[1] <= (y1 + y2) / 2 <= box[3]


def _with_image(seg: object, cropped_image: torch.Tensor) -> object:
    """The SEG with a new ``cropped_image``, of the SEG's own type where it is a named tuple."""
    if hasattr(seg, "_replace"):
        return seg._replace(cropped_image=cropped_image)
    fields = {name: getattr(seg, name) for name in SEG._fields if hasattr(seg, name)}
    return SEG(**{**fields, "cropped_image": cropped_image})


def _single(image: torch.Tensor) -> list[torch.Tensor]:
    pictures = as_image_list(image)
    if len(pictures) != 1:
        raise ValueError(f"SEGS describe one image; got a batch of {len(pictures)}: convert them one by one")
    return pictures
