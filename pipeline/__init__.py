"""The face pipeline: detect, align, restore in batches, paste back."""

from .detection import Detection, FaceDetector
from .errors import InputError, OptionError
from .options import FidelityRamp, RestoreOptions
from .paste import paste_faces
from .restore import restore_faces, sweep_fidelity
from .results import FaceInfo, RestoreResult

__all__ = [
    "Detection",
    "FaceDetector",
    "FaceInfo",
    "FidelityRamp",
    "InputError",
    "OptionError",
    "RestoreOptions",
    "RestoreResult",
    "paste_faces",
    "restore_faces",
    "sweep_fidelity",
]
