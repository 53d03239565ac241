# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""Scripts run in ComfyUI's page, and page helpers: dialogs, screenshots cropped to the graph."""

from __future__ import annotations

import os

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
