"""What the nodes need from ComfyUI: model folders, model management, progress, interruption.

ComfyUI's modules are imported inside the functions, so importing the pack costs nothing
and the library stays usable without ComfyUI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import Precision, RestorerKind, build_face_restorer, choose_precision, precision_of
from ..models.checkpoint import WEIGHT_SUFFIXES
from ..models.downloads import locate
from ..models.official import FACE_RESTORER_NAMES

MODEL_FOLDER = "facerestore_models"
# Where ComfyUI packs (facerestore_cf, ReActor) keep the face detector and parser weights.
HELPER_FOLDER = "facedetection"
LOG = logging.getLogger("codeformer_nodes")


@dataclass(frozen=True)
class CodeFormerModel:
    """The CODEFORMER_MODEL socket: a face restorer (CodeFormer, GFPGAN, RestoreFormer) under ComfyUI's
    model management. The socket keeps its name: saved workflows refer to it.

    Attributes:
        kind: the family and what it takes (only CodeFormer reads the fidelity w).
        task: what the weights do: restoration, colorization or inpainting.
        precision: what the network computes in.
    """

    patcher: object  # comfy.model_patcher.ModelPatcher
    kind: RestorerKind
    task: str
    precision: Precision

    def network_on_device(self) -> torch.nn.Module:
        """Load the network onto ComfyUI's device (offloading others if needed) and return it."""
        import comfy.model_management as model_management

        model_management.load_models_gpu([self.patcher])
        return self.patcher.model


# (module, attribute) pairs of ComfyUI's API that the nodes call.
REQUIRED_HOST_API = (
    ("folder_paths", "add_model_folder_path"),
    ("folder_paths", "get_filename_list"),
    ("folder_paths", "get_full_path"),
    ("folder_paths", "get_folder_paths"),
    ("comfy.model_patcher", "ModelPatcher"),
    ("comfy.model_management", "load_models_gpu"),
    ("comfy.model_management", "get_torch_device"),
    ("comfy.model_management", "unet_offload_device"),
    ("comfy.model_management", "throw_exception_if_processing_interrupted"),
    ("comfy.utils", "ProgressBar"),
)


def missing_host_api() -> list[str]:
    """Names of ComfyUI's API this pack needs but the running ComfyUI lacks (none outside ComfyUI)."""
    import importlib

    try:
        importlib.import_module("folder_paths")
        importlib.import_module("comfy")
    except ImportError:
        return []
    missing: list[str] = []
    for module_name, attribute in REQUIRED_HOST_API:
        if module_name in missing:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not hasattr(module, attribute):
            missing.append(f"{module_name}.{attribute}")
    return missing


def register_model_folder() -> None:
    """Add ``models/facerestore_models`` to ComfyUI's folders, extending what is there.

    facerestore_cf and ReActor use the same folder; other packs may have registered it
    already, with their paths and extensions, which are kept.
    """
    import folder_paths

    folder_paths.add_model_folder_path(MODEL_FOLDER, str(Path(folder_paths.models_dir) / MODEL_FOLDER))
    paths, extensions = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    missing = [suffix for suffix in WEIGHT_SUFFIXES if suffix not in extensions]
    if isinstance(extensions, set):
        extensions.update(missing)
    else:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, [*extensions, *missing])


def model_files() -> list[str]:
    """The weights in ``facerestore_models``, then the official files not there yet (CodeFormer's
    checkpoints and GFPGANv1.4, fetched on use)."""
    import folder_paths

    register_model_folder()
    present = folder_paths.get_filename_list(MODEL_FOLDER)
    return [*present, *(name for name in FACE_RESTORER_NAMES if name not in present)]


def model_folders() -> list[str]:
    import folder_paths

    register_model_folder()
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def helper_weights_folder() -> Path:
    """ComfyUI's ``models/facedetection``: the detector and parser weights are looked for (and fetched) there."""
    import folder_paths

    return Path(folder_paths.models_dir) / HELPER_FOLDER


def resolve_model_file(name: str) -> Path:
    import folder_paths

    register_model_folder()
    path = folder_paths.get_full_path(MODEL_FOLDER, name)
    if path is None and name in FACE_RESTORER_NAMES:
        folder = Path(model_folders()[0])
        LOG.info("CodeFormer: fetching %s into %s", name, folder)
        return locate(FACE_RESTORER_NAMES[name], [folder], progress_bar())
    if path is None:
        raise FileNotFoundError(
            f"face restorer weights {name!r} not found. Put codeformer.pth (from the official CodeFormer "
            f"release), a GFPGAN or RestoreFormer file, or a .safetensors copy in one of: "
            f"{', '.join(model_folders())}, then refresh."
        )
    return Path(path)


def load_managed_model(path: Path, precision: str) -> CodeFormerModel:
    import comfy.model_management as model_management
    import comfy.model_patcher

    device = model_management.get_torch_device()
    network = build_face_restorer(path, choose_precision(precision, device), precision)
    patcher = comfy.model_patcher.ModelPatcher(
        network, load_device=device, offload_device=model_management.unet_offload_device()
    )
    return CodeFormerModel(patcher=patcher, kind=network.kind, task=network.task, precision=precision_of(network))


def progress_bar() -> Callable[[int, int | None], None]:
    """ComfyUI's progress bar for a task of (done, total) units, e.g. bytes of a download."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(1)

    def update(done: int, total: int | None) -> None:
        bar.update_absolute(done, total or max(done, 1))

    return update


def progress_callback() -> Callable[[int, int], None]:
    """Update ComfyUI's progress bar per chunk and stop the ComfyUI way when interrupted."""
    import comfy.model_management as model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(1)  # its total is set by the first chunk

    def on_chunk(done: int, total: int) -> None:
        bar.update_absolute(done, total)
        model_management.throw_exception_if_processing_interrupted()

    return on_chunk


def check_interrupted() -> None:
    import comfy.model_management as model_management

    model_management.throw_exception_if_processing_interrupted()


def upscale_model_callable(upscale_model: object) -> Callable[[torch.Tensor], torch.Tensor]:
    """ComfyUI's UPSCALE_MODEL (a spandrel descriptor) as the pipeline's upsampler, run as the official
    flow runs Real-ESRGAN (:class:`TiledUpsampler`: its tiles, pads and rounding, tiles halved when
    memory runs out) on ComfyUI's device, and put back on the CPU after each use."""
    import comfy.model_management as model_management

    from ..pipeline.upsampling import TiledUpsampler

    upsampler = TiledUpsampler(upscale_model.model, upscale_model.scale)

    def upscale(image: torch.Tensor) -> torch.Tensor:
        upscale_model.to(model_management.get_torch_device())
        try:
            return upsampler(image)
        finally:
            upscale_model.to("cpu")

    return upscale
