"""The API-format ComfyUI workflow equivalent to a command line's options: node ids and widget
names as the nodes beside this file declare them."""

from __future__ import annotations

from ..pipeline import FidelityRamp, RestoreOptions
from .sockets import DEFAULT_RAMP, DEFAULTS


def export_workflow(options: RestoreOptions, model_name: str, precision: str, image_name: str) -> dict:
    """LoadImage -> Load Face Restorer -> Fidelity -> Restore Faces -> SaveImage, as ``/prompt`` takes it."""
    ramp = options.fidelity if isinstance(options.fidelity, FidelityRamp) else None
    shown_ramp = ramp or DEFAULT_RAMP
    w = DEFAULTS.fidelity if ramp else float(options.fidelity)
    selection = options.face_selection
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "CodeFormerModelLoader", "inputs": {"model_name": model_name, "precision": precision}},
        "3": {
            "class_type": "CodeFormerFidelity",
            "inputs": {
                "w": w,
                "visibility": options.visibility,
                "size_ramp": ramp is not None,
                "small_face_w": shown_ramp.small_w,
                "large_face_w": shown_ramp.large_w,
                "small_face_size": int(shown_ramp.small_size),
                "large_face_size": int(shown_ramp.large_size),
                "sweep": "",
            },
        },
        "4": {
            "class_type": "CodeFormerRestoreFaces",
            "inputs": {
                "image": ["1", 0],
                "codeformer_model": ["2", 0],
                "fidelity": ["3", 0],
                "w": w,
                "detector": options.detector,
                "detection_size": options.detection_size or 0,
                "confidence": options.detection_confidence,
                "face_selection": selection if isinstance(selection, str) else "indices",
                "face_indices": "" if isinstance(selection, str) else ",".join(map(str, selection)),
                "min_face_size": int(options.min_face_size),
                "max_face_size": int(options.max_face_size or 0),
                "has_aligned": options.has_aligned,
                "upscale": options.upscale,
                "parse_mask": options.uses_parse_mask,
                "chunk_size": options.chunk_size or 0,
                "flow": options.flow,
                "keep_size": options.keep_size,
                "draw_box": options.draw_box,
            },
        },
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "codeformer"}},
    }
