#!/usr/bin/env python3
# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""browser_check: load the UI-format example workflows into a real ComfyUI page and run them.

Starts a real ComfyUI server (CPU, loopback, free port, every folder it writes in a temp dir)
with this pack exposed through a symlink in its custom_nodes, opens its page in headless
Chromium through Playwright and, for each UI-format workflow (default: every
``example_workflows/*.json`` that is not ``*_api.json``):

1. checks that every node type of the workflow is registered in the page, loads it with the
   frontend's own ``app.loadGraphData`` and checks that the frontend reported no missing node
   type (through an extension hook) and opened no dialog (the missing-nodes dialog among them);
2. checks that no widget value was refused: each node's widgets, serialized back by the page,
   hold the values the file holds, and each combo value is one of its choices (a LoadImage
   file that is not in the input dir is switched to the first ``--input-image`` instead);
3. optionally switches every ``detector`` widget through the page (``--detector``);
4. queues it from the page (``app.queuePrompt``), checks the server accepted it, compares the
   prompt the page sent with the ``*_api.json`` twin of the workflow when there is one, waits
   for the prompt's ``/history`` entry and fetches its output images through ``/view``;
5. saves a screenshot of the graph (cropped to the nodes) into ``--screenshots DIR``.

One line per workflow: ``browser_check: NAME: OK ...`` or ``browser_check: NAME: FAIL reason``;
the last line sums up, and the exit status is 1 if any workflow failed.  The server and the
browser are always stopped.

Needs the ``playwright`` Python package in the Python that runs this script (not necessarily
ComfyUI's) and a Chromium binary (Debian: ``apt-get install chromium``); Playwright's own
browser download is not used.

    python scripts/browser_check.py --comfy-dir ../ComfyUI --python ../ComfyUI/.venv/bin/python \\
        --models-dir ~/models --input-image face.png --detector retinaface_mobile0.25 \\
        --screenshots /tmp/shots
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
MODEL_SUBDIRS = ("facerestore_models", "facedetection", "upscale_models")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class CheckFailed(Exception):
    """One workflow's FAIL reason (one line)."""


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # unwinds through the finally blocks that stop everything


# ---------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, path: str, data=None, timeout: float = 30):
    """GET, or POST JSON when data is given; returns (status, body bytes)."""
    req = urllib.request.Request(
        base + path,
        method="GET" if data is None else "POST",
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class ComfyServer:
    """A ComfyUI process whose base dir, database and logs live in a temp dir."""

    def __init__(self, args, prefix: str = "browser_check_"):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.base = os.path.join(self.tmp, "base")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.input_names: list[str] = []
        self.pack_link = ""

    def start(self) -> None:
        a = self.args
        comfy_dir = os.path.abspath(a.comfy_dir)
        pack = os.path.abspath(a.pack.rstrip("/"))
        python = os.path.abspath(a.python)  # keep the venv path: no realpath
        for what, path in (
            ("--python", python),
            ("--comfy-dir main.py", os.path.join(comfy_dir, "main.py")),
            ("--pack __init__.py", os.path.join(pack, "__init__.py")),
        ):
            if not os.path.isfile(path):
                raise CheckFailed(f"{what} not found: {path}")
        for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
            os.makedirs(os.path.join(self.base, d))
        self.pack_link = os.path.join(self.base, "custom_nodes", a.link_name or os.path.basename(pack))
        os.symlink(pack, self.pack_link)
        for img in a.input_image:
            self.input_names.append(os.path.basename(shutil.copy(img, os.path.join(self.base, "input"))))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            python,
            os.path.join(comfy_dir, "main.py"),
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--base-directory",
            self.base,
            "--database-url",
            "sqlite:///" + os.path.join(self.base, "user", "comfyui.db"),
        ]
        if a.models_dir:
            md = os.path.abspath(a.models_dir)
            yaml_path = os.path.join(self.tmp, "extra_model_paths.yaml")
            with open(yaml_path, "w") as f:
                f.write(
                    "browser_check:\n"
                    + f"  base_path: {json.dumps(md)}\n"
                    + "".join(f"  {k}: {k}\n" for k in MODEL_SUBDIRS)
                )
            cmd += ["--extra-model-paths-config", yaml_path]
            for k in MODEL_SUBDIRS:  # also under the base dir, for code that reads models_dir directly
                if os.path.isdir(os.path.join(md, k)):
                    os.symlink(os.path.join(md, k), os.path.join(self.base, "models", k))
        cmd += a.server_arg
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
        )
        print("server:", " ".join(cmd), "\ntemp dir:", self.tmp, flush=True)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise CheckFailed(f"server exited with rc={self.proc.returncode} during startup")
            if time.time() - t0 > a.start_timeout:
                raise CheckFailed(f"server not ready after {a.start_timeout:.0f}s")
            try:
                if http(self.url, "/queue", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        print(f"server ready in {time.time() - t0:.1f}s (pid {self.proc.pid})", flush=True)
        failed = [line for line in self.log().splitlines() if self.pack_link in line and "IMPORT FAILED" in line]
        if failed:
            raise CheckFailed(f"the pack failed to import: {failed[0].strip()} (see {self.log_path})")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def print_log_tail(self, lines: int = 30) -> None:
        """The end of the server's log, after a failure (nothing when it never started)."""
        if self.proc is not None:
            print("--- server log tail ---\n" + "".join(self.log().splitlines(True)[-lines:]))

    def close(self, keep: bool) -> None:
        """Stop the server; remove its temp dir unless ``keep`` (then say where it is)."""
        self.stop()
        if keep:
            print("kept temp dir (server.log inside):", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):  # leftovers in the server's process group (pgid = its pid)
            os.killpg(self.proc.pid, signal.SIGKILL)


def png_size(blob: bytes):
    if blob[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", blob[16:24])
    return None


# ---------------------------------------------------------------- page scripts

JS_READY = """() => !!(window.app && window.app.vueAppReady && window.app.graph && window.app.canvas
    && window.LiteGraph && Object.keys(window.LiteGraph.registered_node_types || {}).length > 0)"""

# The frontend passes the node types it could not find to extensions' afterConfigureGraph.
JS_HOOK = """() => {
  if (window.__browserCheck) return;
  window.__browserCheck = {missing: null};
  window.app.registerExtension({
    name: 'codeformer_nodes.browser_check',
    async afterConfigureGraph(missingNodeTypes) {
      window.__browserCheck.missing = (missingNodeTypes || []).map(t => typeof t === 'string' ? t : t.type);
    },
  });
}"""

JS_REGISTERED = "() => Object.keys(window.LiteGraph.registered_node_types)"

JS_DIALOGS = """() => Array.from(document.querySelectorAll('.p-dialog'))
  .filter(d => d.offsetParent !== null || d.getClientRects().length > 0)
  .map(d => (d.innerText || '').replace(/\\s+/g, ' ').trim().slice(0, 300))"""

JS_LOAD = """async ([data, name]) => {
  window.__browserCheck.missing = null;
  await window.app.loadGraphData(data, true, true, name);
  return window.__browserCheck.missing;
}"""

# Every node's widgets as the page holds them after loading, and what it serializes.
JS_WIDGETS = """() => window.app.graph.nodes.map(node => {
  const ser = node.serialize();
  return {
    id: node.id, type: node.type, serialized: ser.widgets_values ?? null,
    widgets: (node.widgets || []).map(w => {
      let values = w.options && w.options.values;
      if (typeof values === 'function') { try { values = values(w, node); } catch (e) { values = null; } }
      return {name: w.name, type: w.type, value: w.value, serialize: w.serialize !== false
              && !(w.options && w.options.serialize === false),
              values: Array.isArray(values) ? values : null};
    }),
  };
})"""

# Sets a widget on every node that has it, through the widget (value and its callback).
JS_SET_WIDGET = """([nodeType, widgetName, value]) => {
  const changed = [];
  for (const node of window.app.graph.nodes) {
    if (nodeType && node.type !== nodeType) continue;
    for (const w of node.widgets || []) {
      if (w.name !== widgetName) continue;
      let values = w.options && w.options.values;
      if (typeof values === 'function') values = values(w, node);
      if (Array.isArray(values) && !values.includes(value))
        return {error: `node ${node.id} (${node.type}) ${widgetName}: ${JSON.stringify(value)} is not among `
                       + JSON.stringify(values)};
      const old = w.value;
      w.value = value;
      if (w.callback) w.callback(value, window.app.canvas, node);
      changed.push([node.id, node.type, old]);
    }
  }
  window.app.graph.setDirtyCanvas(true, true);
  return {changed};
}"""

JS_QUEUE = "async () => await window.app.queuePrompt(0, 1)"

JS_OUTPUT_SHOWN = """(nodeIds) => nodeIds.every(id => {
  const node = window.app.graph.getNodeById(Number(id)) || window.app.graph.getNodeById(id);
  return node && node.imgs && node.imgs.length > 0 && node.imgs.every(img => img.complete && img.naturalWidth > 0);
})"""

# Fits the view to the nodes and returns their bounding box in page pixels.
JS_FIT = """(margin) => {
  const app = window.app, ds = app.canvas.ds;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const node of app.graph.nodes) {
    const r = node.boundingRect;
    x0 = Math.min(x0, r[0]); y0 = Math.min(y0, r[1]);
    x1 = Math.max(x1, r[0] + r[2]); y1 = Math.max(y1, r[1] + r[3]);
  }
  if (!isFinite(x0)) return null;
  ds.fitToBounds([x0, y0, x1 - x0, y1 - y0], {zoom: 0.92});
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  const box = app.canvas.canvas.getBoundingClientRect();
  const [ax, ay] = ds.convertOffsetToCanvas([x0, y0]);
  const [bx, by] = ds.convertOffsetToCanvas([x1, y1]);
  const left = Math.max(box.left, box.left + ax - margin), top = Math.max(box.top, box.top + ay - margin);
  const right = Math.min(box.right, box.left + bx + margin), bottom = Math.min(box.bottom, box.top + by + margin);
  return {x: left, y: top, width: right - left, height: bottom - top};
}"""


# ---------------------------------------------------------------- checks


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


# ---------------------------------------------------------------- one workflow


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


def screenshot(page, folder: str, name: str) -> str:
    """Fits the view to the nodes and saves the page cropped to them; returns the file."""
    os.makedirs(folder, exist_ok=True)
    clip = None
    for _ in range(2):  # nodes grow when their images are first drawn: fit, draw, fit again
        page.wait_for_timeout(600)
        clip = page.evaluate(JS_FIT, 24)
    page.wait_for_timeout(400)
    shot = os.path.join(folder, name + ".png")
    page.screenshot(path=shot, clip=clip if clip and clip["width"] > 0 and clip["height"] > 0 else None)
    return shot


def close_dialogs(page) -> list[str]:
    """Closes dialogs left open (by the start page, say) with Escape; returns what they said."""
    seen = []
    for _ in range(5):
        dialogs = page.evaluate(JS_DIALOGS)
        if not dialogs:
            break
        seen += dialogs
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
    return seen


# ---------------------------------------------------------------- main


def expected_404(line: str, input_names: list[str]) -> bool:
    """The page previews a LoadImage file before it is switched to an --input-image: a 404 then."""
    if not line.startswith("HTTP 404 GET") or "/view?" not in line:
        return False
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(line.split()[-1]).query)
    return query.get("type") == ["input"] and query.get("filename", [""])[0] not in input_names


def default_workflows(pack: str) -> list[Path]:
    folder = Path(pack) / "example_workflows"
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith("_api.json"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy-dir", required=True, help="ComfyUI checkout (holds main.py)")
    ap.add_argument("--python", required=True, help="python of the venv ComfyUI is installed in")
    ap.add_argument("--pack", default=str(PACK_ROOT), help="custom node pack folder (default: this project)")
    ap.add_argument(
        "--link-name",
        default="codeformer-nodes",
        help="folder name of the pack in custom_nodes (default codeformer-nodes, as a git clone)",
    )
    ap.add_argument("--models-dir", help="folder with facerestore_models/, facedetection/, upscale_models/")
    ap.add_argument("--input-image", action="append", default=[], help="copied into the input dir (repeatable)")
    ap.add_argument(
        "--workflow",
        action="append",
        default=[],
        help="UI-format workflow JSON (repeatable; default: every non-API example of the pack)",
    )
    ap.add_argument("--detector", help="switch every 'detector' widget to this value through the page")
    ap.add_argument("--screenshots", help="folder for one screenshot of the graph per workflow")
    ap.add_argument(
        "--load-only", action="store_true", help="load, check and screenshot each workflow without queueing it"
    )
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default /usr/bin/chromium)")
    ap.add_argument("--viewport", default="1600x1000", help="page size WxH (default 1600x1000)")
    ap.add_argument("--min-images", type=int, default=1, help="fewer output images is a FAIL")
    ap.add_argument("--start-timeout", type=float, default=180, help="seconds to wait for the server")
    ap.add_argument("--page-timeout", type=float, default=120, help="seconds to wait for the page's app")
    ap.add_argument("--run-timeout", type=float, default=900, help="seconds to wait for each workflow")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temp dir (always kept on FAIL)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra ComfyUI flag (repeatable)")
    a = ap.parse_args(argv)
    workflows = [Path(p) for p in a.workflow] or default_workflows(a.pack)
    if not workflows:
        ap.error("no workflows given and none found in the pack's example_workflows/")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser_check: FAIL the playwright package is not installed in " + sys.executable)
        return 1
    width, height = (int(v) for v in a.viewport.lower().split("x"))

    signal.signal(signal.SIGTERM, on_sigterm)
    server = ComfyServer(a)
    failures, ok_all = 0, False
    console_errors: list[str] = []
    try:
        server.start()
        # A first visit would open the template browser over the graph: mark the tutorial done.
        # The minimap would cover part of the screenshots; the missing-nodes dialog stays on.
        http(
            server.url,
            "/settings",
            {
                "Comfy.TutorialCompleted": True,
                "Comfy.Minimap.Visible": False,
                "Comfy.Workflow.ShowMissingNodesWarning": True,
            },
        )
        registered_server = set(json.loads(http(server.url, "/object_info", timeout=60)[1]))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=a.chromium, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
                # The browser's 'Failed to load resource' console line lacks the address: log it here.
                page.on(
                    "console",
                    lambda m: (
                        console_errors.append(f"console.{m.type}: {m.text}")
                        if m.type == "error" and not m.text.startswith("Failed to load resource")
                        else None
                    ),
                )
                page.on(
                    "response",
                    lambda r: (
                        console_errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
                        if r.status >= 400
                        else None
                    ),
                )
                page.set_default_timeout(60_000)
                t0 = time.time()
                page.goto(server.url + "/", wait_until="domcontentloaded")
                page.wait_for_function(JS_READY, timeout=a.page_timeout * 1000)
                page.wait_for_timeout(1500)  # the start workflow loads after the app is ready
                page.evaluate(JS_HOOK)
                registered = set(page.evaluate(JS_REGISTERED))
                startup = close_dialogs(page)
                print(
                    f"page ready in {time.time() - t0:.1f}s: frontend "
                    f"{page.evaluate('() => window.__COMFYUI_FRONTEND_VERSION__')}, {len(registered)} node "
                    f"types registered ({len(registered_server)} in /object_info)"
                    + (f"; closed start dialog(s): {startup}" if startup else ""),
                    flush=True,
                )
                for path in workflows:
                    n_err = len(console_errors)
                    try:
                        text = check_workflow(page, server, path, a, registered)
                        print(f"browser_check: {path.name}: OK {text}", flush=True)
                    except CheckFailed as e:
                        failures += 1
                        print(f"browser_check: {path.name}: FAIL {e}", flush=True)
                        if a.screenshots:  # what the page looked like when it failed
                            os.makedirs(a.screenshots, exist_ok=True)
                            page.screenshot(path=os.path.join(a.screenshots, path.stem + "_FAIL.png"))
                    except (PlaywrightError, OSError, ValueError, KeyError, TypeError) as e:
                        # a browser, page or file failure: this workflow fails, the others go on
                        failures += 1
                        print(
                            f"browser_check: {path.name}: FAIL {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}",
                            flush=True,
                        )
                    for line in console_errors[n_err:]:
                        if not expected_404(line, server.input_names):
                            print(f"  page {line[:300]}")
                    if not server.alive():
                        break
            finally:
                browser.close()
        if "!!! Exception" in server.log():
            failures += 1
            print("browser_check: server log has '!!! Exception' (see server.log)")
        ran = len(workflows)
        ok_all = failures == 0
        print(f"browser_check: {'OK' if ok_all else 'FAIL'} {ran - failures} of {ran} workflow(s) passed")
    except (CheckFailed, PlaywrightError, OSError, ValueError, KeyError, TypeError, KeyboardInterrupt) as e:
        print(f"browser_check: FAIL {type(e).__name__ + ': ' if not isinstance(e, CheckFailed) else ''}{e}")
        server.print_log_tail()
    finally:
        server.close(keep=not ok_all or a.keep_temp)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
