#!/usr/bin/env python3
# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""gpu_check: one command that proves the CUDA paths on a GPU machine, in under eight minutes.

With nothing but ``bash scripts/setup.sh`` and ``../shared`` (or ``./shared``) beside the project (the
recipe weights, the real MobileNet detector, the test photos; nothing is downloaded), it runs:

1. the tests marked ``cuda`` (``pytest -m cuda``), and prints their summary;
2. each precision mode against float32: codes flipped on the reference vectors and on every face of
   the test photos, the largest level difference and PSNR of the restored faces, ms per face at batch
   1, 8 and 32, peak GPU memory;
3. the whole pipeline (``auto``) against CodeFormer's own flow on the same device (codeformer-pip, as
   its command runs it) on the crowd and a 4K image: faces per second both ways, the ratio, the share
   of time outside the network, PSNR against the official output;
4. detection and paste-back on the GPU against the CPU path (within 1 level, background bit-identical),
   and out-of-memory halving under a capped process memory;
5. GFPGAN and RestoreFormer (random weights of their shapes) in fp16 and bf16 against fp32, in the GPU's
   own half arithmetic (a mode a family is offered in must keep >= 40 dB);
6. the basic and video example workflows in a real headless ComfyUI on the GPU, and its VRAM before
   and after ``/free`` (``--comfy-dir``, or skipped with the reason).

Every check is one line of one table, also written as JSON; a failure is a line, never a stop. A
check that raises an error no check expects (a bug in this script) is a ``BUG`` line with its
traceback on stderr. Exit status 1 when any line is FAIL or BUG.

``--smoke`` runs the same code on the CPU with tiny inputs in under a minute (CI: ``tests/test_gpu_check.py``);
CUDA-only lines say "skipped: no CUDA".

    .venv/bin/python scripts/gpu_check.py --json gpu_check.json [--comfy-dir ../ComfyUI] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ and tests/ are the project's, not installed

import torch  # noqa: E402

from benchmarks.gpu_checks import CheckFailed, CheckSkipped, Setup, network_checks  # noqa: E402
from benchmarks.gpu_comfy import comfy_checks  # noqa: E402

# The bound on a single datacenter GPU; checks that would start later are skipped.
BUDGET_S = 480
TESTS_TIMEOUT_S = 300
# Errors a check may meet on a machine (a driver, memory, a file, a subprocess); they make a FAIL line.
CHECK_ERRORS = (RuntimeError, ValueError, OSError, ImportError, subprocess.SubprocessError)
# Errors that mean this script is wrong; they make a BUG line and print their traceback.
SCRIPT_ERRORS = (TypeError, AttributeError, KeyError, IndexError, NameError, AssertionError, ZeroDivisionError)


@dataclass
class Row:
    """One line of the table."""

    section: str
    check: str
    status: str  # "ok", "FAIL: reason", "BUG: error", "skipped: reason"
    seconds: float
    values: dict[str, object] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status.startswith(("FAIL", "BUG"))


def run_check(section: str, name: str, check, started: float, budget_s: float) -> Row:
    """Run one check and record what came of it; never raises for the checks' own errors."""
    begin = time.perf_counter()
    if begin - started > budget_s:
        return Row(section, name, f"skipped: past the {budget_s:.0f} s budget", 0.0)
    values: dict[str, object] = {}
    try:
        values, status = check(), "ok"
    except CheckSkipped as skipped:
        status = f"skipped: {skipped}"
    except CheckFailed as failed:
        values, status = failed.values, f"FAIL: {failed}"
    except CHECK_ERRORS as error:
        status = f"FAIL: {type(error).__name__}: {first_line(error)}"
    except SCRIPT_ERRORS as error:
        traceback.print_exc()
        status = f"BUG: {type(error).__name__}: {first_line(error)} (traceback above)"
    if not isinstance(values, dict):
        values, status = {}, f"BUG: the check returned {type(values).__name__}, not its numbers"
    row = Row(section, name, status, round(time.perf_counter() - begin, 1), values)
    print(f"[{row.seconds:6.1f} s] {section} / {name}: {status}", flush=True)
    return row


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines() or [""])[0][:300]


def cuda_tests(smoke: bool) -> dict[str, object]:
    """``pytest -m cuda`` in a process of its own; on a CPU only collected (they would all skip)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    if smoke or not torch.cuda.is_available():
        done = subprocess.run([*command, "--collect-only"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        summary = done.stdout.strip().splitlines()[-1:] or [done.stderr.strip()[-300:]]
        if done.returncode != 0 or not summary[0].split("/")[0].isdigit() or summary[0].startswith("0/"):
            raise CheckFailed("the tests marked cuda were not collected", {"pytest": summary[0]})
        raise CheckSkipped(f"{'smoke run' if smoke else 'no CUDA'}; {summary[0]}")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TESTS_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    values = {"pytest": lines[-1] if lines else done.stderr.strip()[-300:]}
    print("\n".join(lines[-15:]), flush=True)
    if done.returncode != 0:
        raise CheckFailed("CUDA tests failed", values)
    if " passed" not in values["pytest"]:
        raise CheckFailed("no CUDA test passed (all skipped?)", values)
    return values


def machine(device: torch.device) -> dict[str, object]:
    from codeformer_nodes.models import choose_precision, device_capabilities

    described: dict[str, object] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "capabilities": asdict(device_capabilities(device)),
        "auto precision": str(choose_precision("auto", device)),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        described |= {"gpu": properties.name, "gpu MiB": properties.total_memory >> 20, "cuda": torch.version.cuda}
    else:
        described["cpu"] = platform.processor() or platform.machine()
    return described


def table(rows: list[Row]) -> str:
    """The rows as one fixed-width table, the numbers as ``name=value`` in the last column."""
    cells = [["section", "check", "status", "s", "values"]]
    for row in rows:
        numbers = "; ".join(f"{key}={value}" for key, value in row.values.items())
        cells.append([row.section, row.check, row.status, f"{row.seconds:.1f}", numbers])
    widths = [max(len(line[column]) for line in cells) for column in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=False)) + "  " + line[4]
        for line in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny inputs, under a minute (for CI)")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where the table goes as JSON")
    parser.add_argument("--comfy-dir", help="a ComfyUI checkout (or CODEFORMER_COMFY_DIR); without one, skipped")
    parser.add_argument("--comfy-python", help="ComfyUI's Python (or CODEFORMER_COMFY_PYTHON; default its .venv)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="checks that would start later are skipped")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    started = time.perf_counter()
    described = machine(device)
    print("gpu_check:", json.dumps(described), flush=True)
    rows = [run_check("tests", "pytest -m cuda", lambda: cuda_tests(args.smoke), started, args.budget_s)]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as temporary:
        try:
            setup = Setup(device, args.smoke, Path(temporary))
        except (OSError, ImportError) as missing:
            rows.append(Row("setup", "weights and photos", f"FAIL: {first_line(missing)}", 0.0))
        else:
            checks = [*network_checks(setup), *comfy_checks(setup, args.comfy_dir, args.comfy_python)]
            rows += [run_check(section, name, check, started, args.budget_s) for section, name, check in checks]
    report = {"machine": described, "smoke": args.smoke, "seconds": round(time.perf_counter() - started, 1)}
    report["rows"] = [asdict(row) for row in rows]
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(table(rows))
    failed = sum(row.failed for row in rows)
    print(f"gpu_check: {len(rows)} checks, {failed} failed, {report['seconds']} s; JSON in {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
