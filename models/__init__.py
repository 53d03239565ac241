"""Finding, checking, loading and caching CodeFormer weights."""

from .checkpoint import TASKS, WEIGHT_SUFFIXES, read_state_dict, recognise
from .errors import CodeFormerWeightsError, StateDictMismatchError, UnsupportedModelError, WeightsFileError
from .loader import (
    PRECISIONS,
    LoadedCodeFormer,
    ModelDescription,
    build_codeformer,
    choose_dtype,
    clear_model_cache,
    load_codeformer,
)

__all__ = [
    "PRECISIONS",
    "TASKS",
    "LoadedCodeFormer",
    "choose_dtype",
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
