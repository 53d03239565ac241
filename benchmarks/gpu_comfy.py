"""The ComfyUI checks of ``scripts/gpu_check.py``: the basic and video example workflows in a real headless
ComfyUI (``../shared/tools/comfy_e2e.py``), and the VRAM the server holds before and after ``/free``.

Both test tools start ComfyUI with ``--cpu``; on a GPU the server is started through a small wrapper
around ComfyUI's Python that drops that flag, so the nodes run on the host's GPU as a user's would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.gpu_checks import DETECTOR, CheckFailed, CheckSkipped, Setup, read_rgb
from benchmarks.scenes import ROOT, SHARED

COMFY_E2E = SHARED / "tools" / "comfy_e2e.py"
WORKFLOWS = {"basic": "codeformer_basic_api.json", "video": "codeformer_video_api.json"}
PACK_NODES = "CodeFormerModelLoader,CodeFormerRestoreFaces,CodeFormerRestoreVideo"
CLIP_FRAMES = 8
RUN_TIMEOUT_S = 240
# Starts ComfyUI's Python with the test tools' arguments, less --cpu.
GPU_WRAPPER = """#!{python}
import os, sys
arguments = [argument for argument in sys.argv[1:] if argument != "--cpu"]
os.execv(sys.executable, [sys.executable, *arguments])
"""


class ComfyInstall:
    """A ComfyUI checkout and the Python of its venv, checked before anything starts."""

    def __init__(self, comfy_dir: str | None, python: str | None) -> None:
        if not comfy_dir:
            raise CheckSkipped("no ComfyUI checkout given (--comfy-dir or CODEFORMER_COMFY_DIR)")
        self.dir = Path(comfy_dir).expanduser().resolve()
        self.python = Path(python).expanduser() if python else self.dir / ".venv" / "bin" / "python"
        if not (self.dir / "main.py").is_file():
            raise CheckSkipped(f"{self.dir} is no ComfyUI checkout (no main.py)")
        if not self.python.is_file():
            raise CheckSkipped(f"{self.python} is absent: give ComfyUI's Python with --comfy-python")
        if not COMFY_E2E.is_file():
            raise CheckSkipped(f"{COMFY_E2E} is absent")


def prepare(setup: Setup, install: ComfyInstall) -> dict[str, object]:
    """Models folder, inputs, workflows (detector switched to the real one here) and the server's Python."""
    if setup.checkpoint is None:
        raise CheckSkipped("smoke run: no CodeFormer checkpoint (the tiny network is none)")
    folder = setup.folder / "comfy"
    models = folder / "models"
    for sub in ("facerestore_models", "facedetection"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    link = models / "facerestore_models" / "codeformer.pth"
    if not link.exists():
        link.symlink_to(setup.checkpoint)
    for weights in setup.weights_dir.iterdir():
        target = models / "facedetection" / weights.name
        if not target.exists():
            target.symlink_to(weights)
    image = folder / "faces.png"
    from PIL import Image

    Image.fromarray(read_rgb("group_four.png")).save(image)
    clip = folder / "clip.mp4"
    write_clip(clip, read_rgb("group_four.png")[40:296, 380:800])
    workflows = {}
    for name, file in WORKFLOWS.items():
        workflow = json.loads((ROOT / "example_workflows" / file).read_text())
        for node in workflow.values():
            inputs = node["inputs"]
            if "detector" in inputs:
                inputs["detector"] = DETECTOR
            if node["class_type"] == "LoadVideo":
                inputs["file"] = clip.name
        workflows[name] = folder / file
        workflows[name].write_text(json.dumps(workflow))
    python = install.python
    if setup.device.type == "cuda":
        python = folder / "python-on-gpu"
        python.write_text(GPU_WRAPPER.format(python=install.python.absolute()))
        python.chmod(0o755)
    return {"models": models, "inputs": [image, clip], "workflows": workflows, "python": python}


def write_clip(path: Path, frame: np.ndarray) -> None:
    """A short H.264 clip of ``frame`` drifting right a pixel a frame, with a second of silence."""
    import av

    height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2 - CLIP_FRAMES
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        for shift in range(CLIP_FRAMES):
            picture = np.ascontiguousarray(frame[:height, shift : shift + width])
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        silence.sample_rate = 16000
        for packet in [*sound.encode(silence), *sound.encode()]:
            out.mux(packet)


def workflows_in_comfy(setup: Setup, install: ComfyInstall) -> dict[str, object]:
    """The basic and the video example through comfy_e2e.py, in one server, with /free between them."""
    prepared = prepare(setup, install)
    command = [sys.executable, str(COMFY_E2E), "--comfy-dir", str(install.dir), "--python", str(prepared["python"])]
    command += ["--pack", str(ROOT), "--models-dir", str(prepared["models"]), "--expect-nodes", PACK_NODES]
    # ComfyUI's own optional modules may fail to import (torchaudio missing): only the pack's frames count.
    pack_frames = f'File "[^"]*(custom_nodes|{re.escape(str(ROOT))})'
    command += ["--free-between", "--reject-log", pack_frames, "--run-timeout", str(RUN_TIMEOUT_S)]
    for path in prepared["inputs"]:
        command += ["--input-image", str(path)]
    for path in prepared["workflows"].values():
        command += ["--workflow", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=2 * RUN_TIMEOUT_S + 240)
    lines = done.stdout.strip().splitlines()
    values: dict[str, object] = {
        line.split(":")[0]: line.split(":", 1)[1].strip() for line in lines if line.startswith("workflow ")
    }
    verdict = [line for line in lines if line.startswith("comfy_e2e: ")]
    values["comfy_e2e"] = verdict[-1] if verdict else done.stderr.strip()[-300:]
    if done.returncode != 0:
        raise CheckFailed("comfy_e2e failed", values)
    return values


def vram_around_free(setup: Setup, install: ComfyInstall) -> dict[str, object]:
    """The basic example once, then /free: the GPU memory ComfyUI reports (``/system_stats``) around it."""
    if setup.device.type != "cuda":
        raise CheckSkipped("no CUDA")
    sys.path.insert(0, str(ROOT / "scripts"))
    from browser_check import ComfyServer, CheckFailed as ServerFailed, http  # noqa: I001
    from soak_comfy import run_prompt

    prepared = prepare(setup, install)
    arguments = argparse.Namespace(
        comfy_dir=str(install.dir), python=str(prepared["python"]), pack=str(ROOT), link_name=None,
        input_image=[str(prepared["inputs"][0])], models_dir=str(prepared["models"]), server_arg=[], start_timeout=180,
    )  # fmt: skip
    server = ComfyServer(arguments, prefix="gpu_check_comfy_")
    values: dict[str, object] = {}
    passed = False
    try:
        server.start()
        values["before run"] = vram(server.url, http)
        workflow = json.loads(prepared["workflows"]["basic"].read_text())
        for node in workflow.values():
            if node["class_type"] == "LoadImage":
                node["inputs"]["image"] = server.input_names[0]
        run_prompt(server, workflow, RUN_TIMEOUT_S)
        values["after run"] = vram(server.url, http)
        status = http(server.url, "/free", {"unload_models": True, "free_memory": True})[0]
        time.sleep(2)  # the idle prompt worker applies /free between prompts
        values["after /free"] = vram(server.url, http)
        passed = True
    except ServerFailed as failed:
        raise CheckFailed(str(failed), values) from failed
    finally:
        server.close(keep=not passed)  # a failed server's log stays for reading
    if status != 200:
        raise CheckFailed(f"POST /free answered HTTP {status}", values)
    if values["after /free"]["torch reserved MiB"] >= values["after run"]["torch reserved MiB"]:
        raise CheckFailed("/free gave no GPU memory back", values)
    return values


def vram(url: str, http: object) -> dict[str, int]:
    """The first device of ComfyUI's ``/system_stats``: used on the card, and reserved by the server's torch."""
    device = json.loads(http(url, "/system_stats")[1])["devices"][0]
    return {
        "card used MiB": round((device["vram_total"] - device["vram_free"]) / 2**20),
        "torch reserved MiB": round(device["torch_vram_total"] / 2**20),
    }


def comfy_checks(setup: Setup, comfy_dir: str | None, python: str | None) -> list[tuple[str, str, object]]:
    """(section, name, check) of item 5; both skip with the reason when ComfyUI is not at hand."""

    def install() -> ComfyInstall:
        return ComfyInstall(
            comfy_dir or os.environ.get("CODEFORMER_COMFY_DIR"), python or os.environ.get("CODEFORMER_COMFY_PYTHON")
        )

    return [
        ("comfyui", "basic + video workflows", lambda: workflows_in_comfy(setup, install())),
        ("comfyui", "VRAM around /free", lambda: vram_around_free(setup, install())),
    ]
