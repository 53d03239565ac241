"""Keeping freed CPU memory for reuse while the network runs (Linux with glibc).

A float32 forward makes hundreds of 32-128 MiB activations. glibc serves every block over
32 MiB with fresh pages from the kernel and unmaps it when freed, so each activation is
page-faulted and zeroed again: about a third of a forward on a 2-core CPU (9.2 s against
5.9 s a face, measured; BENCHMARKS.md). While a run is in progress, glibc is told to serve
big blocks from its heap and to keep what is freed there; when the last run ends, the usual
settings come back and the heap is trimmed, so the memory returns to the system. Results
are unchanged: only where the memory comes from changes.

Runs in several threads share one scope (the settings are process-wide). In a thread other
than the main one, glibc's per-thread heap serves blocks over 64 MiB from fresh mappings
whatever the settings, so there the gain is smaller; ``MALLOC_ARENA_MAX=1`` when the process
starts puts every thread on the main heap (README, Precision). Nothing is changed
where glibc is not the C library, where the user tunes glibc's allocator through its own
environment variables, or where ``CODEFORMER_NODES_KEEP_CPU_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch

OPT_OUT_VARIABLE = "CODEFORMER_NODES_KEEP_CPU_MEMORY"
# The user's own glibc allocator settings win: with any of these set, nothing is changed.
GLIBC_MALLOC_VARIABLES = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
# mallopt parameters (malloc.h) and the values put back afterwards: glibc's default mmap count,
# and the trim threshold glibc settles on once a process has freed a 32 MiB block (as torch does).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_MMAP_MAX = 65536
SETTLED_TRIM_THRESHOLD = 64 << 20
NEVER_TRIM = 2**31 - 1

LOG = logging.getLogger("codeformer_nodes")
THREAD_ADVICE = (
    "CodeFormer on the CPU in a worker thread: glibc gives this thread's largest blocks back to the system "
    "after each use; start the process with MALLOC_ARENA_MAX=1 for about 1.5x faster faces (README, Precision)"
)

_lock = threading.Lock()
_runs_in_progress = 0
_advised = False


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc, else None."""
    if "CS_GNU_LIBC_VERSION" not in os.confstr_names:
        return None
    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        return None
    return ctypes.CDLL(None)


def _applies(device: torch.device) -> bool:
    if device.type != "cpu" or os.environ.get(OPT_OUT_VARIABLE, "1") == "0":
        return False
    return _glibc() is not None and not any(name in os.environ for name in GLIBC_MALLOC_VARIABLES)


@contextmanager
def keep_freed_cpu_memory(device: torch.device) -> Iterator[None]:
    """While the block runs, freed CPU memory stays in the process for the next activation."""
    if not _applies(device):
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _runs_in_progress, _advised
    with _lock:
        if not _advised and threading.current_thread() is not threading.main_thread():
            _advised = True
            if "MALLOC_ARENA_MAX" not in os.environ:
                LOG.info(THREAD_ADVICE)
        _runs_in_progress += 1
        if _runs_in_progress == 1:
            libc = _glibc()
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)


def _leave() -> None:
    global _runs_in_progress
    with _lock:
        _runs_in_progress -= 1
        if _runs_in_progress == 0:
            libc = _glibc()
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
            libc.malloc_trim(0)
