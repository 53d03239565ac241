"""codeformer-nodes: CodeFormer face restoration as a Python library and a ComfyUI node pack.

Importing stays cheap (ComfyUI imports every pack at start-up): the network, facexlib
and OpenCV load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
# ComfyUI serves this folder as /extensions/<pack>/: the docs panel reads docs/<NodeName>.md there.
WEB_DIRECTORY = "./web"

_LAZY_EXPORTS = {
    "CodeFormer": ".codeformer_arch",
    "CodeFormerConfig": ".codeformer_arch",
    "load_codeformer": ".models",
    "load_face_restorer": ".models",
    "RestorerKind": ".models",
    "ModelDescription": ".models",
    "CodeFormerWeightsError": ".models",
    "WeightsFileError": ".models",
    "UnsupportedModelError": ".models",
    "StateDictMismatchError": ".models",
    "restore_faces": ".pipeline",
    "paste_faces": ".pipeline",
    "sweep_fidelity": ".pipeline",
    "RestoreOptions": ".pipeline",
    "RestoreResult": ".pipeline",
    "FidelityRamp": ".pipeline",
    "FaceInfo": ".pipeline",
    "OptionError": ".pipeline",
    "InputError": ".pipeline",
    # ComfyUI reads these when it loads the pack; resolving them imports the nodes.
    "NODE_CLASS_MAPPINGS": ".nodes",
    "NODE_DISPLAY_NAME_MAPPINGS": ".nodes",
}

__all__ = [*_LAZY_EXPORTS]


# Resolved here rather than through ``_lazy``: pytest imports this file alone (no parent package) when the
# clone's folder name is not a Python name (``codeformer-nodes``), so it may hold no relative import.
def __getattr__(name: str) -> Any:
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY_EXPORTS[name], __name__), name)
