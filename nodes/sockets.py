"""The sockets and helpers the nodes share: custom socket types, widgets, batch conversions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..pipeline import FaceInfo, FidelityRamp, RestoreOptions
from ..pipeline.detection import DETECTORS
from ..pipeline.flows import FLOW_CONFIDENCES, FLOW_NAMES
from ..pipeline.geometry import FACE_SIZE
from ..pipeline.option_help import RESTORE_HELP
from ..pipeline.options import MIN_CONFIDENCE

CATEGORY = "image/restoration/CodeFormer"
# The library's defaults, which every widget starts from.
DEFAULTS = RestoreOptions()
DEFAULT_RAMP = FidelityRamp.default()
# The sockets every restoring node takes.
MODEL_SOCKET = (
    "CODEFORMER_MODEL",
    {
        "tooltip": "the network from Load Face Restorer (CodeFormer, GFPGAN or RestoreFormer); its task "
        "(restoration, colorization, inpainting) decides what the node does"
    },
)
FIDELITY_SOCKET = (
    "CODEFORMER_FIDELITY",
    {"tooltip": "from CodeFormer Fidelity: a size ramp, visibility or a sweep; when connected it replaces w"},
)
# What the paste and SEGS nodes take from the restore node.
FACES_SOCKET = ("CODEFORMER_FACES", {"tooltip": "the faces output of CodeFormer Restore Faces"})
# The detection widgets every restoring node has.
DETECTION_WIDGETS = {
    "w": ("FLOAT", {"default": DEFAULTS.fidelity, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": RESTORE_HELP["fidelity"]}),
    "detector": (list(DETECTORS), {"default": DEFAULTS.detector, "tooltip": RESTORE_HELP["detector"]}),
    "detection_size": ("INT", {"default": DEFAULTS.detection_size, "min": 0, "max": 4096, "step": 16,
                               "tooltip": RESTORE_HELP["detection_size"] + "; 0 for the image's own size"}),
    "confidence": ("FLOAT", {"default": DEFAULTS.detection_confidence, "min": MIN_CONFIDENCE, "max": 1.0, "step": 0.01,
                             "tooltip": f"{RESTORE_HELP['confidence']}; the flows' own: {FLOW_CONFIDENCES}"}),
}  # fmt: skip
# Optional widgets, so that workflows saved before they existed still load (with the defaults).
FLOW_WIDGETS = {"flow": (list(FLOW_NAMES), {"default": DEFAULTS.flow, "tooltip": RESTORE_HELP["flow"]})}


@dataclass(frozen=True)
class FidelityControl:
    """The CODEFORMER_FIDELITY socket."""

    fidelity: float | FidelityRamp
    visibility: float = DEFAULTS.visibility
    sweep: tuple[float, ...] = ()


@dataclass(frozen=True)
class DetectedFaces:
    """The CODEFORMER_FACES socket: what the paste node needs to put edited crops back.

    Attributes:
        faces: the faces, each ``image_index`` counting the restore node's outputs.
        options: the options they were found and pasted with.
        input_sizes: (height, width) of each image the restore node was given: crops go back into those.
        outputs_per_input: outputs the restore node made of each input (the sweep's values; else 1).
        restored: the restore node's image output, which already holds the pasted faces (pasting into it
            again would blend the seams twice, and at upscale 2 enlarge it twice); None where unknown.
    """

    faces: tuple[FaceInfo, ...]
    options: RestoreOptions
    input_sizes: tuple[tuple[int, int], ...] = ()
    outputs_per_input: int = 1
    restored: torch.Tensor | None = None

    def paste_targets(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The image each face's ``image_index`` is pasted into: the given batch is the restore node's input
        (one image per input, each taken once per output) or that input repeated once per output."""
        if self.restored is not None and image.shape == self.restored.shape and torch.equal(image, self.restored):
            raise ValueError(
                "this is the restore node's own image output, which already holds the restored faces: pasting into "
                "it blends their seams twice (and with upscale above 1 enlarges it twice). Connect the image the "
                "restore node was given; the paste makes one output per fidelity value itself"
            )
        sizes = {tuple(picture.shape[:2]) for picture in image}
        if self.input_sizes and not sizes <= set(self.input_sizes):
            (height, width), *_ = self.input_sizes
            raise ValueError(
                f"the faces were found in {width}x{height} images but a {image.shape[2]}x{image.shape[1]} image came "
                "in: paste into the image the restore node was given (not its output, which upscale enlarges)"
            )
        outputs = len(self.input_sizes) * self.outputs_per_input
        if self.input_sizes and image.shape[0] == len(self.input_sizes):
            return [image[index // self.outputs_per_input] for index in range(outputs)]
        needed = max(face.image_index for face in self.faces) + 1
        if image.shape[0] < needed:
            raise ValueError(
                f"the faces refer to {needed} images but {image.shape[0]} came in; paste into the image the restore "
                "node was given"
            )
        return list(image)


def detection_options(
    control: FidelityControl,
    detector: str,
    detection_size: int,
    confidence: float,
    weights_dir: Path | None,
    **more: object,
) -> RestoreOptions:
    """The options a restoring node builds from its fidelity and detection widgets (size 0: the image's own)."""
    return RestoreOptions(
        fidelity=control.fidelity,
        visibility=control.visibility,
        detector=detector,
        detection_size=detection_size or None,
        confidence=confidence,
        weights_dir=weights_dir,
        **more,  # type: ignore[arg-type]
    )


def parse_indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"face_indices must be whole numbers separated by commas, e.g. 0,2; got {text!r}") from error


def parse_sweep(text: str) -> tuple[float, ...]:
    """The sweep widget's w values ("0, 0.5, 1"); blank for no sweep. A part that is empty or no number in
    [0, 1] is named, with its position, rather than skipped."""
    if not text.strip():
        return ()
    parts = text.replace(";", ",").split(",")
    values = []
    for position, part in enumerate(parts, start=1):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            problem = "is empty" if not part.strip() else f"({part.strip()!r}) is no number or lies outside [0, 1]"
            raise ValueError(
                f"sweep {text!r}: part {position} of {len(parts)} {problem}; write w values in [0, 1] separated "
                "by commas, e.g. 0, 0.5, 1"
            )
        values.append(value)
    return tuple(values)


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """One batch tensor; images of different sizes cannot share a batch, so say so."""
    if not images:
        return torch.zeros((0, 64, 64, 3))
    if len({tuple(image.shape) for image in images}) > 1:
        raise ValueError("restored images differ in size and cannot form one IMAGE batch; restore them separately")
    return torch.stack(images)


def crops_or_placeholder(crops: torch.Tensor | None) -> torch.Tensor:
    """Crops as IMAGE; with no face, one black 512x512 image (an empty batch breaks most nodes)."""
    if crops is None or crops.shape[0] == 0:
        return torch.zeros((1, FACE_SIZE, FACE_SIZE, 3))
    return crops
