"""The face pipeline: detect, align, restore in batches, paste back."""

from .options import FidelityRamp, RestoreOptions
from .restore import FaceInfo, RestoreResult, paste_faces, restore_faces, sweep_fidelity

__all__ = [
    "FaceInfo",
    "FidelityRamp",
    "RestoreOptions",
    "RestoreResult",
    "paste_faces",
    "restore_faces",
    "sweep_fidelity",
]
