"""The face pipeline: detect, align, restore in batches, paste back.

The names below resolve on first use, so that the options and their checks import without torch
(the console scripts build ``--help`` from them).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY_EXPORTS = {
    "Detection": ".detection",
    "FaceDetector": ".detection",
    "InputError": ".errors",
    "OptionError": ".errors",
    "FidelityRamp": ".options",
    "RestoreOptions": ".options",
    "paste_faces": ".paste",
    "restore_faces": ".restore",
    "sweep_fidelity": ".restore",
    "FaceInfo": ".results",
    "RestoreResult": ".results",
}

__all__ = [*_LAZY_EXPORTS]


__getattr__ = lazy_exports(__name__, _LAZY_EXPORTS)
