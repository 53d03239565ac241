"""The device a network is asked to run on, checked before anything is built there."""

from __future__ import annotations

import torch


def usable_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` this machine's torch can run on (None: the CPU); otherwise a
    ``ValueError`` naming it, instead of torch's RuntimeError or AssertionError from deep inside."""
    if device is None:
        return torch.device("cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError as error:  # torch's words for an unknown device string
        raise ValueError(f"device {device!r} is not one torch knows ({error}); e.g. cpu, cuda, cuda:1, mps") from error
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(parsed.type)
    if available is not None and not available():
        raise ValueError(f"device {device}: this machine's torch has no {parsed.type} device; use cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return parsed


def default_device() -> torch.device:
    """CUDA when there is one, else the CPU (the command line's default)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
