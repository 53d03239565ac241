"""Every example workflow fits the pack's node definitions, without ComfyUI installed.

Node types exist, links join outputs to inputs of the same type, input names are
declared, required inputs are present and widget values lie inside declared ranges.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest

from . import comfy_stand_ins

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
# Combos whose choices are the user's files: only the value's type can be checked.
FILE_COMBOS = {("CodeFormerModelLoader", "model_name"), ("UpscaleModelLoader", "model_name"), ("LoadImage", "image")}


def declared_specs() -> tuple[dict, object]:
    """Inputs and outputs of our nodes (from INPUT_TYPES) and of the core nodes the examples use.

    ComfyUI stand-ins must be installed first: the loader lists model files through them.
    """
    spec = importlib.util.spec_from_file_location("build_workflows", ROOT / "scripts" / "build_workflows.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    from codeformer_nodes.nodes.codeformer import NODE_CLASS_MAPPINGS

    declared = {}
    for name, node in NODE_CLASS_MAPPINGS.items():
        types = node.INPUT_TYPES()
        declared[name] = {
            "required": types.get("required", {}),
            "inputs": {**types.get("required", {}), **types.get("optional", {})},
            "outputs": list(node.RETURN_TYPES),
        }
    for name, core in builder.CORE_NODES.items():
        inputs = {key: (kind,) for key, kind in core["inputs"].items()}
        inputs.update({key: ("*",) for key in core["widgets"] if key != "upload"})  # upload: editor only
        declared[name] = {"required": inputs, "inputs": inputs, "outputs": [kind for _, kind in core["outputs"]]}
    return declared, builder


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    comfy_stand_ins.install(monkeypatch, tmp_path_factory.mktemp("models"))
    yield declared_specs()
    monkeypatch.undo()


def check_widget(node_type: str, name: str, spec: tuple, value: object) -> None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    where = f"{node_type}.{name}={value!r}"
    if kind == "*" or (node_type, name) in FILE_COMBOS:
        assert isinstance(value, (str, int, float)), where
    elif isinstance(kind, list):
        assert value in kind, f"{where} not among {kind}"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    else:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert kind != "INT" or isinstance(value, int), where
        assert options.get("min", value) <= value <= options.get("max", value), f"{where} out of range"


def test_there_are_examples_in_both_formats():
    names = {path.name for path in WORKFLOWS}
    api = {name for name in names if name.endswith("_api.json")}
    assert len(api) >= 6 and {name.replace("_api.json", ".json") for name in api} <= names


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.name.endswith("_api.json")], ids=lambda p: p.name)
def test_api_workflow_fits_node_definitions(specs, path):
    check_api_workflow(json.loads(path.read_text()), specs[0])


def check_api_workflow(workflow: dict, declared: dict) -> None:
    for node_id, node in workflow.items():
        spec = declared[node["class_type"]]
        missing = set(spec["required"]) - set(node["inputs"])
        assert not missing, f"node {node_id} lacks {missing}"
        for name, value in node["inputs"].items():
            assert name in spec["inputs"], f"node {node_id}: unknown input {name}"
            if isinstance(value, list):
                source, slot = value
                produced = declared[workflow[source]["class_type"]]["outputs"][slot]
                wanted = spec["inputs"][name][0]
                assert wanted in ("*", produced), f"node {node_id}.{name}: {produced} into {wanted}"
            else:
                check_widget(node["class_type"], name, spec["inputs"][name], value)


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if not p.name.endswith("_api.json")], ids=lambda p: p.name)
def test_ui_workflow_fits_node_definitions_and_its_api_twin(specs, path):
    declared, builder = specs
    graph = json.loads(path.read_text())
    nodes = {node["id"]: node for node in graph["nodes"]}
    for link_id, source, slot, target, target_slot, kind in graph["links"]:
        assert declared[nodes[source]["type"]]["outputs"][slot] == kind
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
        wanted = declared[nodes[target]["type"]]["inputs"][nodes[target]["inputs"][target_slot]["name"]][0]
        assert wanted in ("*", kind)
    for node in graph["nodes"]:
        spec = declared[node["type"]]
        widget_names = builder.node_specs()[node["type"]]["widgets"]
        assert len(node["widgets_values"]) == len(widget_names), node["type"]
        for name, value in zip(widget_names, node["widgets_values"], strict=True):
            if name != "upload":
                check_widget(node["type"], name, spec["inputs"][name], value)
    api = json.loads(path.with_name(path.stem + "_api.json").read_text())
    assert sorted(node["type"] for node in graph["nodes"]) == sorted(node["class_type"] for node in api.values())


def test_committed_examples_are_what_the_builder_writes(specs):
    """The examples follow the node definitions: rebuilding them (scripts/build_workflows.py) changes nothing."""
    _, builder = specs
    node_specs = builder.node_specs()
    for name, api in builder.WORKFLOWS.items():
        committed_api = (ROOT / "example_workflows" / f"{name}_api.json").read_text()
        committed_ui = (ROOT / "example_workflows" / f"{name}.json").read_text()
        assert committed_api == json.dumps(api, indent=2) + "\n", f"{name}_api.json is stale: run the builder"
        assert committed_ui == json.dumps(builder.to_ui(api, node_specs), indent=2) + "\n", f"{name}.json is stale"


# Workflows as users saved them with earlier versions of the pack (the examples as committed then).
SAVED = ROOT / "tests" / "saved_workflows"


@pytest.mark.parametrize("path", sorted(SAVED.glob("*_api.json")), ids=lambda p: p.name)
def test_api_workflows_saved_before_still_fit_and_bind(specs, path):
    """An input added since is optional: an old API workflow still validates, and its inputs still bind
    to the node's function, which fills in the new one's default."""
    declared, _ = specs
    workflow = json.loads(path.read_text())
    check_api_workflow(workflow, declared)
    from codeformer_nodes.nodes.codeformer import NODE_CLASS_MAPPINGS

    for node in workflow.values():
        node_class = NODE_CLASS_MAPPINGS.get(node["class_type"])
        if node_class is not None:
            inspect.signature(getattr(node_class, node_class.FUNCTION)).bind(None, **node["inputs"])


@pytest.mark.parametrize("path", sorted(p for p in SAVED.glob("*.json") if not p.name.endswith("_api.json")),
                         ids=lambda p: p.name)  # fmt: skip
def test_ui_workflows_saved_before_keep_their_widgets_in_place(specs, path):
    """The page fills widgets from ``widgets_values`` in order: an old value list must still line up with
    the node's first widgets, and every widget after it must be optional (it takes its default)."""
    declared, builder = specs
    for node in json.loads(path.read_text())["nodes"]:
        widget_names = builder.node_specs()[node["type"]]["widgets"]
        values = node["widgets_values"]
        assert len(values) <= len(widget_names), f"{node['type']} has lost a widget"
        for name, value in zip(widget_names, values, strict=False):
            if name != "upload":
                check_widget(node["type"], name, declared[node["type"]]["inputs"][name], value)
        added = widget_names[len(values) :]
        assert not set(added) & set(declared[node["type"]]["required"]), f"{node['type']}: {added} must be optional"
