# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""One UI-format workflow through the page: load, check widgets, queue, compare with its API twin, fetch outputs."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

from .page import JS_DIALOGS, JS_LOAD, JS_OUTPUT_SHOWN, JS_QUEUE, JS_SET_WIDGET, JS_WIDGETS, close_dialogs, screenshot
from .server import CheckFailed, ComfyServer, http, png_size


def same_value(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def widget_problems(data: dict, page_nodes: list[dict], skip: set[tuple[str, str]]) -> list[str]:
    """Values the page refused or changed on load, and combo values outside their choices."""
    problems = []
    src = {str(n["id"]): n for n in data.get("nodes", [])}
    for node in page_nodes:
        nid, ntype = str(node["id"]), node["type"]
        want = src.get(nid, {}).get("widgets_values")
        got = node["serialized"]
        names = [w["name"] for w in node["widgets"] if w["serialize"]]
        if isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                problems.append(
                    f"node {nid} ({ntype}): the file has {len(want)} widget value(s), the page "
                    f"keeps {len(got) if isinstance(got, list) else 0} ({names})"
                )
            else:
                for i, (w, g) in enumerate(zip(want, got, strict=True)):
                    name = names[i] if i < len(names) else f"#{i}"
                    if (ntype, name) not in skip and not same_value(w, g):
                        problems.append(f"node {nid} ({ntype}) {name}: {w!r} became {g!r} on load")
        for w in node["widgets"]:
            if (ntype, w["name"]) in skip or not w["values"]:
                continue
            if w["value"] not in w["values"]:
                problems.append(
                    f"node {nid} ({ntype}) {w['name']}: {w['value']!r} is not among the choices "
                    f"{w['values'][:8]}{' ...' if len(w['values']) > 8 else ''}"
                )
    return problems


# Values the page puts into a prompt for widgets of its own (the node declares no such input;
# the server ignores them): left out when the page's prompt is compared with the API twin.
FRONTEND_ONLY_INPUTS = {("LoadVideo", "video-preview")}


def canonical_prompt(prompt: dict, ignore: set[tuple[str, str]]) -> list:
    """A prompt with node ids replaced by what they are, so that two numberings compare equal."""

    def node_key(nid, seen=()):
        node = prompt[nid]
        ins = []
        for k, v in sorted(node.get("inputs", {}).items()):
            if (node["class_type"], k) in ignore:
                continue
            if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt and nid not in seen:
                v = ["<-", node_key(str(v[0]), seen + (nid,)), v[1]]
            ins.append([k, v])
        return [node["class_type"], ins]

    return sorted((node_key(nid) for nid in prompt), key=json.dumps)


def compare_with_api_twin(sent: dict, api_path: Path, ignore: set[tuple[str, str]]) -> str | None:
    with open(api_path) as f:
        twin = json.load(f)
    a, b = canonical_prompt(sent, ignore), canonical_prompt(twin, ignore)
    if a == b:
        return None
    only_page = [json.dumps(x)[:200] for x in a if x not in b]
    only_file = [json.dumps(x)[:200] for x in b if x not in a]
    return f"page prompt differs from {api_path.name}: page-only {only_page[:2]}, file-only {only_file[:2]}"


def check_workflow(page, server: ComfyServer, path: Path, a, registered: set[str]) -> str:
    """Runs the steps for one UI workflow; returns the text of its OK line or raises CheckFailed."""
    from playwright.sync_api import Error as PlaywrightError

    t0 = time.time()
    with open(path) as f:
        data = json.load(f)
    if not (isinstance(data, dict) and "nodes" in data and "links" in data):
        raise CheckFailed("not a UI-format workflow (no 'nodes'/'links'); API files are for comfy_e2e.py")
    name = path.stem
    types = {n["type"] for n in data["nodes"]}
    for sub in (data.get("definitions") or {}).get("subgraphs") or []:
        types |= {n["type"] for n in sub.get("nodes", [])}
    unregistered = sorted(types - registered)
    if unregistered:
        raise CheckFailed(f"node type(s) not registered in the page: {', '.join(unregistered)}")

    close_dialogs(page)
    missing = page.evaluate(JS_LOAD, [data, name])
    page.wait_for_timeout(800)  # dialogs open asynchronously after loadGraphData resolves
    if missing:
        raise CheckFailed(f"the frontend reported missing node type(s): {', '.join(missing)}")
    if missing is None:
        raise CheckFailed("loadGraphData did not reach afterConfigureGraph (the graph did not load)")
    dialogs = page.evaluate(JS_DIALOGS)
    if dialogs:
        raise CheckFailed(f"dialog after loading: {dialogs[0]}")
    page_nodes = page.evaluate(JS_WIDGETS)
    if len(page_nodes) != len(data["nodes"]):
        raise CheckFailed(f"the page holds {len(page_nodes)} node(s), the file {len(data['nodes'])}")

    notes, skip, ignore = [], set(), set(FRONTEND_ONLY_INPUTS)
    # A LoadImage file that is not in this server's input dir: switch it, like comfy_e2e.py.
    for node in page_nodes:
        if node["type"] != "LoadImage":
            continue
        image = next((w for w in node["widgets"] if w["name"] == "image"), None)
        if image and server.input_names and image["value"] not in server.input_names:
            res = page.evaluate(JS_SET_WIDGET, ["LoadImage", "image", server.input_names[0]])
            if res.get("error"):
                raise CheckFailed(res["error"])
            notes.append(f"LoadImage {image['value']!r} -> {server.input_names[0]!r}")
            skip.add(("LoadImage", "image"))
            ignore.add(("LoadImage", "image"))
            break
    problems = widget_problems(data, page_nodes, skip)
    if problems:
        raise CheckFailed("widget value(s) refused: " + "; ".join(problems[:4]))
    if a.detector:
        res = page.evaluate(JS_SET_WIDGET, [None, "detector", a.detector])
        if res.get("error"):
            raise CheckFailed(res["error"])
        if res["changed"]:
            notes.append(f"detector -> {a.detector}")
            ignore.update(
                (n["type"], "detector") for n in page_nodes if any(w["name"] == "detector" for w in n["widgets"])
            )

    if a.load_only:
        if a.screenshots:
            notes.append(f"screenshot {screenshot(page, a.screenshots, name)}")
        return f"{len(data['nodes'])} node(s) loaded in {time.time() - t0:.1f}s, not queued; " + "; ".join(notes)

    # Queue from the page; the request it sends and the server's answer are captured.
    with page.expect_response(
        lambda r: r.url.endswith("/prompt") and r.request.method == "POST", timeout=60_000
    ) as answer:
        page.evaluate(JS_QUEUE)
    resp = answer.value
    body = resp.json() if resp.status in (200, 400) else {}
    # queuePrompt's own return value is false whenever node_errors is present, even as {}.
    if resp.status != 200 or body.get("node_errors"):
        err = body.get("error")
        err = err.get("message") if isinstance(err, dict) else err
        raise CheckFailed(
            f"the server refused the prompt (HTTP {resp.status}): {err}; "
            f"node_errors {json.dumps(body.get('node_errors'))[:400]}"
        )
    prompt_id = body["prompt_id"]
    sent = json.loads(resp.request.post_data)["prompt"]
    if a.detector:
        wrong = [
            nid
            for nid, n in sent.items()
            if "detector" in n.get("inputs", {}) and n["inputs"]["detector"] != a.detector
        ]
        if wrong:
            raise CheckFailed(f"the page sent another detector for node(s) {wrong}")
    twin = path.with_name(path.stem + "_api.json")
    if twin.is_file():
        diff = compare_with_api_twin(sent, twin, ignore)
        if diff:
            raise CheckFailed(diff)
        notes.append(f"prompt = {twin.name}")

    # Wait for the prompt's end in /history, then fetch its images.
    until = time.time() + a.run_timeout
    while True:
        if not server.alive():
            raise CheckFailed(f"server died (rc={server.proc.returncode}); log: {server.log_path}")
        hist = json.loads(http(server.url, f"/history/{prompt_id}")[1]).get(prompt_id)
        if hist:
            break
        if time.time() > until:
            http(server.url, "/interrupt", {})
            raise CheckFailed(f"not finished after {a.run_timeout:.0f}s")
        time.sleep(0.5)
    status = hist.get("status") or {}
    events = {kind: msg for kind, msg in status.get("messages", [])}
    if status.get("status_str") != "success":
        err = events.get("execution_error") or {}
        raise CheckFailed(
            f"execution failed in node {err.get('node_id')} ({err.get('node_type')}): "
            f"{err.get('exception_type')}: {str(err.get('exception_message', '')).strip()[:300]}"
        )
    sizes, image_nodes = [], []
    for nid, out in hist.get("outputs", {}).items():
        for item in out.get("images", []):
            q = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
            code, blob = http(server.url, "/view?" + q, timeout=60)
            if code != 200:
                raise CheckFailed(f"/view of {item.get('filename')} answered HTTP {code}")
            wh = png_size(blob)
            sizes.append(f"{wh[0]}x{wh[1]}" if wh else "?")
            image_nodes.append(nid)
    if len(sizes) < a.min_images:
        raise CheckFailed(f"{len(sizes)} output image(s), expected at least {a.min_images}")
    t_run = time.time() - t0

    # The page shows the images in its output nodes; then the screenshot.
    shown = True
    try:
        page.wait_for_function(JS_OUTPUT_SHOWN, arg=sorted(set(image_nodes)), timeout=20_000)
    except PlaywrightError:
        shown = False
        notes.append("the page did not show the output images within 20 s")
    if a.screenshots:
        notes.append(f"screenshot {screenshot(page, a.screenshots, name)}")
    cached = len(events.get("execution_cached", {}).get("nodes", []))
    return (
        f"{len(data['nodes'])} node(s) loaded, {len(sizes)} image(s) {','.join(sorted(set(sizes)))} in "
        f"{t_run:.1f}s"
        + (f", {cached} cached" if cached else "")
        + (", shown in page" if shown else "")
        + "; "
        + "; ".join(notes)
    )
