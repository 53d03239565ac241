"""The face pipeline: detect, align, restore in batches, paste back.

The names below resolve on first use, so that the options and their checks import without torch
(the console scripts build ``--help`` from them).
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_EXPORTS[name], __name__), name)
