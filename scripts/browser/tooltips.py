# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""Tooltips as the page shows them when the mouse rests on a node, and workflows saved before a widget
was added, as the page loads them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .page import JS_HOOK, JS_LOAD, JS_READY, JS_WIDGETS, close_dialogs, screenshot
from .server import CheckFailed, http

# One node of the type alone in the graph, fitted to the view so that its rows are large enough to hover.
JS_PLACE_NODE = """(type) => {
  const app = window.app;
  app.graph.clear();
  const node = window.LiteGraph.createNode(type);
  app.graph.add(node);
  node.pos = [0, 0];
  app.canvas.ds.fitToBounds([-40, -60, node.size[0] + 80, node.size[1] + 100], {zoom: 0.8});
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
}"""

# Where each part of the node lies on the page: its title (the description), each socket, each widget.
JS_HOVER_TARGETS = """() => {
  const app = window.app, ds = app.canvas.ds, box = app.canvas.canvas.getBoundingClientRect();
  const onPage = ([x, y]) => {
    const [cx, cy] = ds.convertOffsetToCanvas([x, y]);
    return [box.left + cx, box.top + cy];
  };
  const node = app.graph.nodes[0], [x, y] = node.pos, [width] = node.size, LG = window.LiteGraph;
  const targets = [{kind: 'description', name: '', at: onPage([x + width / 2, y - LG.NODE_TITLE_HEIGHT / 2])}];
  (node.inputs || []).forEach((input, slot) => {
    if (!input.widget) targets.push({kind: 'input', name: input.name, at: onPage(node.getConnectionPos(true, slot))});
  });
  (node.outputs || []).forEach((output, slot) =>
    targets.push({kind: 'output', name: String(slot), at: onPage(node.getConnectionPos(false, slot))}));
  for (const widget of node.widgets || []) {
    const height = widget.computedHeight || LG.NODE_WIDGET_HEIGHT;
    targets.push({kind: 'widget', name: widget.name, at: onPage([x + width / 2, y + widget.y + height / 2])});
  }
  return targets;
}"""

JS_TOOLTIP_DELAY = "() => window.app.extensionManager.setting?.get('LiteGraph.Node.TooltipDelay') ?? 500"
JS_TOOLTIP_TEXT = "() => { const tip = document.querySelector('.node-tooltip'); return tip ? tip.innerText : null; }"


def expected_tooltips(info: dict, node_type: str, translation: dict | None) -> dict[tuple[str, str], str]:
    """(kind, name) -> the text the page should show: /object_info's, or the language's nodeDefs.json entry."""
    definition = info[node_type]
    declared = {**definition["input"].get("required", {}), **definition["input"].get("optional", {})}
    english = {("description", ""): definition["description"]}
    english |= {("input", name): spec[1].get("tooltip", "") for name, spec in declared.items() if len(spec) > 1}
    english |= {("output", str(slot)): text for slot, text in enumerate(definition.get("output_tooltips", []))}
    if translation is None:
        return english
    translated = {("description", ""): translation["description"]}
    translated |= {("input", name): label["tooltip"] for name, label in translation["inputs"].items()}
    translated |= {("output", slot): label["tooltip"] for slot, label in translation["outputs"].items()}
    return translated


def hover_text(page, at: list[float], delay_ms: int) -> str | None:
    """Rests the mouse at ``at`` (coming from a pixel away, so that the page sees a move) and reads the tooltip."""
    page.mouse.move(at[0] + 1, at[1] + 1)
    page.mouse.move(at[0], at[1])
    page.wait_for_timeout(delay_ms + 250)
    return page.evaluate(JS_TOOLTIP_TEXT)


def switch_language(page, server_url: str, language: str) -> None:
    """The page reloaded in ``language``, with the check's hook installed again."""
    http(server_url, "/settings", {"Comfy.Locale": language})
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(JS_READY, timeout=120_000)
    page.wait_for_timeout(1500)
    page.evaluate(JS_HOOK)


def check_tooltips(page, server_url: str, info: dict, ours: list[str], language: str | None, shots: str | None) -> str:
    """Each node of the pack alone in the graph: resting the mouse on its title, each socket, each output
    and each widget shows that part's tooltip, in ``language`` (the pack's ``locales/<language>``) if given."""
    translations = None
    if language:
        pack = Path(__file__).resolve().parents[2]
        with open(pack / "locales" / language / "nodeDefs.json", encoding="utf-8") as f:
            translations = json.load(f)
        switch_language(page, server_url, language)
    close_dialogs(page)
    delay_ms = int(page.evaluate(JS_TOOLTIP_DELAY))
    problems, shown = [], 0
    try:
        for node_type in ours:
            page.evaluate(JS_PLACE_NODE, node_type)
            page.wait_for_timeout(400)
            expected = expected_tooltips(info, node_type, translations and translations[node_type])
            for target in page.evaluate(JS_HOVER_TARGETS):
                key = ("input" if target["kind"] == "widget" else target["kind"], target["name"])
                text = hover_text(page, target["at"], delay_ms)
                if text != expected.get(key):
                    problems.append(f"{node_type} {target['kind']} {target['name']!r} shows {str(text)[:60]!r}")
                    continue
                shown += 1
                if shots and (node_type, target["name"]) in {("CodeFormerRestoreVideo", "code_margin"),
                                                             ("CodeFormerRestoreFaces", "4")}:  # fmt: skip
                    os.makedirs(shots, exist_ok=True)
                    page.screenshot(path=os.path.join(shots, f"tooltip_{language or 'en'}_{target['name']}.png"))
            page.mouse.move(0, 0)
    finally:
        page.evaluate("() => window.app.graph.clear()")
        if language:
            switch_language(page, server_url, "en")
    if problems or not shown:
        raise CheckFailed(f"{len(problems)} tooltip(s) wrong or missing: " + "; ".join(problems[:5]))
    return f"tooltips {language or 'en'}: {shown} title(s), socket(s) and widget(s) of {len(ours)} node(s) show theirs"


def check_saved_workflow(page, info: dict, path: Path, shots: str | None) -> str:
    """A UI workflow saved before widgets were added: the page keeps its values in place and gives each
    widget the file lacks the node's default."""
    with open(path) as f:
        data = json.load(f)
    close_dialogs(page)
    missing = page.evaluate(JS_LOAD, [data, path.stem])
    page.wait_for_timeout(800)
    if missing:
        raise CheckFailed(f"the frontend reported missing node type(s): {', '.join(missing)}")
    saved = {node["id"]: node.get("widgets_values") or [] for node in data["nodes"]}
    problems, filled = [], []
    for node in page.evaluate(JS_WIDGETS):
        values, names = node["serialized"] or [], [w["name"] for w in node["widgets"] if w["serialize"]]
        kept = saved[node["id"]]
        if values[: len(kept)] != kept:
            problems.append(f"{node['type']}: the page holds {values[: len(kept)]}, the file {kept}")
        for name, value in zip(names[len(kept) :], values[len(kept) :], strict=False):
            definition = info[node["type"]]["input"]
            spec = {**definition.get("required", {}), **definition.get("optional", {})}.get(name)
            if spec is None or name in definition.get("required", {}) or value != spec[1].get("default"):
                problems.append(f"{node['type']}.{name} = {value!r}: not an optional widget at its default")
            filled.append(f"{node['type']}.{name} = {value!r}")
    if shots:
        screenshot(page, shots, f"saved_{path.stem}")
    if problems:
        raise CheckFailed("; ".join(problems[:4]))
    return f"saved workflow {path.name}: values kept in place; added widget(s) at their default: {', '.join(filled)}"
