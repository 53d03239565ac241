"""Named errors for weight files: each message names the file, what was found and what to do."""

from __future__ import annotations


class CodeFormerWeightsError(Exception):
    """Base class: a weights file could not be turned into a CodeFormer network."""


class WeightsFileError(CodeFormerWeightsError):
    """The file is missing, empty, a folder, truncated, corrupt or holds unsafe objects."""


class UnsupportedModelError(CodeFormerWeightsError):
    """The file holds weights, but not of a CodeFormer network this package can build."""


class StateDictMismatchError(CodeFormerWeightsError):
    """The file looks like CodeFormer, but keys are missing, unexpected or mis-shaped."""
