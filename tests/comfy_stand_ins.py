"""Small stand-ins for ComfyUI's ``folder_paths`` and ``comfy.*``, used only when ComfyUI is absent.

They record what the nodes ask of the host (loaded models, progress, interruption
checks) so tests can assert on it.
"""

from __future__ import annotations

import types
from pathlib import Path

import torch


class InterruptProcessingException(Exception):
    pass


def install(monkeypatch, models_dir: Path) -> types.SimpleNamespace:
    """Put stand-in modules into ``sys.modules``; returns a record of host calls."""
    record = types.SimpleNamespace(loaded=[], progress=[], interrupt_after=None, checks=0)

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(models_dir)
    folder_paths.folder_names_and_paths = {}

    def add_model_folder_path(name, path, is_default=False):
        paths, _ = folder_paths.folder_names_and_paths.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    def get_filename_list(name):
        paths, extensions = folder_paths.folder_names_and_paths[name]
        return sorted(p.name for folder in paths if Path(folder).is_dir() for p in Path(folder).iterdir()
                      if p.suffix in extensions)  # fmt: skip

    def get_full_path(name, filename):
        for folder in folder_paths.folder_names_and_paths[name][0]:
            if (Path(folder) / filename).is_file():
                return str(Path(folder) / filename)
        return None

    folder_paths.add_model_folder_path = add_model_folder_path
    folder_paths.get_filename_list = get_filename_list
    folder_paths.get_full_path = get_full_path
    folder_paths.get_folder_paths = lambda name: list(folder_paths.folder_names_and_paths[name][0])

    model_management = types.ModuleType("comfy.model_management")
    model_management.get_torch_device = lambda: torch.device("cpu")
    model_management.unet_offload_device = lambda: torch.device("cpu")
    model_management.load_models_gpu = lambda patchers: record.loaded.extend(patchers)
    model_management.InterruptProcessingException = InterruptProcessingException

    def throw_exception_if_processing_interrupted():
        record.checks += 1
        if record.interrupt_after is not None and record.checks > record.interrupt_after:
            raise InterruptProcessingException()

    model_management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

    model_patcher = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device

    model_patcher.ModelPatcher = ModelPatcher

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            record.progress.append((value, total))

    utils.ProgressBar = ProgressBar

    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.model_patcher, comfy.utils = model_management, model_patcher, utils
    for name, module in {
        "folder_paths": folder_paths,
        "comfy": comfy,
        "comfy.model_management": model_management,
        "comfy.model_patcher": model_patcher,
        "comfy.utils": utils,
    }.items():
        monkeypatch.setitem(__import__("sys").modules, name, module)
    return record
