#!/usr/bin/env python3
# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""soak_comfy: run one API workflow many times through ONE ComfyUI server and watch its memory.

Starts a real ComfyUI (CPU, loopback, temp base dir; the same start-up as browser_check.py,
whose server class it imports), then submits N prompts (default 200) of one API-format
workflow one after another, and after each prompt has ended reads the server process's
resident memory (VmRSS in /proc/<pid>/status).  It prints the RSS before the first prompt,
after the first, after the warm-up (default 10 prompts), at the end and at its maximum, the
drift (end against the value after the warm-up, in %) and the slope after the warm-up, and
exits 1 if the drift exceeds --max-drift (default 5 %) or any prompt failed.

Each prompt must differ from the one before, or ComfyUI answers it from its cache and runs
nothing.  --vary chooses how:

- ``w`` (default): the fidelity ``w`` of every CodeFormerRestoreFaces node steps by 0.001 per
  prompt (0.300, 0.301, ...).  The image and model loaders stay cached (the model stays
  loaded, as while a user tunes w), and the restore node runs in full every time:
  detection, alignment, the network, paste-back.  This is the path a leak would follow.
- ``free``: the workflow is unchanged and POST /free (unload models, free memory) comes
  before each prompt after the first, so every prompt also reloads the checkpoint: the
  load/unload cycle is soaked too, at the cost of a load per prompt.

Each finished prompt's /history entry is deleted after it is read, so that ComfyUI's growing
history (kept for up to 10000 prompts) does not count as drift (--keep-history keeps it).

    python scripts/soak_comfy.py --comfy-dir ../ComfyUI --python ../ComfyUI/.venv/bin/python \\
        --models-dir ~/models --input-image face_256.png --detector retinaface_mobile0.25
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_check import PACK_ROOT, CheckFailed, ComfyServer, http, on_sigterm  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def prepare(workflow: dict, a, input_names: list[str]) -> dict:
    """The workflow as it is soaked: LoadImage on the input image, detector switched."""
    wf = copy.deepcopy(workflow.get("prompt", workflow))
    if "nodes" in wf and "links" in wf:
        raise CheckFailed(f"{a.workflow} is in UI format; give an API-format workflow")
    for node in wf.values():
        inputs = node.get("inputs", {})
        if node.get("class_type") == "LoadImage" and input_names:
            inputs["image"] = input_names[0]
        if a.detector and "detector" in inputs:
            inputs["detector"] = a.detector
    return wf


def with_w(wf: dict, w: float) -> dict:
    wf = copy.deepcopy(wf)
    hit = 0
    for node in wf.values():
        if node.get("class_type") == "CodeFormerRestoreFaces" and not isinstance(node["inputs"].get("w"), list):
            node["inputs"]["w"] = w
            hit += 1
    if not hit:
        raise CheckFailed("--vary w: the workflow has no CodeFormerRestoreFaces node with a w widget")
    return wf


def run_prompt(server: ComfyServer, wf: dict, timeout: float) -> dict:
    status, body = http(server.url, "/prompt", {"prompt": wf, "client_id": "soak_comfy"})
    answer = json.loads(body) if body[:1] == b"{" else {}
    if status != 200 or answer.get("node_errors"):
        raise CheckFailed(f"prompt refused (HTTP {status}): {body.decode(errors='replace')[:400]}")
    prompt_id = answer["prompt_id"]
    until = time.time() + timeout
    while True:
        if not server.alive():
            raise CheckFailed(f"server died (rc={server.proc.returncode})")
        hist = json.loads(http(server.url, f"/history/{prompt_id}")[1]).get(prompt_id)
        if hist:
            break
        if time.time() > until:
            http(server.url, "/interrupt", {})
            raise CheckFailed(f"prompt not finished after {timeout:.0f}s")
        time.sleep(0.1)
    st = hist.get("status") or {}
    if st.get("status_str") != "success":
        events = {kind: msg for kind, msg in st.get("messages", [])}
        err = events.get("execution_error") or {}
        raise CheckFailed(
            f"execution failed in node {err.get('node_id')} ({err.get('node_type')}): "
            f"{err.get('exception_type')}: {str(err.get('exception_message', '')).strip()[:300]}"
        )
    images = sum(len(out.get("images", [])) for out in hist.get("outputs", {}).values())
    if images < 1:
        raise CheckFailed("the prompt produced no image")
    return {"id": prompt_id, "images": images}


def slope_kib_per_prompt(values: list[int]) -> float:
    """Least-squares slope of RSS against prompt number."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy-dir", required=True, help="ComfyUI checkout (holds main.py)")
    ap.add_argument("--python", required=True, help="python of the venv ComfyUI is installed in")
    ap.add_argument("--pack", default=str(PACK_ROOT), help="custom node pack folder (default: this project)")
    ap.add_argument("--link-name", default="codeformer-nodes", help="folder name of the pack in custom_nodes")
    ap.add_argument("--models-dir", help="folder with facerestore_models/, facedetection/, upscale_models/")
    ap.add_argument(
        "--input-image",
        action="append",
        default=[],
        required=True,
        help="copied into the input dir; every LoadImage uses the first one",
    )
    ap.add_argument(
        "--workflow",
        default=str(PACK_ROOT / "example_workflows" / "codeformer_basic_api.json"),
        help="API-format workflow (default: the basic example)",
    )
    ap.add_argument("--detector", help="set every 'detector' input to this value")
    ap.add_argument("--prompts", type=int, default=200, help="number of prompts (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="prompts before the drift baseline (default 10)")
    ap.add_argument("--max-drift", type=float, default=5.0, help="allowed drift in %% (default 5)")
    ap.add_argument("--vary", choices=("w", "free"), default="w", help="how each prompt differs (see above)")
    ap.add_argument(
        "--time-limit",
        type=float,
        default=0,
        help="stop submitting after this many seconds (0: none); the figures cover what ran",
    )
    ap.add_argument("--keep-history", action="store_true", help="leave each prompt in ComfyUI's /history")
    ap.add_argument("--print-every", type=int, default=10, help="progress line every N prompts")
    ap.add_argument("--csv", help="write prompt,seconds,rss_kib per prompt to this file")
    ap.add_argument("--start-timeout", type=float, default=180)
    ap.add_argument("--run-timeout", type=float, default=900, help="seconds allowed per prompt")
    ap.add_argument("--keep-temp", action="store_true")
    ap.add_argument("--server-arg", action="append", default=[], help="extra ComfyUI flag (repeatable)")
    a = ap.parse_args(argv)
    if a.prompts <= a.warmup:
        ap.error("--prompts must exceed --warmup")
    with open(a.workflow) as f:
        workflow = json.load(f)

    signal.signal(signal.SIGTERM, on_sigterm)
    server = ComfyServer(a, prefix="soak_comfy_")
    ok = False
    rows: list[tuple[int, float, int]] = []
    try:
        server.start()
        wf = prepare(workflow, a, server.input_names)
        pid = server.proc.pid
        idle = rss_kib(pid)
        print(
            f"soak: {a.prompts} prompt(s) of {os.path.basename(a.workflow)}, vary {a.vary}, "
            f"server pid {pid}, RSS before the first prompt {mib(idle)}",
            flush=True,
        )
        t_all = time.time()
        stopped_early = ""
        for i in range(1, a.prompts + 1):
            if a.time_limit and time.time() - t_all > a.time_limit:
                stopped_early = f"time limit of {a.time_limit:.0f}s reached"
                break
            if a.vary == "w":
                w = round(0.300 + ((i - 1) % 700) * 0.001, 3)
                prompt, what = with_w(wf, w), f"w={w:.3f}"
            else:
                if i > 1:
                    code = http(server.url, "/free", {"unload_models": True, "free_memory": True})[0]
                    if code != 200:
                        raise CheckFailed(f"POST /free answered HTTP {code}")
                    time.sleep(0.5)  # the idle prompt worker applies it
                prompt, what = wf, "after /free" if i > 1 else "first"
            t0 = time.time()
            done = run_prompt(server, prompt, a.run_timeout)
            secs = time.time() - t0
            if not a.keep_history:
                http(server.url, "/history", {"delete": [done["id"]]})
            rss = rss_kib(pid)
            rows.append((i, secs, rss))
            if i == 1 or i % a.print_every == 0 or i == a.prompts:
                print(f"soak: prompt {i}/{a.prompts} {what} {secs:.1f}s RSS {mib(rss)}", flush=True)
        if a.csv:
            with open(a.csv, "w") as f:
                f.write("prompt,seconds,rss_kib\n" + "".join(f"{i},{s:.3f},{r}\n" for i, s, r in rows))
        ran = len(rows)
        if ran <= a.warmup:
            raise CheckFailed(f"only {ran} prompt(s) ran ({stopped_early}); need more than --warmup {a.warmup}")
        rss = [r for _, _, r in rows]
        base, end, peak = rss[a.warmup - 1], rss[-1], max(rss)
        drift = (end - base) / base * 100
        slope = slope_kib_per_prompt(rss[a.warmup - 1 :])
        secs = [s for _, s, _ in rows]
        print(
            f"soak: ran {ran} of {a.prompts} prompt(s) in {time.time() - t_all:.0f}s "
            f"({sum(secs) / ran:.1f}s per prompt)" + (f"; stopped early: {stopped_early}" if stopped_early else "")
        )
        print(
            f"soak: RSS idle {mib(idle)}, after prompt 1 {mib(rss[0])}, after prompt {a.warmup} {mib(base)} "
            f"(baseline), end {mib(end)}, max {mib(peak)} (prompt {rss.index(peak) + 1})"
        )
        print(
            f"soak: drift {drift:+.2f}% (end vs after prompt {a.warmup}; limit {a.max_drift:g}%), "
            f"slope after warm-up {slope:+.1f} KiB/prompt"
        )
        ok = drift <= a.max_drift
        print(
            f"soak_comfy: {'OK' if ok else 'FAIL'} drift {drift:+.2f}% over {ran - a.warmup} prompt(s) "
            f"after the warm-up" + ("" if ok else f" exceeds {a.max_drift:g}%")
        )
    except (CheckFailed, OSError, ValueError, KeyError, TypeError, KeyboardInterrupt) as e:
        print(
            f"soak_comfy: FAIL {'' if isinstance(e, CheckFailed) else type(e).__name__ + ': '}{e}"
            + (f" (after {len(rows)} prompt(s))" if rows else "")
        )
        server.print_log_tail()
    finally:
        server.close(keep=not ok or a.keep_temp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
