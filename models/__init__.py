"""Finding, checking, loading and caching face-restoration weights (CodeFormer, GFPGAN, RestoreFormer).

The names below resolve on first use, so that importing a light module of this package (the
console scripts' choices, the download pins) does not import torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY_EXPORTS = {
    "BACKENDS": ".choices",
    "PRECISIONS": ".choices",
    "PRECISION_HELP": ".choices",
    "TASKS": ".choices",
    "WEIGHT_SUFFIXES": ".checkpoint",
    "read_state_dict": ".checkpoint",
    "recognise": ".checkpoint",
    "CodeFormerWeightsError": ".errors",
    "StateDictMismatchError": ".errors",
    "UnsupportedModelError": ".errors",
    "WeightsFileError": ".errors",
    "LoadedCodeFormer": ".loader",
    "ModelDescription": ".loader",
    "build_codeformer": ".loader",
    "clear_model_cache": ".loader",
    "load_codeformer": ".loader",
    "load_face_restorer": ".loader",
    "FaceRestorer": ".loader",
    "build_face_restorer": ".loader",
    "precision_of": ".loader",
    "RestorerKind": ".restorers",
    "SpandrelFaceRestorer": ".restorers",
    "DeviceCapabilities": ".precision",
    "Precision": ".precision",
    "choose_precision": ".precision",
    "device_capabilities": ".precision",
    "has_native_bfloat16": ".precision",
}

__all__ = [*_LAZY_EXPORTS]


__getattr__ = lazy_exports(__name__, _LAZY_EXPORTS)
