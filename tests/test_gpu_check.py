"""scripts/gpu_check.py: its --smoke run on the CPU (so the GPU check cannot rot before a GPU comes), and
that a failing check is a line of the table, never a stop."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_checks import MODES, CheckFailed, CheckSkipped

from .conftest import TESTDATA

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
SECTIONS = ["tests", "precision", "pipeline vs official", "device paths", "other families", "comfyui"]


def gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_run_fills_the_table_and_nothing_fails(tmp_path):
    if not (TESTDATA / "weights").is_dir():
        pytest.skip(f"{TESTDATA} is absent: the detector and the photos live there")
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(report_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={key: value for key, value in os.environ.items() if not key.startswith("CODEFORMER_COMFY")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["smoke"] is True and report["machine"]["device"] == "cpu"
    rows = report["rows"]
    assert [row["section"] for row in rows] == sorted((row["section"] for row in rows), key=SECTIONS.index)
    assert {row["section"] for row in rows} == set(SECTIONS)
    assert [row["check"] for row in rows if row["section"] == "precision"] == list(MODES)
    for row in rows:
        assert set(row) == {"section", "check", "status", "seconds", "values"}
        assert row["status"] == "ok" or row["status"].startswith("skipped: "), row
        assert row["status"] in done.stdout, "every row is a line of the printed table"
    by_check = {row["check"]: row for row in rows}
    assert re.match(r"skipped: smoke run; [1-9]\d*/\d+ tests collected", by_check["pytest -m cuda"]["status"])
    assert by_check["out-of-memory halving"]["status"] == "skipped: no CUDA"
    assert by_check["GFPGAN, RestoreFormer half vs fp32"]["status"] == "skipped: no CUDA"
    assert by_check["VRAM around /free"]["status"].startswith("skipped: no ComfyUI checkout given")
    fp32 = by_check["fp32"]
    assert fp32["status"] == "ok" and fp32["values"]["ms/face b1"] > 0
    for mode in ("mixed-fp16", "fp16"):
        assert "for CUDA GPUs" in by_check[mode]["status"]
    official = by_check["smoke face"]
    assert official["status"] == "ok" and official["values"]["PSNR vs official dB"] >= 40
    paths = by_check["detection + paste"]["values"]
    assert paths["max level diff"] == 0 and paths["background pixels differing"] == 0


def test_a_failing_check_is_a_line_and_a_bug_says_so(capsys):
    gpu_check = gpu_check_module()

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def wrong(values=None):
        raise CheckFailed("codes flipped", {"flipped": 3})

    def skipped():
        raise CheckSkipped("no CUDA")

    def buggy():
        return {}["missing"]

    started = time.perf_counter()
    rows = [
        gpu_check.run_check("s", name, check, started, budget_s=1e9)
        for name, check in (("oom", out_of_memory), ("wrong", wrong), ("skip", skipped), ("bug", buggy))
    ]
    assert [row.status for row in rows] == [
        "FAIL: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "FAIL: codes flipped",
        "skipped: no CUDA",
        "BUG: KeyError: 'missing' (traceback above)",
    ]
    assert rows[1].values == {"flipped": 3} and [row.failed for row in rows] == [True, True, False, True]
    assert "Traceback" in capsys.readouterr().err
    late = gpu_check.run_check("s", "late", skipped, started=-1e9, budget_s=60)
    assert late.status == "skipped: past the 60 s budget"
    assert "FAIL: codes flipped" in gpu_check.table(rows)
