"""Impact Pack SEGS nodes: our faces as SEGS, and faces restored inside any SEGS."""

from __future__ import annotations

import torch

from ..pipeline.segs import faces_to_segs, restore_segs
from . import host
from .sockets import (
    CATEGORY,
    DEFAULTS,
    DETECTION_WIDGETS,
    FACES_SOCKET,
    FIDELITY_SOCKET,
    FLOW_WIDGETS,
    MODEL_SOCKET,
    DetectedFaces,
    FidelityControl,
    detection_options,
)


class CodeFormerFacesToSEGS:
    """Our faces as Impact Pack SEGS (crop regions, soft paste masks, label "face")."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("SEGS",)
    RETURN_NAMES = ("segs",)
    OUTPUT_TOOLTIPS = ("one SEG per face: its crop region, a soft paste mask and the label face",)
    FUNCTION = "convert"
    DESCRIPTION = "Hands the faces CodeFormer found to Impact Pack's detailers, pickers and SEGSPaste."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the image the restore node was given (restored with upscale 1)"}),
                "faces": FACES_SOCKET,
            }
        }

    def convert(self, image: torch.Tensor, faces: DetectedFaces) -> tuple:
        if faces.options.upscale != 1:
            raise ValueError("SEGS follow the input image: restore with upscale 1 to make SEGS of its faces")
        return (faces_to_segs(image, faces.faces, faces.options),)


class CodeFormerRestoreSEGS:
    """Restore the faces inside Impact Pack SEGS; SEGSPaste then pastes them through each SEG's mask."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("SEGS",)
    RETURN_NAMES = ("segs",)
    OUTPUT_TOOLTIPS = ("the same SEGS, each cropped_image holding its restored face (for SEGSPaste)",)
    FUNCTION = "restore"
    DESCRIPTION = (
        "Finds the face (landmarks from the CodeFormer pack's detector) inside each SEG's crop region, restores "
        "it and puts it into the SEG's cropped_image; a SEG without a face is left as it is."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the image the SEGS were detected in"}),
                "segs": (
                    "SEGS",
                    {
                        "tooltip": "Impact Pack SEGS, e.g. from a face detector; each SEG's crop region is "
                        "searched for a face"
                    },
                ),
                "codeformer_model": MODEL_SOCKET,
                **DETECTION_WIDGETS,
            },
            "optional": {**FLOW_WIDGETS, "fidelity": FIDELITY_SOCKET},
        }

    def restore(
        self, image: torch.Tensor, segs: tuple, codeformer_model: host.CodeFormerModel, w: float, detector: str,
        detection_size: int, confidence: float, flow: str = DEFAULTS.flow, fidelity: FidelityControl | None = None,
    ) -> tuple:  # fmt: skip
        control = fidelity or FidelityControl(fidelity=w)
        options = detection_options(
            control, detector, detection_size, confidence, host.helper_weights_folder(), flow=flow
        )
        result = restore_segs(image, segs, codeformer_model.network_on_device(), options)
        host.check_interrupted()
        return (result,)


NODE_CLASS_MAPPINGS = {"CodeFormerFacesToSEGS": CodeFormerFacesToSEGS, "CodeFormerRestoreSEGS": CodeFormerRestoreSEGS}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CodeFormerFacesToSEGS": "CodeFormer Faces to SEGS",
    "CodeFormerRestoreSEGS": "CodeFormer Restore SEGS",
}
