"""What a restore run hands back: one :class:`FaceInfo` per face and a :class:`RestoreResult`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import torch

from .conversion import ImageInput, Picture, images_like


@dataclass(frozen=True)
class FaceInfo:
    """One restored face, as plain data.

    Attributes:
        image_index: which input image the face is in.
        box: detector box (x1, y1, x2, y2) in input pixels.
        score: the detector's confidence.
        landmarks: eyes, nose, mouth corners as (x, y) in input pixels.
        face_size: the larger side of the box.
        fidelity: the w the face was restored with; None where the network reads none (GFPGAN,
            RestoreFormer), so that no report claims a w that changed nothing.
        affine: 2x3 transform from input pixels to the 512x512 aligned crop.
        grey: the image is grey, so the face was pasted back grey.
        detection_rank: the face's place in the detector's output for its image (0: the
            highest score). Faces are reported left to right, but pasted in this order, as
            the official flow pastes them: where two faces overlap, the later one lies on top.
        track_id: in a video, the face's track: the same person in every frame (None for
            single images).
    """

    image_index: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]
    face_size: float
    fidelity: float | None
    affine: tuple[tuple[float, float, float], tuple[float, float, float]]
    grey: bool = False
    detection_rank: int = 0
    track_id: int | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class RestoreResult:
    """What a run produced.

    Attributes:
        images: restored images, float32 (H', W', C) in [0, 1], C as in the input.
        masks: per image, the soft mask of what was pasted (weight 0-1), (H', W').
        faces: one :class:`FaceInfo` per restored face: image by image, left to right.
        crops: aligned input crops (N, 512, 512, 3), when asked for.
        restored_crops: restored crops (N, 512, 512, 3), when asked for.
        faces_per_image: how many faces each image had restored.
    """

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    faces: list[FaceInfo]
    crops: torch.Tensor | None = None
    restored_crops: torch.Tensor | None = None
    faces_per_image: list[int] = field(default_factory=list)

    def faces_json(self) -> str:
        return json.dumps([face.to_dict() for face in self.faces])

    def images_like(self, inputs: ImageInput) -> Picture | list[Picture]:
        """The restored images in the kind of ``inputs``, the images the run was given: PIL images
        of their own mode, arrays or tensors of their own dtype and layout (see
        :func:`codeformer_nodes.pipeline.conversion.images_like`)."""
        return images_like(self.images, inputs)
