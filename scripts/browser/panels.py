# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""Checks of the page beyond the graph: thumbnails made from it, the template browser, the docs
panel, the page in another language, and workflow files opened the way a user opens them."""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .page import JS_FIT, JS_READY, close_dialogs
from .server import CheckFailed, http

THUMBNAIL_SIZE = (640, 400)
# Docs pages that show an example's graph: node class -> example workflow (its thumbnail).
DOC_PICTURES = {
    "CodeFormerRestoreFaces": "codeformer_basic",
    "CodeFormerFidelity": "codeformer_fidelity_sweep",
    "CodeFormerPasteFaces": "codeformer_crop_edit_paste",
    "CodeFormerRestoreVideo": "codeformer_video",
}

# What the graph holds: per node its type, title and the labels the page shows for its slots and widgets.
JS_GRAPH_LABELS = """() => window.app.graph.nodes.map(node => ({
  type: node.type, title: node.title,
  inputs: (node.inputs || []).map(i => i.localized_name || i.label || i.name),
  outputs: (node.outputs || []).map(o => o.localized_name || o.label || o.name),
  widgets: (node.widgets || []).map(w => w.label || w.name),
}))"""

JS_LOAD_PLAIN = "async ([data, name]) => await window.app.loadGraphData(data, true, true, name)"

# Half a view at a time: cards load as they come into view, and a jump to the bottom skips the middle rows.
JS_SCROLL_DIALOG = """() => document.querySelectorAll('.p-dialog *').forEach(
  e => { if (e.scrollHeight > e.clientHeight + 10) e.scrollTop += e.clientHeight / 2; })"""

JS_SCROLL_DIALOG_TOP = "() => document.querySelectorAll('.p-dialog *').forEach(e => { e.scrollTop = 0; })"

JS_CARD_IMAGES = """() => Array.from(document.querySelectorAll('.p-dialog img'))
  .filter(img => img.complete && img.naturalWidth > 0).length"""


def save_thumbnail(page, out: Path) -> Path:
    """The graph fitted to the view, as a JPEG of at most THUMBNAIL_SIZE (the template browser's card)."""
    from PIL import Image

    clip = None
    for _ in range(2):  # nodes grow when first drawn: fit, draw, fit again
        page.wait_for_timeout(500)
        clip = page.evaluate(JS_FIT, 24)
    picture = Image.open(io.BytesIO(page.screenshot(clip=clip if clip and clip["width"] > 0 else None)))
    picture = picture.convert("RGB")
    picture.thumbnail(THUMBNAIL_SIZE, Image.LANCZOS)
    picture.save(out, "JPEG", quality=85, optimize=True)
    return out


def open_workflow_file(page, path: Path) -> str:
    """Opens ``path`` through the page's own file input (Workflow > Open) and checks the graph holds its nodes."""
    with open(path) as f:
        data = json.load(f)
    if "nodes" in data:
        wanted = sorted(node["type"] for node in data["nodes"])
    else:  # API format: {id: {class_type, inputs}}
        wanted = sorted(node["class_type"] for node in data.values())
    page.evaluate("() => window.app.graph.clear()")
    page.set_input_files("#comfy-file-input", str(path))
    page.wait_for_timeout(1500)
    got = sorted(node["type"] for node in page.evaluate(JS_GRAPH_LABELS))
    dialogs = close_dialogs(page)
    if got != wanted:
        raise CheckFailed(f"opening {path.name} gave node(s) {got}, the file holds {wanted}; dialogs: {dialogs}")
    return f"opened through the page: {len(got)} node(s)" + (f"; dialogs {dialogs}" if dialogs else "")


def check_templates(page, pack: str, names: list[str], shots: str | None) -> str:
    """The template browser lists the pack's examples and fetches each card's thumbnail (the page
    shows them as blob URLs, so the fetches are what is checked), scrolled through to the last card."""
    prefix = f"/api/workflow_templates/{pack}/"
    fetched: set[str] = set()

    def record(response) -> None:
        path = urllib.parse.urlsplit(response.url).path
        if path.startswith(prefix) and path.endswith(".jpg") and response.ok:
            fetched.add(urllib.parse.unquote(path[len(prefix) : -len(".jpg")]))

    close_dialogs(page)
    page.on("response", record)
    try:
        page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.wait_for_timeout(1500)
        page.get_by_text(pack, exact=True).first.click()
        for _ in range(2 * len(names)):  # cards load as they scroll into view
            page.wait_for_timeout(400)
            if fetched >= set(names):
                break
            page.evaluate(JS_SCROLL_DIALOG)
        page.wait_for_timeout(800)
        shown = page.evaluate(JS_CARD_IMAGES)
        if shots:
            os.makedirs(shots, exist_ok=True)
            page.evaluate(JS_SCROLL_DIALOG_TOP)
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(shots, "template_browser.png"))
    finally:
        page.remove_listener("response", record)
        close_dialogs(page)
    missing = sorted(set(names) - fetched)
    if missing or not shown:
        raise CheckFailed(f"the template browser fetched no thumbnail for {missing} ({shown} card image(s) shown)")
    return f"template browser: {len(fetched)} thumbnail(s) of {pack} fetched, {shown} card image(s) drawn"


def check_docs_panel(page, nodes: dict[str, str], shots: str | None) -> str:
    """For each node (class -> display name), the node library's help button opens the pack's docs page."""
    close_dialogs(page)
    search = page.locator("input[placeholder^='Search Nodes']")
    if not search.is_visible():
        page.evaluate("() => window.app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library')")
        search.wait_for(state="visible", timeout=10_000)
    for node_class, display_name in nodes.items():
        search.fill(display_name.split(" (")[0])  # the library's search finds no name by its parenthesis
        page.wait_for_timeout(1200)
        leaf = page.locator(".p-tree-node-label", has=page.locator(".tree-leaf")).filter(has_text=display_name).first
        leaf.hover()
        leaf.locator(".help-button").click()
        try:
            page.wait_for_function(
                "(title) => Array.from(document.querySelectorAll('h1')).some(h => h.innerText.trim() === title)"
                " && document.body.innerText.includes('Outputs')",
                arg=display_name,
                timeout=15_000,
            )
        except PlaywrightTimeout as error:
            raise CheckFailed(f"the docs panel did not show the page of {node_class}") from error
        page.wait_for_timeout(500)  # pictures in the page
        if shots:
            os.makedirs(shots, exist_ok=True)
            page.screenshot(path=os.path.join(shots, f"docs_{node_class}.png"))
        page.locator(".side-bar-panel button").first.click()  # back to the library
        search.wait_for(state="visible", timeout=10_000)
    return f"docs panel: the page of each of {len(nodes)} node(s)"


def check_language(page, server_url: str, language: str, translations: dict, workflow: Path, shots: str | None):
    """Switches the page to ``language`` and checks the pack's nodes show the translated names of
    ``locales/<language>/nodeDefs.json`` (titles, slots and widgets) in ``workflow``."""
    http(server_url, "/settings", {"Comfy.Locale": language})
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(JS_READY, timeout=120_000)
    page.wait_for_timeout(1500)
    close_dialogs(page)
    with open(workflow) as f:
        page.evaluate(JS_LOAD_PLAIN, [json.load(f), workflow.stem])
    page.wait_for_timeout(800)
    problems, checked = [], 0
    for node in page.evaluate(JS_GRAPH_LABELS):
        entry = translations.get(node["type"])
        if not entry:
            continue
        checked += 1
        if node["title"] != entry["display_name"]:
            problems.append(f"{node['type']} is titled {node['title']!r}, not {entry['display_name']!r}")
        names = {label["name"] for label in entry["inputs"].values()}
        outputs = [label["name"] for _, label in sorted(entry["outputs"].items(), key=lambda item: int(item[0]))]
        if node["outputs"] != outputs:
            problems.append(f"{node['type']} outputs {node['outputs']}, not {outputs}")
        untranslated = [label for label in node["inputs"] + node["widgets"] if label not in names]
        if untranslated:
            problems.append(f"{node['type']} shows untranslated {untranslated}")
    if shots:
        os.makedirs(shots, exist_ok=True)
        page.screenshot(path=os.path.join(shots, f"language_{language}.png"))
    http(server_url, "/settings", {"Comfy.Locale": "en"})
    if problems or not checked:
        raise CheckFailed("; ".join(problems[:4]) or f"no node of the pack in {workflow.name}")
    return f"language {language}: {checked} node(s) of {workflow.name} show their translated names"
