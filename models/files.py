"""Files written whole or not at all, for every writer of the package (images, videos, reports,
converted and exported models, copied weights).

A writer writes into a temporary file beside the destination and renames it into place when
complete, so a reader never sees half a file. The temporary file is named
``.NAME.PID.XXXXXXXX.partial``: :func:`remove_stale_partials` recognises the ones whose writer
died (killed mid-write) and leaves those of writers still running alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_prefix(name: str) -> str:
    """The start of the temporary name a writer of this process uses for ``name``."""
    return f".{name}.{os.getpid()}."


@contextmanager
def atomic_destination(destination: Path) -> Iterator[Path]:
    """A temporary path to write ``destination``'s content into; it replaces ``destination`` when the
    block completes, and is removed when it fails. The file's mode follows the umask, as a plain
    ``open`` would make it (``mkstemp`` alone makes it private)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=partial_prefix(destination.name), suffix=PARTIAL_SUFFIX
    )
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder``; returns them."""
    removed = []
    for partial in folder.glob(f".*{PARTIAL_SUFFIX}") if folder.is_dir() else ():
        fields = partial.name.rsplit(".", 3)
        if len(fields) == 4 and fields[1].isdigit() and not process_alive(int(fields[1])):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
