"""ComfyUI nodes: thin adapters over ``load_face_restorer``/``restore_faces``; no logic of their own.

Images arrive as (B, H, W, C) float tensors in [0, 1] and masks as (B, H, W); both are
only read. Node ids and input names are stable: saved workflows refer to them.
"""

from __future__ import annotations

import torch

from ..models import PRECISION_HELP, PRECISIONS
from ..pipeline import FidelityRamp, paste_faces, restore_faces, sweep_fidelity
from ..pipeline.geometry import FACE_SIZE
from ..pipeline.option_help import RAMP_HELP, RESTORE_HELP
from ..pipeline.options import FACE_SELECTIONS, MAX_UPSCALE
from . import host, segs, video
from .sockets import (
    CATEGORY,
    DEFAULT_RAMP,
    DEFAULTS,
    DETECTION_WIDGETS,
    FACES_SOCKET,
    FIDELITY_SOCKET,
    FLOW_WIDGETS,
    MODEL_SOCKET,
    DetectedFaces,
    FidelityControl,
    crops_or_placeholder,
    detection_options,
    parse_indices,
    parse_sweep,
    stack_images,
)

FACE_SELECTION_CHOICES = (*FACE_SELECTIONS, "indices")


class CodeFormerModelLoader:
    """Load a face restorer from ``models/facerestore_models`` (any file name): CodeFormer, GFPGAN or
    RestoreFormer, told apart by their keys; the official files are offered even before they are there,
    and fetched (checked) when chosen. The node id stays: saved workflows refer to it."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CODEFORMER_MODEL", "STRING")
    RETURN_NAMES = ("codeformer_model", "task")
    OUTPUT_TOOLTIPS = (
        "the loaded network, for the restore nodes",
        "what the weights do: restoration, colorization or inpainting (GFPGAN and RestoreFormer: restoration)",
    )
    FUNCTION = "load"
    DESCRIPTION = (
        "Loads face restorer weights, recognised by their keys whatever the file's name: CodeFormer "
        "(restoration, colorization or inpainting), GFPGAN 1.2-1.4 or RestoreFormer (these two ignore w); an "
        "official file (CodeFormer's, GFPGANv1.4) that is not there yet is downloaded and checked when chosen."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = (
            host.model_files(),
            {"tooltip": "a weights file in models/facerestore_models (.pth or .safetensors, any name): CodeFormer, "
                        "GFPGAN or RestoreFormer"},
        )  # fmt: skip
        precision = (list(PRECISIONS), {"default": "auto", "tooltip": PRECISION_HELP})
        return {"required": {"model_name": files, "precision": precision}}

    def load(self, model_name: str, precision: str) -> tuple[host.CodeFormerModel, str]:
        model = host.load_managed_model(host.resolve_model_file(model_name), precision)
        host.LOG.info("%s %s loaded from %s in %s", model.kind.architecture, model.task, model_name, model.precision)
        return (model, model.task)


class CodeFormerFidelity:
    """Fidelity w (CFT weight), an optional size ramp, visibility, and an optional sweep."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CODEFORMER_FIDELITY",)
    RETURN_NAMES = ("fidelity",)
    OUTPUT_TOOLTIPS = ("connect to a restore node's fidelity input; it replaces that node's w",)
    FUNCTION = "build"
    DESCRIPTION = (
        "The fidelity w of CodeFormer's transformer (0 favours quality, 1 fidelity to the input), optionally "
        "ramped by face size, with a visibility blend and an optional sweep of several w values."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        unit = {"min": 0.0, "max": 1.0, "step": 0.01}
        size = {"min": 0, "max": 8192, "step": 1}
        return {
            "required": {
                "w": ("FLOAT", {"default": DEFAULTS.fidelity, **unit, "tooltip": RESTORE_HELP["fidelity"]}),
                "visibility": ("FLOAT", {"default": DEFAULTS.visibility, **unit,
                                         "tooltip": RESTORE_HELP["visibility"]}),
                "size_ramp": ("BOOLEAN", {"default": False,
                                          "tooltip": RESTORE_HELP["ramp"] + "; off: w for every face"}),
                "small_face_w": ("FLOAT", {"default": DEFAULT_RAMP.small_w, **unit, "tooltip": RAMP_HELP["small_w"]}),
                "large_face_w": ("FLOAT", {"default": DEFAULT_RAMP.large_w, **unit, "tooltip": RAMP_HELP["large_w"]}),
                "small_face_size": ("INT", {"default": int(DEFAULT_RAMP.small_size), **size,
                                            "tooltip": RAMP_HELP["small_size"]}),
                "large_face_size": ("INT", {"default": int(DEFAULT_RAMP.large_size), **size,
                                            "tooltip": RAMP_HELP["large_size"]}),
                "sweep": ("STRING", {"default": "", "tooltip": RESTORE_HELP["sweep"] + "; comma-separated, e.g. "
                                                               "0, 0.5, 1; blank for none"}),
            }
        }  # fmt: skip

    def build(
        self,
        w: float,
        visibility: float,
        size_ramp: bool,
        small_face_w: float,
        large_face_w: float,
        small_face_size: int,
        large_face_size: int,
        sweep: str,
    ) -> tuple[FidelityControl]:
        fidelity: float | FidelityRamp = w
        if size_ramp:
            fidelity = FidelityRamp(small_face_w, large_face_w, small_face_size, large_face_size)
        return (FidelityControl(fidelity=fidelity, visibility=visibility, sweep=parse_sweep(sweep)),)


class CodeFormerRestoreFaces:
    """Detect, align, restore and paste back every face of every image in the batch."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "IMAGE", "CODEFORMER_FACES", "STRING", "INT")
    RETURN_NAMES = ("image", "face_mask", "face_crops", "restored_crops", "faces", "faces_json", "face_count")
    OUTPUT_TOOLTIPS = (
        "the images with their faces restored and pasted back (after a sweep, one per w for each input)",
        "where restored faces were pasted, 0-1: the soft paste mask of each image",
        "the faces as found: aligned 512x512 crops, one per face, to edit and paste back with Paste Faces",
        "the restored faces as 512x512 crops, before they are pasted",
        "the faces and how they were pasted, for CodeFormer Paste Faces and CodeFormer Faces to SEGS",
        "a JSON list of the faces: image, box, score, landmarks, size and the w each was restored with",
        "how many faces were restored",
    )
    FUNCTION = "restore"
    DESCRIPTION = (
        "Restores faces with CodeFormer, following the checkpoint's task: restoration uses w; colorization "
        "(w 0) returns colour; inpainting (w 1) fills inpaint_mask, or pure-white pixels without one. "
        "With no face found, crop outputs are one black 512x512 image."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the images whose faces are restored (a batch: each one)"}),
                "codeformer_model": MODEL_SOCKET,
                **DETECTION_WIDGETS,
                "face_selection": (list(FACE_SELECTION_CHOICES), {"default": DEFAULTS.face_selection,
                                   "tooltip": RESTORE_HELP["face_selection"] + "; indices: those in face_indices"}),
                "face_indices": ("STRING", {"default": "", "tooltip": RESTORE_HELP["face_indices"] +
                                            "; with face_selection 'indices', e.g. 0,2"}),
                "min_face_size": ("INT", {"default": 0, "min": 0, "max": 8192,
                                          "tooltip": RESTORE_HELP["min_face_size"]}),
                "max_face_size": ("INT", {"default": 0, "min": 0, "max": 8192,
                                          "tooltip": RESTORE_HELP["max_face_size"] + "; 0 for no limit"}),
                "has_aligned": ("BOOLEAN", {"default": DEFAULTS.has_aligned, "tooltip": RESTORE_HELP["has_aligned"]}),
                "upscale": ("INT", {"default": DEFAULTS.upscale, "min": 1, "max": MAX_UPSCALE,
                                    "tooltip": RESTORE_HELP["upscale"] + " (upscale_model)"}),
                "parse_mask": ("BOOLEAN", {"default": DEFAULTS.uses_parse_mask, "tooltip": RESTORE_HELP["parse_mask"]}),
                "chunk_size": ("INT", {"default": 0, "min": 0, "max": 64,
                                       "tooltip": RESTORE_HELP["chunk_size"] + "; 0 picks by device (1 on a CPU)"}),
            },
            "optional": {
                **FLOW_WIDGETS,
                "keep_size": ("BOOLEAN", {"default": DEFAULTS.keep_size, "tooltip": RESTORE_HELP["keep_size"]}),
                "draw_box": ("BOOLEAN", {"default": DEFAULTS.draw_box, "tooltip": RESTORE_HELP["draw_box"]}),
                "face_upsample": ("BOOLEAN", {"default": False,
                                              "tooltip": RESTORE_HELP["face_upsampler"] + "; needs upscale_model"}),
                "fidelity": FIDELITY_SOCKET,
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": RESTORE_HELP["upscaler"] + "; from Load Upscale Model"}),
                "mask": ("MASK", {"tooltip": RESTORE_HELP["selection_masks"]}),
                "inpaint_mask": ("MASK", {"tooltip": RESTORE_HELP["inpaint_masks"]}),
                "bounding_box": ("BOUNDING_BOX", {"tooltip": RESTORE_HELP["regions"]}),
                "bounding_boxes": ("BOUNDING_BOXES", {"tooltip": RESTORE_HELP["regions"]}),
            },
        }  # fmt: skip

    def restore(
        self,
        image: torch.Tensor,
        codeformer_model: host.CodeFormerModel,
        w: float,
        detector: str,
        detection_size: int,
        confidence: float,
        face_selection: str,
        face_indices: str,
        min_face_size: int,
        max_face_size: int,
        has_aligned: bool,
        upscale: int,
        parse_mask: bool,
        chunk_size: int,
        flow: str = DEFAULTS.flow,
        keep_size: bool = DEFAULTS.keep_size,
        draw_box: bool = DEFAULTS.draw_box,
        face_upsample: bool = False,
        fidelity: FidelityControl | None = None,
        upscale_model: object | None = None,
        mask: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
        bounding_box: dict | None = None,
        bounding_boxes: list | None = None,
    ) -> tuple:
        control = fidelity or FidelityControl(fidelity=w)
        if face_upsample and upscale_model is None:
            raise ValueError("face_upsample enlarges faces with upscale_model: connect a Load Upscale Model node")
        upscaler = host.upscale_model_callable(upscale_model) if upscale_model is not None else None
        options = detection_options(
            control,
            detector,
            detection_size,
            confidence,
            host.helper_weights_folder(),
            face_selection=parse_indices(face_indices) if face_selection == "indices" else face_selection,
            min_face_size=min_face_size,
            max_face_size=max_face_size or None,
            selection_masks=mask,
            regions=bounding_boxes if bounding_boxes is not None else bounding_box,
            inpaint_masks=inpaint_mask,
            has_aligned=has_aligned,
            upscale=upscale,
            upscaler=upscaler,
            face_upsampler=upscaler if face_upsample else None,
            parse_mask=parse_mask,
            flow=flow,
            keep_size=keep_size,
            draw_box=draw_box,
            chunk_size=chunk_size or None,
            return_crops=True,
        )
        network = codeformer_model.network_on_device()
        on_chunk = host.progress_callback()
        if control.sweep:
            result = sweep_fidelity(image, network, control.sweep, options, on_chunk=on_chunk)
        else:
            result = restore_faces(image, network, options, on_chunk=on_chunk)
        host.check_interrupted()
        images = stack_images(result.images)
        faces = DetectedFaces(
            faces=tuple(result.faces),
            options=options,
            input_sizes=tuple(tuple(picture.shape[:2]) for picture in image),
            outputs_per_input=len(control.sweep) or 1,
            restored=images,
        )
        return (
            images,
            stack_images(result.masks),
            crops_or_placeholder(result.crops),
            crops_or_placeholder(result.restored_crops),
            faces,
            result.faces_json(),
            len(result.faces),
        )


class CodeFormerPasteFaces:
    """Paste 512x512 face crops (edited by any nodes) back with the restore node's soft mask."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "face_mask")
    OUTPUT_TOOLTIPS = ("the images with the crops pasted back", "where crops were pasted, 0-1: the soft paste mask")
    FUNCTION = "paste"
    DESCRIPTION = (
        "Pastes crops back where CodeFormer Restore Faces found them, one crop per face, in order, into the image "
        "the restore node was given (after a fidelity sweep, one output per w; upscaled as the restore node does)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the image the restore node was given (not its output)"}),
                "faces": FACES_SOCKET,
                "face_crops": (
                    "IMAGE",
                    {
                        "tooltip": "512x512 face crops, one per face in the order of faces (e.g. "
                        "the restore node's crops, edited)"
                    },
                ),
            }
        }

    def paste(self, image: torch.Tensor, faces: DetectedFaces, face_crops: torch.Tensor) -> tuple:
        if not faces.faces:
            return (image, torch.zeros(image.shape[:3]))
        targets = faces.paste_targets(image)
        if face_crops.shape[1:3] != (FACE_SIZE, FACE_SIZE):
            raise ValueError(f"face_crops must be 512x512 crops; got {face_crops.shape[2]}x{face_crops.shape[1]}")
        result = paste_faces(targets, list(faces.faces), face_crops[..., :3].cpu(), faces.options)
        return (stack_images(result.images), stack_images(result.masks))


NODE_CLASS_MAPPINGS = {
    "CodeFormerModelLoader": CodeFormerModelLoader,
    "CodeFormerFidelity": CodeFormerFidelity,
    "CodeFormerRestoreFaces": CodeFormerRestoreFaces,
    "CodeFormerPasteFaces": CodeFormerPasteFaces,
    **segs.NODE_CLASS_MAPPINGS,
    **video.NODE_CLASS_MAPPINGS,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CodeFormerModelLoader": "Load Face Restorer (CodeFormer, GFPGAN)",
    "CodeFormerFidelity": "CodeFormer Fidelity (CFT weight)",
    "CodeFormerRestoreFaces": "CodeFormer Restore Faces",
    "CodeFormerPasteFaces": "CodeFormer Paste Faces",
    **segs.NODE_DISPLAY_NAME_MAPPINGS,
    **video.NODE_DISPLAY_NAME_MAPPINGS,
}
