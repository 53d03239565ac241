"""``restore_faces`` and ``sweep_fidelity``: detect, align, restore in batches, paste back.

Every face of every image goes through the network in chunks (one forward per chunk,
one fidelity per face). The network sees the same 512x512 uint8 crops as the official
flow; the background is never quantized, and pixels outside every pasted face are
returned bit for bit. The stages live in their own modules: ``faces`` (find and crop),
``inference`` (the network), ``paste`` (back into the image), ``tasks`` (what each
checkpoint's task changes).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Concatenate, ParamSpec

import numpy as np
import torch

from ..models.checkpoint import COLORIZATION, INPAINTING, RESTORATION
from ..models.cpu_memory import keep_freed_cpu_memory
from .conversion import ImageInput
from .detection import load_detector
from .errors import OptionError
from .faces import find_faces
from .flows import CODEFORMER, Flow
from .geometry import FACE_SIZE
from .images import as_image_list, crops_as_float, image_is_grey, luma, resized_levels, to_uint8_rgb
from .inference import ChunkCallback, RestorationNetwork, device_of, run_network
from .options import RestoreOptions, check_unit
from .paste import PasteSettings, check_output_size, grey_like_input, paste_faces
from .regions import boxes_per_image
from .results import RestoreResult
from .tasks import (
    aligned_inpaint_masks,
    as_restored_by,
    inpaint_crop_masks,
    resolve_task,
    takes_fidelity,
    task_fidelity,
    white_crop_pixels,
    with_colour,
)
from .upsampling import load_upsampler

Arguments = ParamSpec("Arguments")
Entry = Callable[Concatenate[ImageInput, RestorationNetwork, Arguments], RestoreResult]


def _keeping_freed_cpu_memory(entry: Entry[Arguments]) -> Entry[Arguments]:
    """One kept-memory scope (``models.cpu_memory``) for the whole call: detection and paste
    too, whose full-size images are the largest blocks outside the network."""

    @functools.wraps(entry)
    def scoped(
        images: ImageInput, model: RestorationNetwork, *args: Arguments.args, **kwargs: Arguments.kwargs
    ) -> RestoreResult:
        with keep_freed_cpu_memory(device_of(model)):
            return entry(images, model, *args, **kwargs)

    return scoped


@_keeping_freed_cpu_memory
def restore_faces(
    images: ImageInput,
    model: RestorationNetwork,
    options: RestoreOptions | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    **overrides: object,
) -> RestoreResult:
    """Restore every face in ``images`` with a CodeFormer ``model``.

    Args:
        images: a (B, H, W, C) float batch in [0, 1] (ComfyUI's IMAGE), one image or a list:
            tensors or arrays (floats in [0, 1], uint8 / uint16 levels; (H, W) or C of 1 (grey),
            3 (RGB) or 4 (RGBA; alpha kept)) or PIL images (``restore_faces(pipe(prompt).images,
            ...)``); ``result.images_like(images)`` gives the results back in their kind.
        model: a network from :func:`codeformer_nodes.load_codeformer`; its device and
            dtype decide where the faces run.
        options: a :class:`RestoreOptions`; keyword ``overrides`` replace single fields.
        on_chunk: progress callback after each network chunk.

    Faces are reported image by image, left to right; overlapping faces are pasted in the
    detector's order, as the official flow does (see :func:`paste_faces`).
    """
    pictures, options = _prepare(images, model, options, overrides)
    if options.task == COLORIZATION:
        pictures = [with_colour(picture) for picture in pictures]
    if options.has_aligned:
        return _restore_aligned(pictures, model, options, on_chunk)
    faces, crops = find_faces(pictures, options, device_of(model))
    fill = None
    if options.task == INPAINTING:
        fill = inpaint_crop_masks(pictures, faces, crops, options)
        touched = fill.any(axis=(1, 2))  # a face with nothing to fill is left as it is, not resampled
        faces, crops, fill = [f for f, t in zip(faces, touched, strict=True) if t], crops[touched], fill[touched]
    paste = PasteSettings.of(options, device_of(model), faces=bool(faces))  # weights read before the network runs
    restored = run_network(model, crops, [face.fidelity for face in faces], options, on_chunk, fill)
    result = paste_faces(pictures, faces, restored, paste)
    result.faces = as_restored_by(model, result.faces)
    if options.return_crops:
        result.crops = crops_as_float(crops)
        result.restored_crops = restored.cpu()
    return result


@_keeping_freed_cpu_memory
def sweep_fidelity(
    images: ImageInput,
    model: RestorationNetwork,
    values: Iterable[float],
    options: RestoreOptions | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    **overrides: object,
) -> RestoreResult:
    """Restore at each fidelity in ``values`` from a single detection pass.

    ``values`` is any iterable of numbers in [0, 1] (a list, a generator, a numpy array).
    Results are image-major: for each input image, one output per value, in the order
    given. Each face's ``image_index`` refers to the output list.
    """
    values = sweep_values(values)
    pictures, options = _prepare(images, model, options, overrides)
    if options.task != RESTORATION:
        raise ValueError("a fidelity sweep needs a restoration checkpoint: colorization and inpainting fix w")
    if not takes_fidelity(model):
        raise ValueError(
            f"a fidelity sweep varies CodeFormer's w, which {model.kind.architecture} does not take (every w would "
            "give the same faces); restore once, or load a CodeFormer checkpoint"
        )
    if options.has_aligned:
        runs = [_restore_aligned(pictures, model, dataclasses.replace(options, fidelity=w), on_chunk) for w in values]
    else:
        faces, crops = find_faces(pictures, options, device_of(model))
        paste = PasteSettings.of(options, device_of(model), faces=bool(faces))
        runs = []
        for w in values:
            restored = run_network(model, crops, [w] * len(faces), options, on_chunk)
            swept = [dataclasses.replace(face, fidelity=w) for face in faces]
            run = paste_faces(pictures, swept, restored, paste)
            if options.return_crops:
                run.crops = crops_as_float(crops)
                run.restored_crops = restored.cpu()
            runs.append(run)
    return _interleave(runs, len(pictures), crops_per_image=options.has_aligned)


def sweep_values(values: Iterable[float]) -> tuple[float, ...]:
    """The w values of a sweep, read once (an iterator is consumed here, a numpy array read as numbers),
    each checked as ``RestoreOptions.fidelity`` is."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise OptionError(f"sweep values must be an iterable of numbers in [0, 1]; got {type(values).__name__}")
    if isinstance(values, (np.ndarray, torch.Tensor)):
        if values.ndim > 1:
            raise OptionError(f"sweep values must be one row of w values; got an array of shape {tuple(values.shape)}")
        values = values.reshape(-1).tolist()
    swept = tuple(values)
    if not swept:
        raise OptionError("sweep values: a fidelity sweep needs at least one w value")
    for position, value in enumerate(swept):
        check_unit(f"sweep value {position}", value)
    return swept


def _prepare(
    images: ImageInput, model: RestorationNetwork, options: RestoreOptions | None, overrides: dict[str, object]
) -> tuple[list[torch.Tensor], RestoreOptions]:
    """Images as float tensors, and options with overrides applied, masks checked, the task resolved and
    the detector and upsamplers loaded: their weights are read here, before the first image is computed
    (the parser's once faces are found: :class:`PasteSettings`)."""
    options = dataclasses.replace(options or RestoreOptions(), **overrides)
    pictures = as_image_list(images)
    for picture in pictures:
        check_output_size(picture, options.upscale)
    options = with_checked_masks(options, len(pictures))
    if options.regions is not None:
        options = dataclasses.replace(options, regions=boxes_per_image(options.regions, len(pictures)))
    device = device_of(model)
    options = dataclasses.replace(with_upsamplers(options, device), task=resolve_task(model, options))
    if isinstance(options.detector, str) and not options.has_aligned:
        options = dataclasses.replace(options, detector=load_detector(options.detector, device, options.weights_dir))
    return pictures, options


def with_upsamplers(options: RestoreOptions, device: torch.device) -> RestoreOptions:
    """Upsamplers given as files, loaded (once when both name the same file) on the network's device."""
    loaded: dict[str, object] = {}
    changes = {}
    for name in ("upscaler", "face_upsampler"):
        source = getattr(options, name)
        if isinstance(source, (str, Path)):
            if str(source) not in loaded:
                loaded[str(source)] = load_upsampler(source, device, weights_dir=options.weights_dir)
            changes[name] = loaded[str(source)]
    return dataclasses.replace(options, **changes) if changes else options


def with_checked_masks(options: RestoreOptions, image_count: int) -> RestoreOptions:
    """Masks as (1 or B, H, W) batches; a (H, W) mask is one for every image."""
    checked = {}
    for name in ("selection_masks", "inpaint_masks"):
        masks = getattr(options, name)
        if masks is None:
            continue
        masks = masks[None] if masks.ndim == 2 else masks  # (H, W) or (B, H, W): checked by the options
        if masks.shape[0] not in (1, image_count):
            raise OptionError(
                f"{name} must be (H, W) or (B, H, W) with B = 1 or the {image_count} images; got {tuple(masks.shape)}"
            )
        checked[name] = masks
    return dataclasses.replace(options, **checked) if checked else options


def _interleave(runs: list[RestoreResult], image_count: int, crops_per_image: bool) -> RestoreResult:
    """Merge per-value results into one, image-major; crops follow their faces (or images)."""
    merged = RestoreResult(images=[], masks=[], faces=[], faces_per_image=[])
    crops, restored = [], []
    for index in range(image_count):
        for run in runs:
            output_index = len(merged.images)
            merged.images.append(run.images[index])
            merged.masks.append(run.masks[index])
            merged.faces_per_image.append(run.faces_per_image[index])
            rows = [i for i, face in enumerate(run.faces) if face.image_index == index]
            merged.faces += [dataclasses.replace(run.faces[i], image_index=output_index) for i in rows]
            if run.crops is not None:
                rows = [index] if crops_per_image else rows
                crops.append(run.crops[rows])
                restored.append(run.restored_crops[rows])
    if crops:
        merged.crops, merged.restored_crops = torch.cat(crops), torch.cat(restored)
    return merged


def _restore_aligned(
    pictures: list[torch.Tensor], model: RestorationNetwork, options: RestoreOptions, on_chunk: ChunkCallback | None
) -> RestoreResult:
    """Inputs are aligned faces: restore them as they are, no detection or paste. The codeformer flow
    takes any size and resizes it to 512x512 (INTER_LINEAR) first, as its command does."""
    flow = options.rules
    pictures = [_aligned_size(picture, index, flow) for index, picture in enumerate(pictures)]
    crops = np.stack([to_uint8_rgb(picture) for picture in pictures])
    fidelities = [task_fidelity(options.task, options.fidelity_for(FACE_SIZE))] * len(pictures)
    fill = None
    if options.task == INPAINTING:
        masks = options.inpaint_masks
        fill = white_crop_pixels(crops) if masks is None else aligned_inpaint_masks(masks, len(pictures))
    restored = run_network(model, crops, fidelities, options, on_chunk, fill).cpu()
    if flow.rounds_restored_faces:
        restored = restored.mul(255).round_().div_(255)
    if fill is not None:  # outside the holes, the caller's own (unquantized) pixels
        originals = torch.stack([with_colour(picture)[..., :3] for picture in pictures])
        restored = torch.where(torch.from_numpy(fill)[..., None], restored, originals)
    images = []
    for picture, crop, out in zip(pictures, crops, restored, strict=True):
        if options.task != COLORIZATION and image_is_grey(picture, crop, flow):
            if flow.grey_faces_take_input_colour and picture.shape[2] != 1:
                out = grey_like_input(out, crop)
            else:
                out = luma(out).expand(-1, -1, min(picture.shape[2], 3))
        if picture.shape[2] == 4:
            out = torch.cat([out, picture[..., 3:]], dim=2)
        images.append(out.contiguous())
    masks = [torch.ones(FACE_SIZE, FACE_SIZE) for _ in pictures]
    result = RestoreResult(images=images, masks=masks, faces=[], faces_per_image=[1] * len(pictures))
    if options.return_crops:
        result.crops = crops_as_float(crops)
        result.restored_crops = restored
    return result


def _aligned_size(picture: torch.Tensor, index: int, flow: Flow) -> torch.Tensor:
    if picture.shape[:2] == (FACE_SIZE, FACE_SIZE):
        return picture
    if flow.name != CODEFORMER:
        raise ValueError(
            f"has_aligned needs 512x512 aligned faces; image {index} is "
            f"{picture.shape[1]}x{picture.shape[0]}. Turn has_aligned off to detect faces, or use the codeformer flow, "
            "which resizes aligned faces to 512x512."
        )
    return resized_levels(picture, size=(FACE_SIZE, FACE_SIZE))
