"""Write the example workflows in both of ComfyUI's formats from one description each.

API format (``*_api.json``, what "Save (API)" writes) runs through ``/prompt``; UI format
(what Save writes) loads in the editor and the template browser. Widget order in the UI
format follows each node's INPUT_TYPES, so both files always agree with the pack.

    .venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "example_workflows"
MODEL_FILE = "codeformer.pth"
GFPGAN_FILE = "GFPGANv1.4.pth"
IMAGE_FILE = "example.png"

# Widget names and output types of the ComfyUI core nodes the examples use.
CORE_NODES = {
    "LoadImage": {"widgets": ["image", "upload"], "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")], "inputs": {}},
    "SaveImage": {"widgets": ["filename_prefix"], "outputs": [], "inputs": {"images": "IMAGE"}},
    "PreviewImage": {"widgets": [], "outputs": [], "inputs": {"images": "IMAGE"}},
    "UpscaleModelLoader": {"widgets": ["model_name"], "outputs": [("UPSCALE_MODEL", "UPSCALE_MODEL")], "inputs": {}},
    "MaskToImage": {"widgets": [], "outputs": [("IMAGE", "IMAGE")], "inputs": {"mask": "MASK"}},
    "ImageBlur": {"widgets": ["blur_radius", "sigma"], "outputs": [("IMAGE", "IMAGE")], "inputs": {"image": "IMAGE"}},
    "LoadVideo": {"widgets": ["file", "upload"], "outputs": [("VIDEO", "VIDEO")], "inputs": {}},
    "GetVideoComponents": {
        "widgets": [],
        "outputs": [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")],
        "inputs": {"video": "VIDEO"},
    },
    "CreateVideo": {  # fps is a widget that the example feeds from a link (the clip's own rate)
        "widgets": ["fps"],
        "outputs": [("VIDEO", "VIDEO")],
        "inputs": {"images": "IMAGE", "audio": "AUDIO"},
        "linked_widgets": {"fps": ("FLOAT", 30.0)},
    },
    "SaveVideo": {"widgets": ["filename_prefix", "format", "codec"], "outputs": [], "inputs": {"video": "VIDEO"}},
    "ImageStitch": {  # image2 is optional in ComfyUI; the example connects it
        "widgets": ["direction", "match_image_size", "spacing_width", "spacing_color"],
        "outputs": [("IMAGE", "IMAGE")],
        "inputs": {"image1": "IMAGE", "image2": "IMAGE"},
    },
}
VIDEO_FILE = "example.mp4"


def widget_defaults(node_name: str) -> dict[str, object]:
    """Each widget's default as the node declares it (the first choice of a list without one), optional
    widgets included."""
    from codeformer_nodes.nodes.codeformer import NODE_CLASS_MAPPINGS

    types = NODE_CLASS_MAPPINGS[node_name].INPUT_TYPES()
    defaults = {}
    for name, (kind, *settings) in {**types["required"], **types.get("optional", {})}.items():
        if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            defaults[name] = settings[0]["default"] if settings and "default" in settings[0] else kind[0]
    return defaults


RESTORE_DEFAULTS = widget_defaults("CodeFormerRestoreFaces")
FIDELITY_DEFAULTS = widget_defaults("CodeFormerFidelity")


def load_image() -> dict:
    return {"class_type": "LoadImage", "inputs": {"image": IMAGE_FILE}}


def loader(model_file: str = MODEL_FILE) -> dict:
    return {"class_type": "CodeFormerModelLoader", "inputs": {"model_name": model_file, "precision": "auto"}}


def restore(**changes) -> dict:
    inputs = {"image": ["1", 0], "codeformer_model": ["2", 0], **RESTORE_DEFAULTS}
    return {"class_type": "CodeFormerRestoreFaces", "inputs": {**inputs, **changes}}


def save(source: list, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": source, "filename_prefix": prefix}}


WORKFLOWS = {
    "codeformer_basic": {"1": load_image(), "2": loader(), "3": restore(), "4": save(["3", 0], "codeformer")},
    "codeformer_fidelity_sweep": {
        "1": load_image(),
        "2": loader(),
        "5": {"class_type": "CodeFormerFidelity", "inputs": {**FIDELITY_DEFAULTS, "sweep": "0.0, 0.5, 1.0"}},
        "3": restore(fidelity=["5", 0]),
        "4": save(["3", 0], "codeformer_sweep"),
    },
    "codeformer_upscale_background": {
        "1": load_image(),
        "2": loader(),
        "5": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "RealESRGAN_x2.pth"}},
        "3": restore(upscale=2, upscale_model=["5", 0]),
        "4": save(["3", 0], "codeformer_upscaled"),
    },
    "codeformer_masked": {
        "1": load_image(),
        "2": loader(),
        "3": restore(mask=["1", 1]),
        "4": save(["3", 0], "codeformer_masked"),
    },
    "codeformer_preview_mask": {
        "1": load_image(),
        "2": loader(),
        "3": restore(),
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 1]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
        "4": save(["3", 0], "codeformer"),
    },
    "codeformer_crop_edit_paste": {
        "1": load_image(),
        "2": loader(),
        "3": restore(),
        "5": {"class_type": "ImageBlur", "inputs": {"image": ["3", 3], "blur_radius": 2, "sigma": 1.0}},
        "6": {
            "class_type": "CodeFormerPasteFaces",
            "inputs": {"image": ["1", 0], "faces": ["3", 4], "face_crops": ["5", 0]},
        },
        "4": save(["6", 0], "codeformer_pasted"),
    },
    "codeformer_video": {
        "1": {"class_type": "LoadVideo", "inputs": {"file": VIDEO_FILE}},
        "2": loader(),
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "4": {
            "class_type": "CodeFormerRestoreVideo",
            "inputs": {"frames": ["3", 0], "codeformer_model": ["2", 0], **widget_defaults("CodeFormerRestoreVideo")},
        },
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "fps": ["3", 2], "audio": ["3", 1]}},
        "6": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["5", 0], "filename_prefix": "codeformer_video", "format": "auto", "codec": "auto"},
        },
    },
    "codeformer_gfpgan_side_by_side": {  # GFPGAN in its own flow (GFPGANer's: facexlib, parsed paste), w unused
        "1": load_image(),
        "2": loader(),
        "5": loader(GFPGAN_FILE),
        "3": restore(),
        "6": restore(codeformer_model=["5", 0], flow="facexlib", parse_mask=True),
        "7": {
            "class_type": "ImageStitch",
            "inputs": {"image1": ["3", 0], "image2": ["6", 0], "direction": "right", "match_image_size": True,
                       "spacing_width": 8, "spacing_color": "white"},
        },
        "4": save(["7", 0], "codeformer_left_gfpgan_right"),
    },
    "codeformer_colorize": {
        "1": load_image(),
        "2": loader("codeformer_colorization.pth"),
        "3": restore(),
        "4": save(["3", 0], "codeformer_colorized"),
    },
    "codeformer_inpaint": {
        "1": load_image(),
        "2": loader("codeformer_inpainting.pth"),
        "3": restore(inpaint_mask=["1", 1]),
        "4": save(["3", 0], "codeformer_inpainted"),
    },
}  # fmt: skip


def node_specs() -> dict[str, dict]:
    """Widget names, socket inputs and outputs of every node type, ours from INPUT_TYPES."""
    sys.modules.setdefault("folder_paths", _folder_paths_stand_in())
    from codeformer_nodes.nodes.codeformer import NODE_CLASS_MAPPINGS

    specs = dict(CORE_NODES)
    for name, node in NODE_CLASS_MAPPINGS.items():
        declared = node.INPUT_TYPES()
        every = {**declared.get("required", {}), **declared.get("optional", {})}
        widgets = [key for key, spec in every.items() if _is_widget(spec[0])]
        sockets = {key: spec[0] for key, spec in every.items() if not _is_widget(spec[0])}
        outputs = list(zip(getattr(node, "RETURN_NAMES", node.RETURN_TYPES), node.RETURN_TYPES, strict=True))
        specs[name] = {"widgets": widgets, "outputs": outputs, "inputs": sockets}
    return specs


def _is_widget(kind: object) -> bool:
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")


def _folder_paths_stand_in() -> types.ModuleType:
    module = types.ModuleType("folder_paths")
    module.models_dir = str(ROOT / "models_stand_in")
    module.folder_names_and_paths = {}
    module.add_model_folder_path = lambda name, path, is_default=False: module.folder_names_and_paths.setdefault(
        name, ([path], set())
    )
    module.get_filename_list = lambda name: [MODEL_FILE, "codeformer_colorization.pth", "codeformer_inpainting.pth"]
    module.get_folder_paths = lambda name: list(module.folder_names_and_paths[name][0])
    return module


def to_ui(api: dict, specs: dict[str, dict]) -> dict:
    """The UI-format graph of an API-format workflow."""
    ids = {key: index for index, key in enumerate(api, start=1)}
    links, nodes = [], []
    outgoing: dict[tuple[str, int], list[int]] = {}
    for key, node in api.items():
        spec = specs[node["class_type"]]
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                source, slot = value
                kind = specs[api[source]["class_type"]]["outputs"][slot][1]
                links.append([len(links) + 1, ids[source], slot, ids[key], None, kind, name])
                outgoing.setdefault((source, slot), []).append(len(links))
    for order, (key, node) in enumerate(api.items()):
        spec = specs[node["class_type"]]
        inputs = []
        for name, kind in spec["inputs"].items():
            link = next((link[0] for link in links if link[3] == ids[key] and link[6] == name), None)
            if link is not None or name in node["inputs"]:
                inputs.append({"name": name, "type": kind, "link": link})
        linked_widgets = spec.get("linked_widgets", {})
        for name, (kind, _) in linked_widgets.items():  # the page keeps a linked widget's value as well
            link = next((link[0] for link in links if link[3] == ids[key] and link[6] == name), None)
            if link is not None:
                inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link})
        for link in links:
            if link[3] == ids[key]:
                link[4] = next(i for i, entry in enumerate(inputs) if entry["name"] == link[6])
        values = [
            linked_widgets[name][1]
            if name in linked_widgets
            else node["inputs"].get(name, "image" if name == "upload" else None)
            for name in spec["widgets"]
        ]
        nodes.append(
            {
                "id": ids[key],
                "type": node["class_type"],
                "pos": [60 + 360 * (order % 4), 80 + 420 * (order // 4)],
                "size": [320, 120 + 26 * len(values)],
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": inputs,
                "outputs": [
                    {"name": name, "type": kind, "links": outgoing.get((key, slot), []), "slot_index": slot}
                    for slot, (name, kind) in enumerate(spec["outputs"])
                ],
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": values,
            }
        )
    return {
        "last_node_id": len(nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": [link[:6] for link in links],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def main() -> None:
    specs = node_specs()
    OUT.mkdir(exist_ok=True)
    for name, api in WORKFLOWS.items():
        (OUT / f"{name}_api.json").write_text(json.dumps(api, indent=2) + "\n")
        (OUT / f"{name}.json").write_text(json.dumps(to_ui(api, specs), indent=2) + "\n")
        print(f"wrote {name}.json and {name}_api.json")


if __name__ == "__main__":
    main()
