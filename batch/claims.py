"""Claim files, so that two runs on one folder never restore the same image at once.

Before restoring, a run creates ``.NAME.claim`` beside the output (exclusively, holding its
process id) and removes it once the output is written. Another run finding a claim whose
process still runs leaves that image alone; a claim whose process died (killed mid-run) is
taken over.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.files import process_alive
from .report import ReportEntry

CLAIM_SUFFIX = ".claim"


def claim_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}{CLAIM_SUFFIX}")


def claim(destination: Path) -> int | None:
    """Claim ``destination`` for this process: None on success, else the process id holding it."""
    path = claim_path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and holder != os.getpid() and process_alive(holder):
                return holder
            path.unlink(missing_ok=True)  # left by a run that died: take it over
            continue
        with os.fdopen(handle, "w") as file:
            file.write(str(os.getpid()))
        return None


def release(destination: Path) -> None:
    claim_path(destination).unlink(missing_ok=True)


def _holder(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def mark_skipped(entry: ReportEntry, holder: int | None) -> ReportEntry:
    """``entry`` as left alone: to the run ``holder`` restoring it right now, or (None) already done."""
    note = {} if holder is None else {"note": f"another run (process {holder}) is restoring it"}
    entry.update(skipped=True, faces=[], seconds=0.0, **note)  # type: ignore[typeddict-item]
    return entry
