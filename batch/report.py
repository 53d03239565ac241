"""The JSON report of a folder run, written in one place however the run ends, and its summary.

    {"images": [ENTRY, ...], "seconds": 12.3, "interrupted": false}

Each input's entry is appended as soon as the run takes it up, so a report cut short (killed,
Ctrl-C) still names what was done; ``interrupted`` says when it is partial, and ``error`` why a
run could not start.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from ..models.files import atomic_destination, remove_stale_partials

PROGRAM = "codeformer-restore"
INTERRUPTED_STATUS = 130
# ``--report -``: the report goes to stdout.
STDOUT = "-"
# Written and removed at once to learn whether a folder takes files.
PROBE_NAME = ".codeformer-write-check"


class ReportEntry(TypedDict, total=False):
    """One input's line of the report; keys appear as the run learns them (JSON as it is)."""

    input: str
    output: str | None  # None: nothing was written
    skipped: bool
    note: str  # why it was skipped (another run holds it)
    faces: list[dict]  # FaceInfo.to_dict() of each restored face
    warning: str
    frames: int  # clips: frames written, faces restored over them, face tracks seen, frame rate
    faces_restored: int
    tracks: int
    fps: float
    seconds: float
    error: str


def report_file(target: str | None) -> Path | None:
    """The report file of ``--report``; None for stdout or no report."""
    return None if target in (None, STDOUT) else Path(target)


def report_problem(target: str | None) -> str | None:
    """Why the report cannot be written to ``target``, found before any work; None when it can."""
    file = report_file(target)
    if file is None:
        return None
    if file.is_dir():
        return f"the report {file} is a folder; give a file name, e.g. {file / 'report.json'}"
    return writable_folder_problem(file.parent, f"the report's folder {file.parent}")


def writable_folder_problem(folder: Path, what: str) -> str | None:
    """Why files cannot be written into ``folder``; None when they can. Nothing is made: a missing folder is
    judged by the nearest folder above it that exists (where it would be made)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{what} is a file, not a folder" if existing == folder else f"{what} lies inside {existing}, a file"
    try:
        with atomic_destination(existing / PROBE_NAME) as probe:
            probe.write_bytes(b"")
        (existing / PROBE_NAME).unlink()
    except OSError as error:
        return f"cannot write into {what} ({error.strerror or error}); check its permissions and free space"
    return None


def write_report(
    target: str | None, entries: list[ReportEntry], seconds: float, cut: bool, error: str | None = None
) -> None:
    """The report to stdout (``-``), atomically to the file ``target``, or nowhere (None)."""
    if target is None:
        return
    fields = {"images": entries, "seconds": round(seconds, 3), "interrupted": cut}
    text = json.dumps({**fields, "error": error} if error else fields, indent=2) + "\n"
    file = report_file(target)
    if file is None:
        print(text, end="")
        return
    with atomic_destination(file) as temporary:
        temporary.write_text(text)


def reported_run(
    report: str | None, output_folder: Path, entries: list[ReportEntry], work: Callable[[], object]
) -> int:
    """Run ``work`` (which fills ``entries``), write the report however it ends and sum up; the exit status:
    0 when every input succeeded, 1 when one failed, 2 when the report cannot be written, 130 on Ctrl-C."""
    problem = report_problem(report)
    if problem is not None:
        print(f"{PROGRAM}: {problem}", file=sys.stderr)
        return 2
    for stale in remove_stale_partials(output_folder):
        print(f"{PROGRAM}: removed {stale.name}, left by a run that was killed", file=sys.stderr)
    started = time.perf_counter()
    interrupted = completed = False
    try:
        work()
        completed = True
    except KeyboardInterrupt:
        interrupted = True
    finally:  # the report is written however the run ends
        elapsed = time.perf_counter() - started
        write_report(report, entries, elapsed, cut=not completed)
    failed = [entry for entry in entries if entry.get("error")]
    faces = sum(len(entry.get("faces", [])) for entry in entries)
    done = len([entry for entry in entries if "faces" in entry and not entry.get("error")])
    print(
        f"{PROGRAM}: {done} image(s) restored, {len(failed)} failed, {faces} face(s) in {elapsed:.1f} s "
        f"({done / elapsed if elapsed else 0:.2f} images/s, {faces / elapsed if elapsed else 0:.2f} faces/s)"
        + (" - interrupted" if interrupted else ""),
        file=sys.stderr,
    )
    if interrupted:
        return INTERRUPTED_STATUS
    return 1 if failed else 0
