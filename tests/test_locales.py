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
def node_defs(monkeypatch, tmp_path) -> dict[str, dict[str, list[str]]]:
    """Per node class: its display name, input names and output names, as ComfyUI reads them."""
    if HAVE_COMFY:
        pytest.skip("these tests use stand-ins; a real ComfyUI page is checked by scripts/browser_check.py")
    comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    from codeformer_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    defs = {}
    for name, node in NODE_CLASS_MAPPINGS.items():
        inputs = node.INPUT_TYPES()
        defs[name] = {
            "display_name": NODE_DISPLAY_NAME_MAPPINGS[name],
            "inputs": [*inputs.get("required", {}), *inputs.get("optional", {})],
            "outputs": [str(index) for index in range(len(node.RETURN_TYPES))],
        }
    return defs


def test_zh_is_among_the_languages():
    assert "zh" in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_node_input_and_output_is_translated_and_nothing_else(node_defs, language):
    translated = json.loads((PACK / "locales" / language / "nodeDefs.json").read_text(encoding="utf-8"))
    assert set(translated) == set(node_defs), "one entry per node class, none for classes that are gone"
    for name, node in node_defs.items():
        entry = translated[name]
        assert entry["display_name"].strip() and entry["display_name"] != node["display_name"]
        assert list(entry["inputs"]) == node["inputs"], f"{name}: inputs in the node's order"
        assert list(entry["outputs"]) == node["outputs"], f"{name}: outputs by index"
        names = [*entry["inputs"].values(), *entry["outputs"].values()]
        assert all(set(label) == {"name"} and label["name"].strip() for label in names), f"{name}: names only"
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
