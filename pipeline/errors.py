"""Named errors of the pipeline: each message names the option or input that was wrong and what to do."""

from __future__ import annotations


class OptionError(ValueError):
    """A ``RestoreOptions`` or ``VideoOptions`` field holds a value (or a type) the pipeline cannot use;
    the message starts with the field's name."""


class InputError(ValueError):
    """An image, mask, crop, box or SEG handed to the pipeline cannot be used as it is; the message
    names which one (its index) and what to do."""
