"""Options of the face pipeline, validated once so that compute code can trust them."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.choices import TASKS
from .detection import DEFAULT_DETECTION_SIZE, DEFAULT_DETECTOR, DETECTORS, FaceDetector
from .errors import OptionError
from .flows import DEFAULT_FLOW, FLOW_NAMES, Flow, flow_named
from .regions import boxes_per_image

if TYPE_CHECKING:  # torch loads on first use: the console scripts' --help is built from these options
    import torch

FACE_SELECTIONS = ("all", "largest", "center")
# Below this, a detector takes nearly anything for a face.
MIN_CONFIDENCE = 0.05
MAX_UPSCALE = 4
# Largest output the pipeline will allocate, in pixels per image (about 3 GiB as float32 RGB).
MAX_OUTPUT_PIXELS = 1 << 28

# The official command's w (``--fidelity_weight``), the default of every front end.
DEFAULT_FIDELITY = 0.5

# Takes a (1, H, W, 3) float image in [0, 1] and returns it enlarged, same layout.
Upscaler = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class FidelityRamp:
    """Fidelity that grows with face size: ``small_w`` up to ``small_size`` pixels, then a
    linear ramp to ``large_w`` at ``large_size`` and beyond. Small faces hold little detail
    worth keeping, so they usually want a lower w than large ones."""

    small_w: float
    large_w: float
    small_size: float
    large_size: float

    def __post_init__(self) -> None:
        check_unit("small_w", self.small_w)
        check_unit("large_w", self.large_w)
        check_size("small_size", self.small_size)
        check_size("large_size", self.large_size)
        if not self.small_size < self.large_size:
            raise OptionError(
                f"fidelity ramp sizes must satisfy 0 <= small_size < large_size; got {self.small_size}, "
                f"{self.large_size}"
            )

    @classmethod
    def default(cls) -> FidelityRamp:
        """The ramp the front ends offer first: w 0.3 for faces up to 64 px, rising to 0.7 at 256 px."""
        return cls(small_w=0.3, large_w=0.7, small_size=64, large_size=256)

    def at(self, face_size: float) -> float:
        t = min(max((face_size - self.small_size) / (self.large_size - self.small_size), 0.0), 1.0)
        return self.small_w + t * (self.large_w - self.small_w)


@dataclass(frozen=True)
class RestoreOptions:
    """Everything that shapes a restore run; the defaults follow the official inference.

    What each option does for the person setting it, as the nodes and ``--help`` say it, is in
    :mod:`.option_help`; here, what a Python caller passes.

    Attributes:
        flow: "codeformer" (CodeFormer's own helper, as its command and demo run it) or
            "facexlib" (facexlib's helper: GFPGAN's and AUTOMATIC1111's output). The flow
            decides the defaults of ``confidence`` and ``parse_mask`` and how detection,
            small images, grey images and the paste mask are handled (see ``pipeline.flows``).
        task: "restoration", "colorization" or "inpainting"; None follows the checkpoint.
            Colorization runs at w = 0 with AdaIN, inpainting at w = 1 without, as the
            official scripts do; both ignore ``fidelity`` and ``adain``.
        inpaint_masks: (B, H, W) or (1, H, W) masks in [0, 1] of the pixels to fill (>= 0.5);
            without them, pure-white pixels are filled, as in the official scripts.
        fidelity: w in [0, 1], or a :class:`FidelityRamp` over face sizes.
        adain: match code statistics to the input (official default on).
        visibility: blend of the restored face over the original, 0-1.
        detector: facexlib RetinaFace model name, or a :class:`FaceDetector` to use as it is.
        detection_size: short side of the copy the detector sees; None for the original size.
        confidence: minimum detector score; None for the flow's (codeformer 0.8, facexlib 0.97).
        eye_distance_threshold: faces whose eyes are closer (pixels) are dropped (side views).
        face_selection: "all", "largest", "center" (closest to the image centre), or a
            sequence of indices into the faces ordered left to right (then top to bottom).
        min_face_size, max_face_size: keep faces whose size (larger box side, input pixels)
            lies in this range; max None for no limit.
        max_faces: keep at most this many faces per image, the largest ones.
        selection_masks: (B, H, W) or (1, H, W) masks in [0, 1]; a face is restored only
            when its box centre lies where its image's mask is at least 0.5.
        regions: boxes that limit where faces are looked for (e.g. from another detector):
            one box, a list, or one list per image, as ``[x1, y1, x2, y2]`` or ComfyUI's
            ``{x, y, width, height}``. A face is restored only when its box centre lies in
            one; a region where the whole-image pass found none is searched on its own.
        has_aligned: inputs are already aligned faces: no detection, no paste (512x512; the
            codeformer flow resizes other sizes to it, as its command does).
        upscale: output size factor 1-4 (background resized, or enlarged by ``upscaler``).
        upscaler: optional callable enlarging the background, e.g. a
            :class:`~.upsampling.TiledUpsampler` (the official ``--bg_upsampler``), or the
            file of a super-resolution model to build one from (``RealESRGAN_x2plus.pth``).
        face_upsampler: enlarges each restored face before it is pasted (the official
            ``--face_upsample``), as ``upscaler`` (often the same one) or its file.
        parse_mask: paste through a ParseNet face mask (codeformer: within the soft square;
            facexlib: instead of it); None for the flow's (codeformer on, facexlib off).
        keep_size: images come back ``upscale`` times their input size. The codeformer flow
            enlarges images whose short side is under 512 before restoring them; with this
            on, what the paste changed is resized back (INTER_LINEAR) onto the input, whose
            other pixels stay as they were; off, the result keeps the official size.
        draw_box: draw a green border around each pasted face (the official ``--draw_box``).
        chunk_size: faces per network forward; None picks by device (:func:`auto_chunk_size`).
        return_crops: also return the aligned and restored 512x512 crops.
        weights_dir: folder searched first for detector and parser weights.
    """

    flow: str = DEFAULT_FLOW
    task: str | None = None
    inpaint_masks: torch.Tensor | None = None
    fidelity: float | FidelityRamp = DEFAULT_FIDELITY
    adain: bool = True
    visibility: float = 1.0
    detector: str | FaceDetector = DEFAULT_DETECTOR
    detection_size: int | None = DEFAULT_DETECTION_SIZE
    confidence: float | None = None
    eye_distance_threshold: float = 5.0
    face_selection: str | Sequence[int] = "all"
    min_face_size: float = 0.0
    max_face_size: float | None = None
    max_faces: int | None = None
    selection_masks: torch.Tensor | None = None
    regions: object = None
    has_aligned: bool = False
    upscale: int = 1
    upscaler: Upscaler | str | Path | None = None
    face_upsampler: Upscaler | str | Path | None = None
    parse_mask: bool | None = None
    keep_size: bool = True
    draw_box: bool = False
    chunk_size: int | None = None
    return_crops: bool = False
    weights_dir: str | Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.flow, str) or self.flow not in FLOW_NAMES:
            raise OptionError(f"flow must be one of {', '.join(FLOW_NAMES)}; got {self.flow!r}")
        if self.task is not None and (not isinstance(self.task, str) or self.task not in TASKS):
            raise OptionError(f"task must be one of {', '.join(TASKS)} or None (the checkpoint's); got {self.task!r}")
        for name in ("inpaint_masks", "selection_masks"):
            check_mask(name, getattr(self, name))
        if not isinstance(self.fidelity, FidelityRamp):
            check_unit("fidelity", self.fidelity)
        for name in ("adain", "has_aligned", "keep_size", "draw_box", "return_crops"):
            check_flag(name, getattr(self, name))
        if self.parse_mask is not None:
            check_flag("parse_mask", self.parse_mask)
        check_unit("visibility", self.visibility)
        if isinstance(self.detector, str):
            if self.detector not in DETECTORS:
                raise OptionError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        elif not callable(getattr(self.detector, "detect", None)):
            raise OptionError(
                f"detector must name a detector ({', '.join(DETECTORS)}) or be an object with a detect(image, "
                f"confidence) method; got {type(self.detector).__name__}"
            )
        check_whole("detection_size", self.detection_size, 16, "pixels (or None for the original size)")
        if self.confidence is not None:
            check_unit("confidence", self.confidence)
            if self.confidence < MIN_CONFIDENCE:
                raise OptionError(
                    f"confidence {self.confidence} would take almost anything for a face (0 finds hundreds in a "
                    f"photo); use at least {MIN_CONFIDENCE}, or None for the flow's own"
                )
        check_size("eye_distance_threshold", self.eye_distance_threshold)
        if isinstance(self.face_selection, str):
            if self.face_selection not in FACE_SELECTIONS:
                raise OptionError(
                    f"face_selection must be one of {FACE_SELECTIONS} or a list of indices; got {self.face_selection!r}"
                )
        else:
            check_indices("face_selection", self.face_selection)
        check_size("min_face_size", self.min_face_size)
        if self.max_face_size is not None:
            check_size("max_face_size", self.max_face_size)
            if self.max_face_size < self.min_face_size:
                raise OptionError(f"max_face_size {self.max_face_size} is below min_face_size {self.min_face_size}")
        check_whole("max_faces", self.max_faces, 1, "(or None)")
        if self.regions is not None:
            boxes_per_image(self.regions)
        if not _is_whole(self.upscale) or self.upscale not in range(1, MAX_UPSCALE + 1):
            raise OptionError(f"upscale must be a whole number from 1 to {MAX_UPSCALE}; got {self.upscale!r}")
        for name in ("upscaler", "face_upsampler"):
            source = getattr(self, name)
            if source is not None and not (callable(source) or isinstance(source, (str, os.PathLike))):
                raise OptionError(
                    f"{name} must be a callable upsampler, the file of a super-resolution model, or None; got "
                    f"{type(source).__name__}"
                )
        check_whole("chunk_size", self.chunk_size, 1, "(or None to pick by device)")
        if self.weights_dir is not None and not isinstance(self.weights_dir, (str, os.PathLike)):
            raise OptionError(
                f"weights_dir must be a folder (str or Path) or None; got {type(self.weights_dir).__name__}"
            )

    @property
    def rules(self) -> Flow:
        """The stage parameters of the chosen flow."""
        return flow_named(self.flow)

    @property
    def detection_confidence(self) -> float:
        return self.rules.confidence if self.confidence is None else self.confidence

    @property
    def uses_parse_mask(self) -> bool:
        return self.rules.parse_mask if self.parse_mask is None else self.parse_mask

    def fidelity_for(self, face_size: float) -> float:
        return self.fidelity.at(face_size) if isinstance(self.fidelity, FidelityRamp) else float(self.fidelity)


def check_unit(name: str, value: object) -> None:
    """A number in [0, 1]."""
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise OptionError(f"{name} must be a number in [0, 1]; got {value!r}")


def check_flag(name: str, value: object) -> None:
    """True or False (a string such as "no" would read as true)."""
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be True or False; got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_whole(name: str, value: object, minimum: int, rest: str = "", allow_none: bool = True) -> None:
    """A whole number of at least ``minimum`` (2.0 too is refused: say 2), or None where allowed."""
    if (value is not None or not allow_none) and (not _is_whole(value) or value < minimum):
        raise OptionError(f"{name} must be a whole number of at least {minimum} {rest}".rstrip() + f"; got {value!r}")


def check_size(name: str, value: object, what: str = "pixels") -> None:
    """A finite number of ``what``, at least 0."""
    if not _is_real(value) or not 0 <= value < math.inf:
        raise OptionError(f"{name} must be a finite number of {what}, at least 0; got {value!r}")


def check_indices(name: str, indices: object) -> None:
    """Indices: whole numbers from 0, each once (a face listed twice would be pasted twice)."""
    if (
        not isinstance(indices, Sequence)
        or isinstance(indices, str)
        or not all(_is_whole(index) and index >= 0 for index in indices)
    ):
        raise OptionError(f"{name} indices must be whole numbers from 0; got {indices!r}")
    if len(set(indices)) != len(indices):
        raise OptionError(f"{name} lists an index twice: {list(indices)}; give each once")


def check_mask(name: str, masks: object) -> None:
    """None, or an (H, W) or (B, H, W) float or bool tensor, not empty, every value finite."""
    if masks is None:
        return
    import torch

    if not isinstance(masks, torch.Tensor):
        raise OptionError(
            f"{name} must be an (H, W) or (B, H, W) torch tensor in [0, 1]; got {type(masks).__name__} "
            "(a numpy array: torch.from_numpy(array))"
        )
    if masks.ndim not in (2, 3) or masks.numel() == 0:
        raise OptionError(f"{name} must be (H, W) or (B, H, W) with no side 0; got {tuple(masks.shape)}")
    if masks.dtype != torch.bool and not masks.is_floating_point():
        raise OptionError(f"{name} must hold floats in [0, 1] or bools; got {masks.dtype}")
    if masks.is_floating_point() and not bool(torch.isfinite(masks).all()):
        raise OptionError(f"{name} holds NaN or infinite values; give values in [0, 1]")
