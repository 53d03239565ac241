"""The page's translations (locales/<lang>/) and docs pages (web/docs/) name every node, input and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import comfy_stand_ins
from .test_nodes import HAVE_COMFY

PACK = Path(__file__).resolve().parents[1]
LANGUAGES = sorted(path.name for path in (PACK / "locales").iterdir() if path.is_dir())


@pytest.fixture
def node_defs(monkeypatch, tmp_path) -> dict[str, dict]:
    """Per node class: its display name, description, and input and output names with their tooltips,
    as ComfyUI reads them."""
    if HAVE_COMFY:
        pytest.skip("these tests use stand-ins; a real ComfyUI page is checked by scripts/browser_check.py")
    comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    from codeformer_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    defs = {}
    for name, node in NODE_CLASS_MAPPINGS.items():
        declared = node.INPUT_TYPES()
        inputs = {**declared.get("required", {}), **declared.get("optional", {})}
        defs[name] = {
            "display_name": NODE_DISPLAY_NAME_MAPPINGS[name],
            "description": node.DESCRIPTION,
            "inputs": {key: spec[1]["tooltip"] for key, spec in inputs.items()},
            "outputs": {str(index): tooltip for index, tooltip in enumerate(node.OUTPUT_TOOLTIPS)},
        }
    return defs


def test_zh_is_among_the_languages():
    assert "zh" in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_node_input_and_output_is_translated_and_nothing_else(node_defs, language):
    """Names, tooltips and descriptions: ComfyUI's page reads ``nodeDefs.NODE.inputs.INPUT.tooltip``,
    ``outputs.INDEX.tooltip`` and ``description`` and falls back to English for any it lacks."""
    translated = json.loads((PACK / "locales" / language / "nodeDefs.json").read_text(encoding="utf-8"))
    assert set(translated) == set(node_defs), "one entry per node class, none for classes that are gone"
    for name, node in node_defs.items():
        entry = translated[name]
        assert set(entry) == {"display_name", "description", "inputs", "outputs"}, name
        for field in ("display_name", "description"):
            assert entry[field].strip() and entry[field] != node[field], f"{name}: {field} untranslated"
        assert list(entry["inputs"]) == list(node["inputs"]), f"{name}: inputs in the node's order"
        assert list(entry["outputs"]) == list(node["outputs"]), f"{name}: outputs by index"
        for key, label in [*entry["inputs"].items(), *entry["outputs"].items()]:
            english = {**node["inputs"], **node["outputs"]}[key]
            assert set(label) == {"name", "tooltip"}, f"{name}.{key}: a name and a tooltip"
            assert label["name"].strip() and label["tooltip"].strip() and label["tooltip"] != english, f"{name}.{key}"
    json.loads((PACK / "locales" / language / "main.json").read_text(encoding="utf-8"))


def test_every_node_has_a_docs_page_naming_its_inputs_outputs_and_pictures(node_defs):
    for name, node in node_defs.items():
        page = PACK / "web" / "docs" / f"{name}.md"
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {node['display_name']}\n"), f"{page.name}: titled with the node's display name"
        for section in ("## Inputs", "## Outputs", "## Example"):
            assert section in text, f"{page.name} lacks {section}"
        for picture in (line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")):
            assert (page.parent / picture).is_file(), f"{page.name} shows {picture}, which is not in web/docs"
