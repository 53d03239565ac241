"""The video node: a clip's frames (an IMAGE batch) restored with faces kept steady along their tracks."""

from __future__ import annotations

import json

import torch

from ..pipeline.option_help import VIDEO_HELP
from ..pipeline.video import VideoOptions, restore_video
from . import host
from .sockets import (
    CATEGORY,
    DEFAULTS,
    DETECTION_WIDGETS,
    FIDELITY_SOCKET,
    FLOW_WIDGETS,
    MODEL_SOCKET,
    FidelityControl,
    detection_options,
    parse_indices,
    stack_images,
)

VIDEO_DEFAULTS = VideoOptions()


class CodeFormerRestoreVideo:
    """Restore the faces of a clip: tracked, landmarks smoothed, codes averaged along each track."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("frames", "faces_json", "track_count")
    OUTPUT_TOOLTIPS = (
        "the frames with their faces restored, as many as came in",
        "a JSON list of the faces of every frame: frame index, track id, box, score, landmarks and w",
        "how many people (face tracks) were restored",
    )
    FUNCTION = "restore"
    DESCRIPTION = (
        "For video frames (e.g. from Load Video -> Get Video Components): the same face looks the same from frame "
        "to frame. Track indices count people in the order they first appear."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        window = {"min": 1, "max": 31, "step": 1}
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "the clip's frames in order, e.g. from Get Video Components"}),
                "codeformer_model": MODEL_SOCKET,
                **DETECTION_WIDGETS,
                "landmark_window": ("INT", {"default": VIDEO_DEFAULTS.landmark_window, **window,
                                            "tooltip": VIDEO_HELP["landmark_window"]}),
                "code_window": ("INT", {"default": VIDEO_DEFAULTS.code_window, **window,
                                        "tooltip": VIDEO_HELP["code_window"]}),
                "max_gap": ("INT", {"default": VIDEO_DEFAULTS.max_gap, "min": 0, "max": 30,
                                    "tooltip": VIDEO_HELP["max_gap"]}),
                "tracks": ("STRING", {"default": "", "tooltip": VIDEO_HELP["tracks"] + ", e.g. 0,2; blank for all"}),
            },
            # Optional, and code_margin then feature_window the last widgets: a workflow saved before them still
            # validates, and its widget values still line up (they take their defaults).
            "optional": {
                **FLOW_WIDGETS,
                "code_margin": ("FLOAT", {"default": VIDEO_DEFAULTS.code_margin, "min": 0.0, "max": 4.0, "step": 0.01,
                                          "tooltip": VIDEO_HELP["code_margin"]}),
                "feature_window": ("INT", {"default": VIDEO_DEFAULTS.feature_window, **window,
                                           "tooltip": VIDEO_HELP["feature_window"]}),
                "fidelity": FIDELITY_SOCKET,
            },
        }  # fmt: skip

    def restore(
        self, frames: torch.Tensor, codeformer_model: host.CodeFormerModel, w: float, detector: str,
        detection_size: int, confidence: float, landmark_window: int, code_window: int, max_gap: int, tracks: str,
        flow: str = DEFAULTS.flow, code_margin: float = VIDEO_DEFAULTS.code_margin,
        feature_window: int = VIDEO_DEFAULTS.feature_window, fidelity: FidelityControl | None = None,
    ) -> tuple:  # fmt: skip
        control = fidelity or FidelityControl(fidelity=w)
        options = detection_options(
            control, detector, detection_size, confidence, host.helper_weights_folder(), flow=flow
        )
        video = VideoOptions(
            landmark_window=landmark_window, code_window=code_window, code_margin=code_margin, max_gap=max_gap,
            feature_window=feature_window, tracks=parse_indices(tracks) or None,
        )  # fmt: skip
        network = codeformer_model.network_on_device()
        progress = host.progress_callback()
        images, faces = [], []
        for index, result in enumerate(restore_video(frames, network, options, video)):
            images.append(result.images[0])
            faces += [{**face.to_dict(), "image_index": index} for face in result.faces]
            progress(index + 1, frames.shape[0])
        track_count = len({face["track_id"] for face in faces})
        return (stack_images(images), json.dumps(faces), track_count)


NODE_CLASS_MAPPINGS = {"CodeFormerRestoreVideo": CodeFormerRestoreVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"CodeFormerRestoreVideo": "CodeFormer Restore Video"}
