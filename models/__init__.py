"""Finding, checking, loading and caching CodeFormer weights."""

from .checkpoint import TASKS, WEIGHT_SUFFIXES, read_state_dict, recognise
from .errors import CodeFormerWeightsError, StateDictMismatchError, UnsupportedModelError, WeightsFileError
from .loader import LoadedCodeFormer, ModelDescription, build_codeformer, clear_model_cache, load_codeformer
from .precision import (
    PRECISION_HELP,
    PRECISIONS,
    DeviceCapabilities,
    Precision,
    choose_precision,
    device_capabilities,
    has_native_bfloat16,
)

__all__ = [
    "PRECISIONS",
    "TASKS",
    "LoadedCodeFormer",
    "PRECISION_HELP",
    "Precision",
    "DeviceCapabilities",
    "choose_precision",
    "device_capabilities",
    "has_native_bfloat16",
    "WEIGHT_SUFFIXES",
    "CodeFormerWeightsError",
    "ModelDescription",
    "StateDictMismatchError",
    "UnsupportedModelError",
    "WeightsFileError",
    "build_codeformer",
    "clear_model_cache",
    "load_codeformer",
    "read_state_dict",
    "recognise",
]
