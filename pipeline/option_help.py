"""What each option does for the person setting it, said once and shown by every front end: the nodes'
tooltips and the console scripts' ``--help`` read these texts (``RestoreOptions`` and ``VideoOptions``
document the Python types).

This module imports nothing, so that ``--help`` and ComfyUI's start stay cheap. The texts name no
default and no bound: those live with the options (a widget shows its own, ``--help`` appends them),
and each front end adds its own way of saying "none" (a node's 0 or blank, a flag left out).
"""

from __future__ import annotations

# Keyed by ``RestoreOptions`` field, plus the fidelity's ramp and sweep and the face indices (a face_selection).
RESTORE_HELP = {
    "flow": "whose face flow to reproduce: codeformer as CodeFormer's own inference_codeformer.py and demo "
    "(and facerestore_cf), facexlib as GFPGAN and AUTOMATIC1111 (facexlib's helper); it decides how faces are "
    "found and aligned, how small and grey images are handled and how faces are pasted",
    "fidelity": "w, in [0, 1]: 0 favours quality (faces rebuilt from the codebook: sharp, but they may drift "
    "from the person), 1 fidelity to the input (identity kept, and more of the damage); CodeFormer's alone: "
    "GFPGAN and RestoreFormer have no such input and ignore it",
    "ramp": "fidelity by face size instead of one w: the small w up to the small size, rising linearly to the "
    "large w at the large size (small faces hold little detail worth keeping, so they usually want a lower w)",
    "sweep": "several w values, one output per image for each, from a single detection: to compare them side by side",
    "visibility": "blend of the restored face over the original, 0-1: 1 pastes the restored face, 0 keeps the original",
    "detector": "the RetinaFace network that finds faces: resnet50 finds more (small, turned, blurred faces), "
    "mobile0.25 is faster",
    "detection_size": "short side of the copy the detector sees, in pixels: larger finds smaller faces, more slowly",
    "confidence": "minimum detector score, up to 1: lower finds more faces, and more things that are no face",
    "face_selection": "which faces to restore: all, the largest, or the one nearest the centre",
    "face_indices": "restore only these faces, counted from 0 left to right (then top to bottom)",
    "min_face_size": "skip faces smaller than this (larger box side, input pixels)",
    "max_face_size": "skip faces larger than this (larger box side, input pixels)",
    "has_aligned": "the inputs are aligned 512x512 faces (e.g. crops of this pack): no detection, no paste",
    "upscale": "output size factor: the background is resized, or enlarged by the upsampler where one is given",
    "upscaler": "a super-resolution model that enlarges the background for upscale above 1 (the official "
    "--bg_upsampler)",
    "face_upsampler": "enlarge the restored faces with the upsampler too (the official --face_upsample)",
    "parse_mask": "paste through a ParseNet face mask, so that hair, hands and glasses over the face keep the "
    "original's pixels",
    "keep_size": "small images (short side under 512), which the codeformer flow enlarges, come back at their own "
    "size times upscale instead of the official size",
    "draw_box": "draw a green border around each restored face",
    "chunk_size": "faces per network forward: more is faster on a GPU and needs more memory",
    "selection_masks": "restore only the faces whose box centre lies where the mask is at least 0.5",
    "regions": "look for faces only inside these boxes (e.g. from another detector): a face is restored when its "
    "box centre lies in one",
    "inpaint_masks": "the pixels an inpainting checkpoint fills (mask at least 0.5); without a mask, the pure-white "
    "pixels",
}

# Keyed by ``FidelityRamp`` field.
RAMP_HELP = {
    "small_w": "w of faces up to the small size",
    "large_w": "w of faces from the large size on",
    "small_size": "size (larger box side, pixels) up to which faces get the small w",
    "large_size": "size from which faces get the large w; between the two sizes w rises linearly",
}

# Keyed by ``VideoOptions`` field.
VIDEO_HELP = {
    "landmark_window": "frames whose landmarks are averaged per face track: more steadies a shaking face and "
    "lags more behind fast motion; 1 for none",
    "code_window": "frames whose logits are averaged per face track before the codes are chosen: more keeps a "
    "face's details from flickering; 1 chooses codes frame by frame, as for single images",
    "code_margin": "with a code window above 1, the lead another code needs to replace the one a token had in "
    "the previous frame, as a log probability ratio (0.1: about 1.1 times as likely), so that near ties stop "
    "flipping from frame to frame; 0 takes the plain argmax",
    "feature_window": "frames whose encoder features (what w blends back in) are averaged per face track: steadier "
    "against sensor noise and compression, softer on fast changes such as blinks or speech; 1 for none",
    "max_gap": "frames a face may go undetected and still be filled in along its track",
    "tracks": "restore only these people: track ids, counted in the order they first appear",
}
