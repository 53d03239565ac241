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
5. saves a screenshot of the graph (cropped to the nodes) into ``--screenshots DIR``;
6. with ``--thumbnails``, writes ``NAME.jpg`` beside the workflow from the graph the page shows (the
   template browser's card; ``web/docs/`` pictures come from the examples in ``DOC_PICTURES``), and
   opens its API twin ``NAME_api.json`` through the page's own file input (Workflow > Open), which
   must give the same nodes, and writes ``NAME_api.jpg`` from that graph.

Then, on request: ``--templates`` checks that the template browser shows a thumbnail on every card
of the pack; ``--docs-panel`` that the node library's help button opens the pack's docs page for
each node (``web/docs/NODE.md``); ``--language zh`` that the page switched to that language shows the
names of ``locales/zh/nodeDefs.json`` on the pack's nodes; ``--open FILE`` (repeatable) that a
workflow file (either format, e.g. ``codeformer-restore --export-workflow``'s) opens through the page;
``--tooltips`` that resting the mouse on each node's title, sockets, outputs and widgets shows the
description or tooltip (in English, and with ``--language`` in that language too); ``--saved-workflow
FILE`` (repeatable) that a workflow saved before widgets were added loads with its values in place and
the new widgets at their defaults (``tests/saved_workflows/``).

One line per workflow: ``browser_check: NAME: OK ...`` or ``browser_check: NAME: FAIL reason``;
the last line sums up, and the exit status is 1 if any workflow failed.  The server and the
browser are always stopped.

Needs the ``playwright`` and ``pillow`` Python packages in the Python that runs this script (not
necessarily ComfyUI's) and a Chromium binary (Debian: ``apt-get install chromium``); Playwright's own
browser download is not used. Without a CJK font (Debian: ``fonts-wqy-zenhei``) the checks of the page
in Chinese still pass (they read the text), but its screenshots show boxes.

    python scripts/browser_check.py --comfy-dir ../ComfyUI --python ../ComfyUI/.venv/bin/python \\
        --models-dir ~/models --input-image face.png --detector retinaface_mobile0.25 \\
        --screenshots /tmp/shots
    python scripts/browser_check.py ... --load-only --thumbnails --templates --docs-panel --language zh \\
        --tooltips --saved-workflow tests/saved_workflows/codeformer_video.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import urllib.parse
from pathlib import Path

from browser.page import JS_HOOK, JS_READY, JS_REGISTERED, close_dialogs
from browser.panels import (
    DOC_PICTURES,
    check_docs_panel,
    check_language,
    check_templates,
    open_workflow_file,
    save_thumbnail,
)
from browser.server import CheckFailed, ComfyServer, http
from browser.tooltips import check_saved_workflow, check_tooltips
from browser.workflows import check_workflow

PACK_ROOT = Path(__file__).resolve().parents[1]
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


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # unwinds through the finally blocks that stop everything


def expected_404(line: str, input_names: list[str]) -> bool:
    """404s the page asks for: a LoadImage file previewed before it is switched to an --input-image,
    and a docs page in the page's language before the docs panel falls back to ``docs/NODE.md``."""
    if line.startswith("HTTP 404 GET") and "/docs/" in line and line.endswith(".md"):
        return True
    if not line.startswith("HTTP 404 GET") or "/view?" not in line:
        return False
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(line.split()[-1]).query)
    return query.get("type") == ["input"] and query.get("filename", [""])[0] not in input_names


def default_workflows(pack: str) -> list[Path]:
    folder = Path(pack) / "example_workflows"
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith("_api.json"))


def check_one(page, server: ComfyServer, path: Path, a, registered: set[str]) -> str:
    """A workflow's checks; with --thumbnails its picture, its API twin opened through the page, and that one's."""
    text = check_workflow(page, server, path, a, registered)
    if not a.thumbnails:
        return text
    notes = [f"thumbnail {save_thumbnail(page, path.with_suffix('.jpg')).name}"]
    for node_class, example in DOC_PICTURES.items():
        if example == path.stem:
            shutil.copy(path.with_suffix(".jpg"), Path(a.pack) / "web" / "docs" / f"{node_class}.jpg")
            notes.append(f"docs picture {node_class}.jpg")
    twin = path.with_name(path.stem + "_api.json")
    if twin.is_file():
        opened = open_workflow_file(page, twin)
        notes.append(f"{twin.name} {opened}, thumbnail {save_thumbnail(page, twin.with_suffix('.jpg')).name}")
    return text + "; " + "; ".join(notes)


def page_checks(page, server: ComfyServer, a, info: dict) -> list:
    """The checks of the page itself that were asked for, as (label, check) pairs."""
    ours = {
        name: d["display_name"] for name, d in info.items() if d.get("python_module", "").endswith("." + a.link_name)
    }
    checks = []
    if a.templates:
        names = sorted(p.stem for p in (Path(a.pack) / "example_workflows").glob("*.json"))
        checks.append(("templates", lambda: check_templates(page, a.link_name, names, a.screenshots)))
    if a.docs_panel:
        checks.append(("docs panel", lambda: check_docs_panel(page, ours, a.screenshots)))
    if a.tooltips:
        for language in (None, a.language) if a.language else (None,):
            checks.append(
                (
                    f"tooltips {language or 'en'}",
                    lambda language=language: check_tooltips(
                        page, server.url, info, sorted(ours), language, a.screenshots
                    ),
                )
            )
    checks += [
        (f"saved {Path(p).name}", lambda p=p: check_saved_workflow(page, info, Path(p), a.screenshots))
        for p in a.saved_workflow
    ]
    if a.language:
        with open(Path(a.pack) / "locales" / a.language / "nodeDefs.json", encoding="utf-8") as f:
            translations = json.load(f)
        example = Path(a.pack) / "example_workflows" / "codeformer_crop_edit_paste.json"
        checks.append(
            (
                f"language {a.language}",
                lambda: check_language(page, server.url, a.language, translations, example, a.screenshots),
            )
        )
    return checks


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
    ap.add_argument(
        "--thumbnails", action="store_true", help="write NAME.jpg beside each workflow and its API twin, from the graph"
    )
    ap.add_argument("--templates", action="store_true", help="check the template browser shows every thumbnail")
    ap.add_argument("--docs-panel", action="store_true", help="check the docs panel shows each node's page")
    ap.add_argument("--language", help="check the page in this language shows the pack's translated names (zh)")
    ap.add_argument("--open", action="append", default=[], help="a workflow file to open through the page (repeatable)")
    ap.add_argument(
        "--tooltips",
        action="store_true",
        help="check that resting the mouse on each part of each node of the pack shows its tooltip (and, with "
        "--language, the translated one)",
    )
    ap.add_argument(
        "--saved-workflow",
        action="append",
        default=[],
        help="a UI workflow saved by an earlier version of the pack: check that it loads with its values in place "
        "and the widgets added since at their defaults (repeatable)",
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
        info = json.loads(http(server.url, "/object_info", timeout=60)[1])
        registered_server = set(info)
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
                checks = [
                    (path.name, lambda path=path: check_one(page, server, path, a, registered)) for path in workflows
                ]
                checks += [(Path(p).name, lambda p=p: open_workflow_file(page, Path(p))) for p in a.open]
                checks += page_checks(page, server, a, info)
                for label, check in checks:
                    n_err = len(console_errors)
                    try:
                        print(f"browser_check: {label}: OK {check()}", flush=True)
                    except CheckFailed as e:
                        failures += 1
                        print(f"browser_check: {label}: FAIL {e}", flush=True)
                        if a.screenshots:  # what the page looked like when it failed
                            os.makedirs(a.screenshots, exist_ok=True)
                            page.screenshot(path=os.path.join(a.screenshots, Path(label).stem + "_FAIL.png"))
                    except (PlaywrightError, OSError, ValueError, KeyError, TypeError) as e:
                        # a browser, page or file failure: this workflow fails, the others go on
                        failures += 1
                        print(
                            f"browser_check: {label}: FAIL {type(e).__name__}: "
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
        ran = len(checks)
        ok_all = failures == 0
        print(f"browser_check: {'OK' if ok_all else 'FAIL'} {ran - failures} of {ran} check(s) passed")
    except (CheckFailed, PlaywrightError, OSError, ValueError, KeyError, TypeError, KeyboardInterrupt) as e:
        print(f"browser_check: FAIL {type(e).__name__ + ': ' if not isinstance(e, CheckFailed) else ''}{e}")
        server.print_log_tail()
    finally:
        server.close(keep=not ok_all or a.keep_temp)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
