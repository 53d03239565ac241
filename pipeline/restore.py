"""``restore_faces``: detect, align, restore in batches, paste back.

Every face of every image goes through the network in chunks (one forward per chunk,
one fidelity per face). The network sees the same 512x512 uint8 crops as the official
flow; the background is never quantized, and pixels outside every pasted face are
returned bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .detection import Detection, detect_faces, load_detector
from .geometry import (
    FACE_SIZE,
    crop_face,
    estimate_alignment,
    paste_affine,
    paste_region,
    square_paste_mask,
    warp_to_region,
)
from .images import ImageInput, as_image_list, is_grey, luma, to_uint8_rgb
from .options import MAX_OUTPUT_PIXELS, RestoreOptions

# More detections than this in one image mean a wrong threshold or broken detector weights;
# cropping them all would exhaust memory (each crop is 0.75 MiB).
MAX_FACES_PER_IMAGE = 1000

# (w, adain) of the official scripts for the variant checkpoints; restoration takes both as asked.
TASK_CALLS = {"colorization": (0.0, True), "inpainting": (1.0, False)}

# Called after each chunk with (faces done, faces in all); may raise to stop the run.
ChunkCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FaceInfo:
    """One restored face, as plain data.

    Attributes:
        image_index: which input image the face is in.
        box: detector box (x1, y1, x2, y2) in input pixels.
        score: the detector's confidence.
        landmarks: eyes, nose, mouth corners as (x, y) in input pixels.
        face_size: the larger side of the box.
        fidelity: the w the face was restored with.
        affine: 2x3 transform from input pixels to the 512x512 aligned crop.
        grey: the image is grey, so the face was pasted back grey.
    """

    image_index: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]
    face_size: float
    fidelity: float
    affine: tuple[tuple[float, float, float], tuple[float, float, float]]
    grey: bool = False

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class RestoreResult:
    """What a run produced.

    Attributes:
        images: restored images, float32 (H', W', C) in [0, 1], C as in the input.
        masks: per image, the soft mask of what was pasted (weight 0-1), (H', W').
        faces: one :class:`FaceInfo` per restored face, in processing order.
        crops: aligned input crops (N, 512, 512, 3), when asked for.
        restored_crops: restored crops (N, 512, 512, 3), when asked for.
    """

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    faces: list[FaceInfo]
    crops: torch.Tensor | None = None
    restored_crops: torch.Tensor | None = None
    faces_per_image: list[int] = field(default_factory=list)

    def faces_json(self) -> str:
        return json.dumps([face.to_dict() for face in self.faces])


def restore_faces(
    images: ImageInput,
    model: torch.nn.Module,
    options: RestoreOptions | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    **overrides: object,
) -> RestoreResult:
    """Restore every face in ``images`` with a CodeFormer ``model``.

    Args:
        images: a (B, H, W, C) float batch in [0, 1] (ComfyUI's IMAGE), or a list of
            float tensors or uint8 arrays; C is 1 (grey), 3 (RGB) or 4 (RGBA; alpha kept).
        model: a network from :func:`codeformer_nodes.load_codeformer`; its device and
            dtype decide where the faces run.
        options: a :class:`RestoreOptions`; keyword ``overrides`` replace single fields.
        on_chunk: progress callback after each network chunk.
    """
    pictures, options = _prepare(images, model, options, overrides)
    task = options.task
    if task == "colorization":
        pictures = [_with_colour(picture) for picture in pictures]
    if options.has_aligned:
        return _restore_aligned(pictures, model, options, on_chunk)
    faces, crops = find_faces(pictures, options, _device_of(model))
    fill = None
    if task == "inpainting":
        fill = inpaint_crop_masks(pictures, faces, crops, options)
        touched = fill.any(axis=(1, 2))  # a face with nothing to fill is left as it is, not resampled
        faces, crops, fill = [f for f, t in zip(faces, touched, strict=True) if t], crops[touched], fill[touched]
    restored = run_network(model, crops, [face.fidelity for face in faces], options, on_chunk, fill)
    result = paste_faces(pictures, faces, restored, options)
    if options.return_crops:
        result.crops = crops_as_float(crops)
        result.restored_crops = restored
    return result


def _prepare(
    images: ImageInput, model: torch.nn.Module, options: RestoreOptions | None, overrides: dict[str, object]
) -> tuple[list[torch.Tensor], RestoreOptions]:
    """Images as float tensors, and options with overrides applied, masks checked and the task resolved."""
    options = dataclasses.replace(options or RestoreOptions(), **overrides)
    pictures = as_image_list(images)
    for picture in pictures:
        check_output_size(picture, options.upscale)
    options = with_checked_masks(options, len(pictures))
    return pictures, dataclasses.replace(options, task=resolve_task(model, options))


def with_checked_masks(options: RestoreOptions, image_count: int) -> RestoreOptions:
    """Masks as (1 or B, H, W) batches; a (H, W) mask is one for every image."""
    checked = {}
    for name in ("selection_masks", "inpaint_masks"):
        masks = getattr(options, name)
        if masks is None:
            continue
        masks = masks[None] if masks.ndim == 2 else masks
        if masks.ndim != 3 or masks.shape[0] not in (1, image_count):
            raise ValueError(
                f"{name} must be (H, W) or (B, H, W) with B = 1 or the {image_count} images; got {tuple(masks.shape)}"
            )
        checked[name] = masks
    return dataclasses.replace(options, **checked) if checked else options


def resolve_task(model: torch.nn.Module, options: RestoreOptions) -> str:
    """The task to run: the one asked for, which must match the checkpoint's when it is known."""
    description = getattr(model, "description", None)
    checkpoint_task = getattr(description, "task", None)
    if options.task and checkpoint_task and options.task != checkpoint_task:
        raise ValueError(
            f"{description.source} holds a CodeFormer {checkpoint_task} checkpoint, but task {options.task!r} "
            f"was asked for; load the {options.task} checkpoint or drop the task setting"
        )
    return options.task or checkpoint_task or "restoration"


def normalise(crops: torch.Tensor) -> torch.Tensor:
    """(N, 512, 512, 3) uint8 crops -> (N, 3, 512, 512) float32 ``(rgb / 255 - 0.5) / 0.5``, as the official flow."""
    return ((crops.permute(0, 3, 1, 2).double() / 255.0).float() - 0.5) / 0.5


def white_crop_pixels(crops: np.ndarray) -> np.ndarray:
    """(N, 512, 512) bool: the pixels the official fill rule marks in uint8 crops."""
    return white_pixels(normalise(torch.from_numpy(crops)))[:, 0].bool().numpy()


def white_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask of pure-white pixels of normalised (B, 3, H, W) faces: the official fill rule."""
    return (x.float().sum(dim=1, keepdim=True) == 3.0).to(x.dtype)


def blend_inpainting(x: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Network output inside ``mask``, the input exactly outside it (masks (B, H, W) or (B, 1, H, W))."""
    inside = mask.reshape(mask.shape[0], 1, *mask.shape[-2:]).to(device=x.device) > 0
    return torch.where(inside, raw, x)


def task_fidelity(task: str | None, fidelity: float) -> float:
    """The w each task runs at: colorization 0, inpainting 1, restoration as asked."""
    return TASK_CALLS[task][0] if task in TASK_CALLS else fidelity


def task_adain(task: str | None, adain: bool) -> bool:
    """Whether a task uses AdaIN: colorization yes, inpainting no, restoration as asked."""
    return TASK_CALLS[task][1] if task in TASK_CALLS else adain


def _with_colour(picture: torch.Tensor) -> torch.Tensor:
    """Grey (H, W, 1) as three channels, so that colorization has somewhere to put colour."""
    return picture.expand(-1, -1, 3) if picture.shape[2] == 1 else picture


def inpaint_crop_masks(
    pictures: list[torch.Tensor], faces: list[FaceInfo], crops: np.ndarray, options: RestoreOptions
) -> np.ndarray:
    """(N, 512, 512) bool: which crop pixels inpainting fills.

    From ``options.inpaint_masks`` warped into each face's crop (nearest neighbour, so it
    stays binary), else the crop's pure-white pixels, as the official scripts do.
    """
    import cv2

    if options.inpaint_masks is None:
        return white_crop_pixels(crops)
    masks = []
    for face in faces:
        mask = options.inpaint_masks[face.image_index if options.inpaint_masks.shape[0] > 1 else 0]
        mask = mask.detach().to("cpu", torch.float32).numpy()
        height, width = pictures[face.image_index].shape[:2]
        to_image = np.diag([width / mask.shape[1], height / mask.shape[0], 1.0])  # mask pixels -> image pixels
        affine = np.array(face.affine) @ to_image
        warped = cv2.warpAffine(mask, affine, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
        masks.append(warped >= 0.5)
    return np.stack(masks) if masks else np.zeros((0, FACE_SIZE, FACE_SIZE), bool)


def sweep_fidelity(
    images: ImageInput,
    model: torch.nn.Module,
    values: Sequence[float],
    options: RestoreOptions | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    **overrides: object,
) -> RestoreResult:
    """Restore at each fidelity in ``values`` from a single detection pass.

    Results are image-major: for each input image, one output per value, in the order
    given. Each face's ``image_index`` refers to the output list.
    """
    if not values:
        raise ValueError("a fidelity sweep needs at least one w value")
    pictures, options = _prepare(images, model, options, overrides)
    if options.task != "restoration":
        raise ValueError("a fidelity sweep needs a restoration checkpoint: colorization and inpainting fix w")
    for value in values:
        dataclasses.replace(options, fidelity=value)  # validates each value
    if options.has_aligned:
        runs = [_restore_aligned(pictures, model, dataclasses.replace(options, fidelity=w), on_chunk) for w in values]
    else:
        faces, crops = find_faces(pictures, options, _device_of(model))
        runs = []
        for w in values:
            restored = run_network(model, crops, [w] * len(faces), options, on_chunk)
            swept = [dataclasses.replace(face, fidelity=w) for face in faces]
            run = paste_faces(pictures, swept, restored, options)
            if options.return_crops:
                run.crops = crops_as_float(crops)
                run.restored_crops = restored
            runs.append(run)
    return _interleave(runs, len(pictures), crops_per_image=options.has_aligned)


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


def find_faces(
    pictures: list[torch.Tensor], options: RestoreOptions, device: torch.device
) -> tuple[list[FaceInfo], np.ndarray]:
    """Detect, select and align faces; returns their info and (N, 512, 512, 3) uint8 crops."""
    detector = load_detector(options.detector, device, options.weights_dir)
    task = options.task or "restoration"
    faces: list[FaceInfo] = []
    crops: list[np.ndarray] = []
    for index, picture in enumerate(pictures):
        rgb = to_uint8_rgb(picture)
        grey = is_grey(picture, rgb)
        detections = detect_faces(
            rgb, detector, options.detection_size, options.confidence, options.eye_distance_threshold
        )
        detections = [d for d in detections if _inside_selection_mask(d, options.selection_masks, index, picture)]
        if len(detections) > MAX_FACES_PER_IMAGE:
            raise ValueError(
                f"image {index}: the detector found {len(detections)} faces, over the limit of "
                f"{MAX_FACES_PER_IMAGE}; raise the confidence (now {options.confidence}) or check the detector weights"
            )
        for detection in select_faces(detections, options, picture.shape[0], picture.shape[1]):
            affine = estimate_alignment(np.array(detection.landmarks))
            if affine is None:
                continue
            crops.append(crop_face(rgb, affine))
            faces.append(
                FaceInfo(
                    image_index=index,
                    box=detection.box,
                    score=detection.score,
                    landmarks=detection.landmarks,
                    face_size=detection.size,
                    fidelity=task_fidelity(task, options.fidelity_for(detection.size)),
                    affine=tuple(tuple(float(v) for v in row) for row in affine),
                    grey=grey and task != "colorization",
                )
            )
    stacked = np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    return faces, stacked


def select_faces(detections: list[Detection], options: RestoreOptions, height: int, width: int) -> list[Detection]:
    """Order faces left to right (then top to bottom) and apply the size filters and selection.

    ``max_faces`` keeps the largest faces; an index list counts the faces left after the
    size filters, and indices past the end are skipped (images of a batch differ).
    """
    ordered = sorted(detections, key=lambda d: (d.centre[0], d.centre[1]))
    kept = [
        d
        for d in ordered
        if d.size >= options.min_face_size and (options.max_face_size is None or d.size <= options.max_face_size)
    ]
    if options.max_faces is not None and len(kept) > options.max_faces:
        largest = sorted(kept, key=lambda d: d.size, reverse=True)[: options.max_faces]
        kept = [d for d in kept if d in largest]
    selection = options.face_selection
    if not kept or selection == "all":
        return kept
    if selection == "largest":
        return [max(kept, key=lambda d: _clipped_area(d, height, width))]
    if selection == "center":
        return [min(kept, key=lambda d: np.hypot(d.centre[0] - width / 2, d.centre[1] - height / 2))]
    return [kept[i] for i in selection if 0 <= i < len(kept)]


def _inside_selection_mask(detection: Detection, masks: torch.Tensor | None, index: int, picture: torch.Tensor) -> bool:
    """Whether the face's box centre lies where the image's selection mask is >= 0.5."""
    if masks is None:
        return True
    mask = masks[index if masks.shape[0] > 1 else 0]
    x, y = detection.centre
    row = min(max(int(y * mask.shape[0] / picture.shape[0]), 0), mask.shape[0] - 1)
    column = min(max(int(x * mask.shape[1] / picture.shape[1]), 0), mask.shape[1] - 1)
    return bool(mask[row, column] >= 0.5)


def _clipped_area(detection: Detection, height: int, width: int) -> float:
    x1, y1, x2, y2 = detection.box
    return (min(max(x2, 0), width) - min(max(x1, 0), width)) * (min(max(y2, 0), height) - min(max(y1, 0), height))


def run_network(
    model: torch.nn.Module,
    crops: np.ndarray,
    fidelities: list[float],
    options: RestoreOptions,
    on_chunk: ChunkCallback | None = None,
    fill: np.ndarray | None = None,
) -> torch.Tensor:
    """Restore (N, 512, 512, 3) uint8 crops in chunks; returns float32 (N, 512, 512, 3) in [0, 1].

    Inpainting (``fill``: (N, 512, 512) bool) keeps every pixel outside its mask exactly.

    Running out of memory (on CUDA, in practice) halves the chunk and tries again, down to
    one face, then re-raises.
    """
    device, dtype = _device_of(model), _dtype_of(model)
    adain = task_adain(options.task, options.adain)
    faces = torch.from_numpy(crops)
    total = faces.shape[0]
    outputs: list[torch.Tensor] = []
    chunk, start = options.chunk_size, 0
    while start < total:
        batch = faces[start : start + chunk]
        x = normalise(batch)
        holes = None if fill is None else torch.from_numpy(fill[start : start + chunk])[:, None]
        network_input = x if holes is None else x.masked_fill(holes, 1.0)  # the model was taught white holes
        w = torch.tensor(fidelities[start : start + chunk])
        try:
            with torch.inference_mode():
                out = model(network_input.to(device, dtype), w=w, adain=adain)[0]
            if holes is not None:
                out = blend_inpainting(x.to(out.device), out.float(), holes)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            chunk //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        outputs.append(((out.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu())
        start += batch.shape[0]
        if on_chunk is not None:
            on_chunk(start, total)
    if not outputs:
        return torch.zeros((0, FACE_SIZE, FACE_SIZE, 3))
    return torch.cat(outputs)


def paste_faces(
    pictures: list[torch.Tensor], faces: list[FaceInfo], restored: torch.Tensor, options: RestoreOptions
) -> RestoreResult:
    """Paste restored 512x512 crops into their images with the soft face mask.

    ``restored`` is float (N, 512, 512, 3) in [0, 1], one crop per entry of ``faces``.
    """
    if restored.shape[0] != len(faces):
        raise ValueError(f"{restored.shape[0]} restored crops for {len(faces)} faces; give one crop per face")
    images, masks = [], []
    for index, picture in enumerate(pictures):
        canvas = _background(picture, options)
        mask = np.zeros(canvas.shape[:2], np.float32)
        for face, crop in zip(faces, restored, strict=True):
            if face.image_index == index:
                _paste_one(canvas, mask, face, crop.numpy().astype(np.float32), options)
        images.append(torch.from_numpy(canvas))
        masks.append(torch.from_numpy(mask))
    counts = [sum(face.image_index == i for face in faces) for i in range(len(pictures))]
    return RestoreResult(images=images, masks=masks, faces=faces, faces_per_image=counts)


def _paste_one(canvas: np.ndarray, mask: np.ndarray, face: FaceInfo, crop: np.ndarray, options: RestoreOptions) -> None:
    inverse = paste_affine(np.array(face.affine), options.upscale)
    region = paste_region(inverse, canvas.shape[0], canvas.shape[1])
    if region.bottom <= region.top or region.right <= region.left:
        return
    warped = warp_to_region(crop, inverse, region)
    if options.parse_mask:
        from .parsing import parse_paste_mask

        soft = parse_paste_mask(crop, inverse, region, options)
        pasted = warped
    else:
        coverage, soft = square_paste_mask(inverse, region, options.upscale)
        pasted = coverage[..., None] * warped
    soft = soft * np.float32(options.visibility)
    channels = min(canvas.shape[2], 3)
    if face.grey or channels == 1:
        pasted = luma(pasted)
        if channels == 3:
            pasted = np.repeat(pasted, 3, axis=2)
    rows, cols = region.slices
    background = canvas[rows, cols, :channels]
    weight = soft[..., None]
    blended = weight * pasted + (1 - weight) * background
    canvas[rows, cols, :channels] = np.where(weight > 0, blended, background)
    mask[rows, cols] = 1 - (1 - mask[rows, cols]) * (1 - soft)


def check_output_size(picture: torch.Tensor, upscale: int) -> None:
    """Refuse, before any work, an output larger than the pixel budget."""
    height, width = picture.shape[:2]
    if height * width * upscale * upscale > MAX_OUTPUT_PIXELS:
        raise ValueError(
            f"upscale {upscale} would make a {width * upscale}x{height * upscale} image, over the "
            f"{MAX_OUTPUT_PIXELS:,}-pixel budget; use a smaller upscale or a smaller input"
        )


def _background(picture: torch.Tensor, options: RestoreOptions) -> np.ndarray:
    """The image to paste into: a copy of the input, enlarged when upscaling."""
    height, width = picture.shape[:2]
    scale = options.upscale
    check_output_size(picture, scale)
    if scale == 1:
        return picture.numpy().copy()
    import cv2

    size = (width * scale, height * scale)
    if options.upscaler is None:
        return np.clip(cv2.resize(picture.numpy(), size, interpolation=cv2.INTER_LANCZOS4), 0, 1).reshape(
            size[1], size[0], -1
        )
    colour = picture[..., :3] if picture.shape[2] >= 3 else picture.expand(-1, -1, 3)
    enlarged = options.upscaler(colour[None])[0].detach().to("cpu", torch.float32).numpy()
    if enlarged.shape[:2] != (size[1], size[0]):
        enlarged = cv2.resize(enlarged, size, interpolation=cv2.INTER_LANCZOS4)
    enlarged = np.clip(enlarged, 0, 1)
    if picture.shape[2] == 1:
        return luma(enlarged)
    if picture.shape[2] == 4:
        alpha = cv2.resize(picture[..., 3].numpy(), size, interpolation=cv2.INTER_LANCZOS4)
        return np.concatenate([enlarged, np.clip(alpha, 0, 1)[..., None]], axis=2)
    return enlarged


def _restore_aligned(
    pictures: list[torch.Tensor], model: torch.nn.Module, options: RestoreOptions, on_chunk: ChunkCallback | None
) -> RestoreResult:
    """Inputs are aligned 512x512 faces: restore them as they are, no detection or paste."""
    for index, picture in enumerate(pictures):
        if picture.shape[:2] != (FACE_SIZE, FACE_SIZE):
            raise ValueError(
                f"has_aligned needs 512x512 aligned faces; image {index} is "
                f"{picture.shape[1]}x{picture.shape[0]}. Turn has_aligned off to detect faces."
            )
    crops = np.stack([to_uint8_rgb(picture) for picture in pictures])
    fidelities = [task_fidelity(options.task, options.fidelity_for(FACE_SIZE))] * len(pictures)
    fill = None
    if options.task == "inpainting":
        masks = options.inpaint_masks
        fill = white_crop_pixels(crops) if masks is None else _aligned_masks(masks, len(pictures))
    restored = run_network(model, crops, fidelities, options, on_chunk, fill)
    if fill is not None:  # outside the holes, the caller's own (unquantized) pixels
        originals = torch.stack([_with_colour(picture)[..., :3] for picture in pictures])
        restored = torch.where(torch.from_numpy(fill)[..., None], restored, originals)
    images = []
    for picture, crop, face in zip(pictures, crops, restored, strict=True):
        out = face.numpy()
        if options.task != "colorization" and is_grey(picture, crop):
            out = luma(out) if picture.shape[2] == 1 else np.repeat(luma(out), 3, axis=2)
        if picture.shape[2] == 4:
            out = np.concatenate([out, picture[..., 3:].numpy()], axis=2)
        images.append(torch.from_numpy(np.ascontiguousarray(out)))
    masks = [torch.ones(FACE_SIZE, FACE_SIZE) for _ in pictures]
    result = RestoreResult(images=images, masks=masks, faces=[], faces_per_image=[1] * len(pictures))
    if options.return_crops:
        result.crops = crops_as_float(crops)
        result.restored_crops = restored
    return result


def crops_as_float(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops as the float IMAGE layout callers get."""
    return torch.from_numpy(crops.astype(np.float32) / 255.0)


def _aligned_masks(masks: torch.Tensor, count: int) -> np.ndarray:
    if masks.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"inpaint masks for aligned faces must be 512x512; got {tuple(masks.shape)}")
    return (masks.detach().to("cpu").expand(count, -1, -1) >= 0.5).numpy()


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _dtype_of(model: torch.nn.Module) -> torch.dtype:
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32
