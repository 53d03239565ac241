"""Runs CodeFormer's own helper (``codeformer-pip``'s ``facelib``), step by step as its
``inference_codeformer.py`` runs an image, for the oracle tests in ``test_official_flow.py`` and
for ``benchmarks/bench_pipeline.py``.

It runs in a subprocess whose ``sys.path`` starts with a patched copy of the package
(``benchmarks.scenes.official_codeformer``), so that the copy's ``weights/`` folder and its
one-line patch are the ones used. With ``"device": "cuda"`` in the job the helper and the network run
on that GPU, as the official command runs them there; ``"parse_mask": false`` in a case turns ParseNet off
(the command always has it on; quick smoke runs do not). The restoring network is a stand-in (the face mirrored,
the same on our side: the tests compare the flow around the network, which the network does
not change) or, with ``"weights"``, the official CodeFormer network from that file. Usage:
``python official_flow_runner.py JOB.json``; writes ``<out>/<case>.npz`` with the image, the
face count, the landmarks and the best run's seconds (in all, and in the network).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

DETECTOR = "retinaface_mobile0.25"


def mirror_network(x: torch.Tensor) -> torch.Tensor:
    """The stand-in restoration: the normalised face mirrored left to right."""
    return x.flip(-1)


def esrgan(config: dict):
    """basicsr's RRDBNet (Real-ESRGAN's network) of a small configuration: the tests cannot afford
    x2plus's 23 blocks of 64 features on a CPU, and RealESRGANer runs any RRDBNet the same way."""
    from codeformer.basicsr.archs.rrdbnet_arch import RRDBNet

    return RRDBNet(num_in_ch=3, num_out_ch=3, num_grow_ch=32, **config)


def esrgan_upsampler(path: str, config: dict, tile: int):
    """The official command's upsampler (``set_realesrgan``: tile_pad 40, pre_pad 0), from a local file."""
    from codeformer.basicsr.utils.realesrgan_utils import RealESRGANer

    return RealESRGANer(
        scale=config["scale"], model_path=path, model=esrgan(config), tile=tile, tile_pad=40, pre_pad=0, half=False,
        device=torch.device("cpu"),
    )  # fmt: skip


def official_network(weights: str, device: torch.device) -> torch.nn.Module:
    """The official network as the official command builds it, in float32, on ``device``."""
    from codeformer.basicsr.utils.registry import ARCH_REGISTRY

    network = ARCH_REGISTRY.get("CodeFormer")(
        dim_embd=512, codebook_size=1024, n_head=8, n_layers=9, connect_list=["32", "64", "128", "256"]
    )
    network.load_state_dict(torch.load(weights, weights_only=True)["params_ema"])
    return network.eval().to(device)


def run_case(case: dict, out: Path, upsamplers: dict[str, dict], repeats: int, device: torch.device) -> None:
    network = official_network(case["weights"], device) if case.get("weights") else None
    best = None
    for _ in range(repeats + (network is not None)):  # a real network gets a warm-up run
        started = time.perf_counter()
        result = restore_once(case, upsamplers, network, device)
        result["seconds"] = np.array(time.perf_counter() - started)
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    best["peak_mib"] = np.array(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    np.savez(out / f"{case['name']}.npz", **best)


def restore_once(
    case: dict, upsamplers: dict[str, dict], network: torch.nn.Module | None, device: torch.device
) -> dict[str, np.ndarray]:
    from codeformer.basicsr.utils import img2tensor, tensor2img
    from codeformer.facelib.utils.face_restoration_helper import FaceRestoreHelper
    from codeformer.facelib.utils.misc import is_gray
    from torchvision.transforms.functional import normalize

    img = np.load(case["image"])  # BGR uint8, as cv2.imread(path, IMREAD_COLOR) reads it
    upscale = case.get("upscale", 2)
    helper = FaceRestoreHelper(
        upscale, face_size=512, crop_ratio=(1, 1), det_model=DETECTOR, save_ext="png",
        use_parse=case.get("parse_mask", True),
        device=device,
    )  # fmt: skip
    upsampler = None
    if case.get("upsampler"):
        upsampler = esrgan_upsampler(case["upsampler"], upsamplers[case["upsampler"]], case.get("tile", 400))
    if case.get("has_aligned"):
        img = cv2.resize(img, (512, 512), interpolation=cv2.INTER_LINEAR)
        helper.is_gray = is_gray(img, threshold=10)
        helper.cropped_faces = [img]
    else:
        helper.read_image(img)
        center = case.get("only_center_face", False)
        helper.get_face_landmarks_5(only_center_face=center, resize=640, eye_dist_threshold=5)
        helper.align_warp_face()
    in_network = 0.0
    for cropped_face in helper.cropped_faces:
        face = img2tensor(cropped_face / 255.0, bgr2rgb=True, float32=True)
        normalize(face, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
        started = time.perf_counter()
        with torch.no_grad():
            face = face[None].to(device)
            output = mirror_network(face) if network is None else network(face, w=case["w"], adain=True)[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the network's own time, not the copy that waits for it
        in_network += time.perf_counter() - started
        restored = tensor2img(output, rgb2bgr=True, min_max=(-1, 1)).astype("uint8")
        helper.add_restored_face(restored, cropped_face)
    result = {
        "faces": np.array(len(helper.cropped_faces)),
        "landmarks": np.array(helper.all_landmarks_5, dtype=np.float64).reshape(-1, 5, 2),
        "network_seconds": np.array(in_network),
    }
    if case.get("has_aligned"):
        result["image"] = np.asarray(helper.restored_faces[0])
    else:
        background = None
        if upsampler is not None and case.get("background", True):
            background = upsampler.enhance(img, outscale=upscale)[0]
        helper.get_inverse_affine(None)
        face_upsampler = upsampler if case.get("face_upsample") else None
        result["image"] = helper.paste_faces_to_input_image(
            upsample_img=background, draw_box=case.get("draw_box", False), face_upsampler=face_upsampler
        )
    return result


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(job.get("threads", 2))
    upsamplers = job.get("make_upsamplers", {})
    for path, config in upsamplers.items():  # random weights of the given shape
        torch.manual_seed(0)
        torch.save({"params_ema": esrgan(config).state_dict()}, path)
    device = torch.device(job.get("device", "cpu"))
    for case in job["cases"]:
        run_case(case, Path(job["out"]), upsamplers, job.get("repeats", 1), device)


if __name__ == "__main__":
    main()
