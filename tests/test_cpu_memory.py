"""Freed CPU memory is kept for reuse while the network runs, and given back afterwards (glibc only).

Each case runs in a fresh process (this file run as a script), so that no earlier test has
shaped the heap. It counts the page faults of touching four 64 MiB blocks allocated right after
freeing four (about 65,000 when glibc hands blocks back to the system, its default; none once the
heap has settled while they are kept) and the resident memory left once the last run has ended.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from codeformer_nodes.models.cpu_memory import GLIBC_MALLOC_VARIABLES, OPT_OUT_VARIABLE, keep_freed_cpu_memory

CPU = torch.device("cpu")
BLOCK_FLOATS = 16 << 20  # 64 MiB of float32
PAGE = os.sysconf("SC_PAGE_SIZE")
PAGES_IN_BLOCK = BLOCK_FLOATS * 4 // PAGE
MIB = 1 << 20
BLOCKS_PER_ROUND = 4
PAGES_PER_ROUND = BLOCKS_PER_ROUND * PAGES_IN_BLOCK


def _huge_pages_always() -> bool:
    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return setting.is_file() and "[always]" in setting.read_text()


pytestmark = [
    pytest.mark.skipif("CS_GNU_LIBC_VERSION" not in os.confstr_names, reason="the memory policy applies to glibc"),
    pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages (always) hide the faults counted here"),
]


# --- in the fresh process ----------------------------------------------------------------------


def faults_of_reused_blocks() -> int:
    """Page faults taken by touching four 64 MiB blocks allocated right after four were freed, as a forward's
    activations are: the fewest of six rounds. Inside the scope glibc may first place blocks around small
    allocations made meanwhile and grow its heap for a few rounds (measured here: 0 faults from round 3 to 5,
    in 20 of 20 fresh processes), so the fewest shows the steady state a forward's hundreds of activations
    reach; outside it, every round faults every page."""
    counts = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        held = [torch.ones(BLOCK_FLOATS) for _ in range(BLOCKS_PER_ROUND)]
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del held
    return min(counts)


def resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / MIB


def touch_and_free(blocks: int) -> None:
    """Hold ``blocks`` 64 MiB activations at once, then free them, as a forward does."""
    held = [torch.ones(BLOCK_FLOATS) for _ in range(blocks)]
    del held


def case_default() -> dict:
    return {"faults": faults_of_reused_blocks()}


def case_scope() -> dict:
    start = resident_mib()
    with keep_freed_cpu_memory(CPU):
        faults = faults_of_reused_blocks()
        touch_and_free(8)
        kept = resident_mib() - start
    return {"faults": faults, "kept_mib": kept, "left_mib": resident_mib() - start}


def case_nested_and_threads() -> dict:
    start = resident_mib()
    with keep_freed_cpu_memory(CPU):
        with keep_freed_cpu_memory(CPU):
            touch_and_free(8)
        after_inner = faults_of_reused_blocks()

        def other_run() -> None:
            with keep_freed_cpu_memory(CPU):
                touch_and_free(2)

        thread = threading.Thread(target=other_run)
        thread.start()
        thread.join()
        after_thread = faults_of_reused_blocks()
        kept = resident_mib() - start
    return {
        "after_inner": after_inner,
        "after_thread": after_thread,
        "kept_mib": kept,
        "left_mib": resident_mib() - start,
    }


def case_off() -> dict:
    """The scope on another device type, and on the CPU with the opt-out or the user's glibc settings."""
    with keep_freed_cpu_memory(torch.device("cuda")):  # a device object needs no GPU
        other_device = faults_of_reused_blocks()
    os.environ[OPT_OUT_VARIABLE] = "0"
    with keep_freed_cpu_memory(CPU):
        opted_out = faults_of_reused_blocks()
    os.environ[OPT_OUT_VARIABLE] = "1"
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "131072"  # read by glibc at start only; here it says "leave mine"
    with keep_freed_cpu_memory(CPU):
        users_settings = faults_of_reused_blocks()
    return {"other_device": other_device, "opted_out": opted_out, "users_settings": users_settings}


CASES = {f.__name__.removeprefix("case_"): f for f in (case_default, case_scope, case_nested_and_threads, case_off)}


# --- the tests ------------------------------------------------------------------------------------------


def run_case(name: str) -> dict:
    environment = {
        key: value for key, value in os.environ.items() if key not in (OPT_OUT_VARIABLE, *GLIBC_MALLOC_VARIABLES)
    }
    done = subprocess.run(
        [sys.executable, __file__, name], capture_output=True, text=True, env=environment, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_glibc_gives_big_blocks_back_by_default() -> None:
    assert run_case("default")["faults"] > PAGES_PER_ROUND // 2


def test_freed_memory_is_reused_inside_the_scope_and_given_back_after_it() -> None:
    result = run_case("scope")
    assert result["faults"] < PAGES_PER_ROUND // 20
    assert result["kept_mib"] > 4 * 64  # the freed activations stayed in the process...
    assert result["left_mib"] < 64  # ...until the run ended


def test_nested_and_concurrent_runs_share_one_scope() -> None:
    result = run_case("nested_and_threads")
    assert result["after_inner"] < PAGES_PER_ROUND // 20
    assert result["after_thread"] < PAGES_PER_ROUND // 20
    assert result["kept_mib"] > 4 * 64
    assert result["left_mib"] < 64


def test_nothing_changes_off_the_cpu_when_opted_out_or_with_the_users_settings() -> None:
    result = run_case("off")
    assert min(result.values()) > PAGES_PER_ROUND // 2, result


if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]]()))


def test_a_worker_thread_is_told_how_to_get_the_whole_gain(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from codeformer_nodes.models import cpu_memory

    monkeypatch.setattr(cpu_memory, "_advised", False)
    for name in (OPT_OUT_VARIABLE, *GLIBC_MALLOC_VARIABLES, "MALLOC_ARENA_MAX"):
        monkeypatch.delenv(name, raising=False)

    def run_twice() -> None:
        for _ in range(2):
            with keep_freed_cpu_memory(CPU):
                pass

    with caplog.at_level("INFO", logger="codeformer_nodes"):
        run_twice()  # the main thread needs no advice
        thread = threading.Thread(target=run_twice)
        thread.start()
        thread.join()
    assert [record.message for record in caplog.records] == [cpu_memory.THREAD_ADVICE]
