"""The network and pipeline checks of ``scripts/gpu_check.py``: precision modes, the whole pipeline against
CodeFormer's own flow, detection and paste-back on the device against the CPU, and out-of-memory halving.

Each check returns its numbers as a dict, or raises :class:`CheckFailed` (with the numbers) or
:class:`CheckSkipped`. ``--smoke`` runs the same code on a CPU with tiny inputs: a small random network
of CodeFormer's structure instead of the recipe weights, one face, one timing, and a stand-in network
for the whole-pipeline comparison.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.scenes import (
    ROOT,
    SHARED,
    crowd_rgb,
    official_codeformer,
    random_weights,
    read_rgb,
    recipe_checkpoint,
    synthetic_4k,
)

DETECTOR = "retinaface_mobile0.25"
DETECTOR_WEIGHTS = SHARED / "testdata" / "weights" / "detection_mobilenet0.25_Final.pth"
PHOTOS = ("group_small.jpg", "group_four.png")
# The smoke runs' image: one face of group_small.jpg (x 175-212, y 79-127), as a CPU pastes it in seconds.
SMOKE_FACE = (slice(40, 170), slice(130, 260))
FIDELITY = 0.5
# The bar a whole-network half mode of another family must keep against fp32 (issue 25).
MIN_HALF_PSNR = 40.0
MODES = ("fp32", "mixed-fp16", "mixed-bf16", "fp16", "bf16")
# Restored faces of a code-exact mode against float32, and ours against the official flow (the tests' bars).
MIN_FACE_PSNR = 40.0
MIN_PIPELINE_PSNR = 40.0
# Paste-back and detection on the device may differ from the CPU's by one level where faces are pasted.
MAX_LEVEL_DIFFERENCE = 1
OFFICIAL_TIMEOUT_S = 300
# The smoke network: CodeFormer's structure at its smallest widths (GroupNorm needs 32 channels).
TINY_CONFIG = {
    "codebook_size": 64,
    "dim_embd": 64,
    "n_head": 2,
    "n_layers": 1,
    "dim_mlp": 128,
    "emb_dim": 32,
    "base_channels": 32,
    "channel_multipliers": (1, 1, 1, 1, 1, 1),
}


class CheckFailed(Exception):
    """A check ran and its result is wrong; ``values`` are the numbers it measured."""

    def __init__(self, reason: str, values: dict[str, object] | None = None) -> None:
        super().__init__(reason)
        self.values = values or {}


class CheckSkipped(Exception):
    """A check that cannot run here; the message says why."""


class MirrorNetwork(torch.nn.Module):
    """A stand-in restoration (the face mirrored left to right, as ``tests/official_flow_runner.py``'s):
    the flow around the network without the network's cost."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # says the device

    def forward(self, x: torch.Tensor, w: object = 0, adain: bool = False) -> tuple[torch.Tensor, None, None]:
        return x.flip(-1), None, None


class TimedNetwork(torch.nn.Module):
    """Adds up the seconds spent in the wrapped network's forwards (waiting for the GPU to finish)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.seconds = 0.0

    def forward(self, *args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:
        start = time.perf_counter()
        result = self.network(*args, **kwargs)
        synchronize(result[0].device)
        self.seconds += time.perf_counter() - start
        return result


class ChunkLog:
    """An ``on_chunk`` callback that keeps how many faces each network chunk held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        self.sizes.append(done - self._done)
        self._done = done


@dataclass
class Setup:
    """What every check shares: the device, the weights and the faces, made once."""

    device: torch.device
    smoke: bool
    folder: Path
    checkpoint: Path | None = None  # the recipe weights; None in smoke runs
    weights_dir: Path = field(init=False)
    _crops: np.ndarray | None = None
    _official: Path | None = None

    def __post_init__(self) -> None:
        if not DETECTOR_WEIGHTS.exists():
            raise FileNotFoundError(f"{DETECTOR_WEIGHTS} is absent: put ../shared (or ./shared) beside the project")
        self.weights_dir = self.folder / "facedetection"
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(DETECTOR_WEIGHTS, self.weights_dir / DETECTOR_WEIGHTS.name)
        from facexlib.parsing.parsenet import ParseNet

        torch.manual_seed(0)  # no trained parser here: any ParseNet of the right shape exercises the mask path
        parser = ParseNet(in_size=512, out_size=512, parsing_ch=19)
        torch.save(parser.state_dict(), self.weights_dir / "parsing_parsenet.pth")
        if not self.smoke:
            self.checkpoint = recipe_checkpoint(self.folder)

    @property
    def parse(self) -> bool:
        """ParseNet in the paste masks: on as in the official flow, off in smoke runs (seconds a face on a CPU)."""
        return not self.smoke

    def photos(self) -> list[np.ndarray]:
        """The test photos (RGB uint8); in smoke runs one face of one."""
        if self.smoke:
            return [np.ascontiguousarray(read_rgb(PHOTOS[0])[SMOKE_FACE])]
        return [read_rgb(name) for name in PHOTOS]

    def photo_crops(self) -> np.ndarray:
        """Every face of :meth:`photos` as aligned 512x512 uint8 crops."""
        if self._crops is None:
            from codeformer_nodes import RestoreOptions, restore_faces

            options = RestoreOptions(detector=DETECTOR, weights_dir=self.weights_dir, return_crops=True)
            result = restore_faces(self.photos(), MirrorNetwork(), options, parse_mask=False)  # the crops alone
            self._crops = result.crops.mul(255).round().to(torch.uint8).numpy()
        return self._crops

    def official_folder(self) -> Path:
        """The patched copy of codeformer-pip (``scenes.official_codeformer``), made once."""
        if self._official is None:
            folder = self.folder / "official"
            folder.mkdir(exist_ok=True)
            if official_codeformer(folder, self.weights_dir) is None:
                raise CheckSkipped("codeformer-pip is not installed (bash scripts/setup.sh installs it)")
            self._official = folder
        return self._official


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def normalised(crops: np.ndarray) -> torch.Tensor:
    """(N, 512, 512, 3) uint8 as the network's (N, 3, 512, 512) input, ``(rgb - 0.5) / 0.5``."""
    return (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


def face_levels(out: torch.Tensor) -> torch.Tensor:
    """Network output as the 8-bit face the official flow makes of it."""
    return ((out.double().clamp(-1, 1) + 1) * 127.5).round()


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """PSNR in dB of two images in 8-bit levels."""
    mse = float(((torch.as_tensor(a).double() - torch.as_tensor(b).double()) ** 2).mean())
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def tiny_network() -> torch.nn.Module:
    """The smoke run's network: CodeFormer's structure, random weights (fan-in scaled, seed 0)."""
    from codeformer_nodes import CodeFormer
    from codeformer_nodes.codeformer_arch import CodeFormerConfig

    network = CodeFormer(CodeFormerConfig(**TINY_CONFIG))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2:
                parameter.copy_(noise / math.sqrt(parameter[0].numel()))
            else:
                parameter.copy_(1 + 0.1 * noise if name.endswith(".weight") else 0.02 * noise)
    return network.eval().requires_grad_(False)


class PrecisionSweep:
    """Each precision mode against float32: codes, restored faces, speed, memory. ``fp32`` runs first and
    is the baseline of the others."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.baseline: tuple[torch.Tensor, torch.Tensor] | None = None  # fp32 faces (levels) and codes

    def network(self, mode: str) -> torch.nn.Module:
        from codeformer_nodes.models import choose_precision, clear_model_cache, load_codeformer

        try:
            precision = choose_precision(mode, self.setup.device)
        except ValueError as refused:  # a mode this device does not run natively
            raise CheckSkipped(str(refused)) from refused
        clear_model_cache()  # one network on the device at a time: its peak memory alone
        if self.setup.checkpoint is not None:
            return load_codeformer(self.setup.checkpoint, self.setup.device, precision=precision)
        network = tiny_network().to(self.setup.device, precision.dtype)
        network.set_generator_dtype(precision.generator_dtype)
        return network

    def faces(self) -> tuple[torch.Tensor, int]:
        """The inputs, and how many of them (first) are the reference vectors' faces."""
        photos = normalised(self.setup.photo_crops())
        if self.setup.smoke:  # the reference codes are the recipe network's, not the tiny one's
            return photos, 0
        reference = reference_vectors()["batch2_input"]
        return torch.cat([reference, photos]), reference.shape[0]

    def measure(self, mode: str) -> dict[str, object]:
        device = self.setup.device
        if mode != "fp32" and self.baseline is None:
            raise CheckSkipped("no float32 baseline (the fp32 check did not run)")
        network = self.network(mode)
        dtype = next(network.parameters()).dtype
        faces, reference_count = self.faces()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        levels, codes = [], []
        start = time.perf_counter()
        with torch.inference_mode():
            for chunk in faces.split(8):
                out, logits, _ = network(chunk.to(device, dtype), w=FIDELITY, adain=True)
                levels.append(face_levels(out.float().cpu()))
                codes.append(logits.argmax(dim=2).cpu())
        values: dict[str, object] = {}
        if self.setup.smoke:  # one face: the pass above is the batch-1 timing (a CPU forward costs seconds)
            values["ms/face b1"] = round((time.perf_counter() - start) * 1000, 1)
        else:
            for batch in (1, 8, 32):
                values[f"ms/face b{batch}"] = round(ms_per_face(network, faces[:1], batch, repeats=3), 1)
        levels, codes = torch.cat(levels), torch.cat(codes)
        values["peak MiB"] = round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None
        del network
        if mode == "fp32":
            self.baseline = (levels, codes)
            if reference_count:
                expected = reference_vectors()["batch2_code_indices"]
                flipped = int((codes[:reference_count] != expected).sum())
                values["codes flipped vs reference"] = f"{flipped}/{expected.numel()}"
                if flipped:
                    raise CheckFailed("float32 codes differ from the reference vectors' (TF32 on?)", values)
            return values
        base_levels, base_codes = self.baseline
        flips = codes != base_codes
        tokens = base_codes.shape[1]
        if reference_count:
            values["codes flipped (reference)"] = f"{int(flips[:reference_count].sum())}/{reference_count * tokens}"
        values["codes flipped (photos)"] = (
            f"{int(flips[reference_count:].sum())}/{(len(codes) - reference_count) * tokens} "
            f"in {int(flips[reference_count:].any(dim=1).sum())} face(s)"
        )
        values["max level diff"] = int((levels - base_levels).abs().max())
        values["face PSNR dB"] = round(psnr(levels, base_levels), 1)
        from codeformer_nodes.models import choose_precision

        if choose_precision(mode, device).keeps_codes:
            if bool(flips.any()):
                raise CheckFailed(f"{mode} must keep the float32 codes", values)
            if values["face PSNR dB"] < MIN_FACE_PSNR:
                raise CheckFailed(f"restored faces below {MIN_FACE_PSNR} dB against float32", values)
        return values


def reference_vectors() -> dict[str, torch.Tensor]:
    """The reference's two-face batch (``batch2_input``) and its float64 codes (``batch2_code_indices``)."""
    from safetensors.torch import load_file

    return load_file(str(SHARED / "reference" / "vectors.safetensors"))


def ms_per_face(network: torch.nn.Module, face: torch.Tensor, batch: int, repeats: int) -> float:
    """Milliseconds per face of a forward over ``batch`` copies of ``face``: the mean of ``repeats`` after a
    warm-up (cuDNN picks its algorithms for each new shape)."""
    device, dtype = next(network.parameters()).device, next(network.parameters()).dtype
    x = face.expand(batch, -1, -1, -1).to(device, dtype).contiguous()
    with torch.inference_mode():
        network(x, w=FIDELITY, adain=True)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            network(x, w=FIDELITY, adain=True)
        synchronize(device)
    return (time.perf_counter() - start) / repeats / batch * 1000


def scene(name: str) -> np.ndarray:
    if name == "smoke face":
        return np.ascontiguousarray(read_rgb(PHOTOS[0])[SMOKE_FACE])
    return {"crowd": crowd_rgb, "synthetic_4k": synthetic_4k}[name]()


def pipeline_against_official(setup: Setup, image_name: str) -> dict[str, object]:
    """``restore_faces`` (``auto``) against CodeFormer's own flow on the same device, one image."""
    from codeformer_nodes import RestoreOptions, restore_faces
    from codeformer_nodes.models import load_codeformer

    image = scene(image_name)
    if setup.checkpoint is None:
        network = TimedNetwork(MirrorNetwork().to(setup.device))
    else:
        network = TimedNetwork(load_codeformer(setup.checkpoint, setup.device, precision="auto"))
    options = RestoreOptions(
        detector=DETECTOR, weights_dir=setup.weights_dir, fidelity=FIDELITY, keep_size=False, parse_mask=setup.parse
    )
    repeats = 1 if setup.smoke else 2
    if not setup.smoke:
        restore_faces([image], network, options)  # warm-up: detector and parser loads, first allocations
    best = None
    for _ in range(repeats):
        network.seconds = 0.0
        start = time.perf_counter()
        result = restore_faces([image], network, options)
        run = (time.perf_counter() - start, network.seconds, result)
        best = run if best is None or run[0] < best[0] else best
    total, inside, result = best
    ours = result.images[0].mul(255).round().to(torch.uint8).numpy()
    official = run_official(setup, image_name, image, repeats)
    faces = len(result.faces)
    values = {
        "faces": f"{faces} (official {official['faces']})",
        "faces/s ours": round(faces / total, 2),
        "faces/s official": round(official["faces"] / official["seconds"], 2),
        "speed ratio": round(official["seconds"] / total, 2),
        "outside network ours %": round(100 * (total - inside) / total, 1),
        "outside network official %": round(100 * (1 - official["network_seconds"] / official["seconds"]), 1),
        "PSNR vs official dB": round(psnr(ours, official["image"]), 1),
    }
    if faces != official["faces"]:
        raise CheckFailed("ours and the official flow found different faces", values)
    if values["PSNR vs official dB"] < MIN_PIPELINE_PSNR:
        raise CheckFailed(f"below {MIN_PIPELINE_PSNR} dB against the official output", values)
    return values


def run_official(setup: Setup, image_name: str, image: np.ndarray, repeats: int) -> dict:
    """CodeFormer's own flow (``tests/official_flow_runner.py``) in a process of its own, on the device."""
    folder = setup.official_folder()
    source = setup.folder / f"{image_name}-bgr.npy"
    np.save(source, np.ascontiguousarray(image[..., ::-1]))
    case = {
        "name": f"official-{image_name}",
        "image": str(source),
        "upscale": 1,
        "w": FIDELITY,
        "parse_mask": setup.parse,
    }
    if setup.checkpoint is not None:
        case["weights"] = str(setup.checkpoint)
    job = setup.folder / f"official-{image_name}.json"
    settings = {"out": str(setup.folder), "repeats": repeats, "device": str(setup.device)}
    job.write_text(json.dumps({"cases": [case], "threads": torch.get_num_threads(), **settings}))
    runner = ROOT / "tests" / "official_flow_runner.py"
    done = subprocess.run(
        [sys.executable, str(runner), str(job)],
        env={**os.environ, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=OFFICIAL_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise CheckFailed(f"the official flow failed: {done.stderr.strip().splitlines()[-1:]}")
    result = np.load(setup.folder / f"official-{image_name}.npz")
    return {
        "image": np.ascontiguousarray(result["image"][..., ::-1]),
        "faces": int(result["faces"]),
        "seconds": float(result["seconds"]),
        "network_seconds": float(result["network_seconds"]),
    }


def device_against_cpu(setup: Setup) -> dict[str, object]:
    """Detection and paste-back on the device against the CPU path, both photos in one call (so, on a GPU,
    faces of two images share a chunk), with the stand-in network: the flow alone is compared."""
    from codeformer_nodes import RestoreOptions, restore_faces

    options = RestoreOptions(
        detector=DETECTOR, weights_dir=setup.weights_dir, fidelity=FIDELITY, parse_mask=setup.parse
    )
    images = setup.photos()
    chunks = ChunkLog()
    cpu = restore_faces(images, MirrorNetwork(), options)
    other = restore_faces(images, MirrorNetwork().to(setup.device), options, on_chunk=chunks)
    values: dict[str, object] = {
        "against": f"{setup.device.type} vs cpu",
        "faces": f"{len(other.faces)} (cpu {len(cpu.faces)})",
        f"chunks on {setup.device.type}": chunks.sizes,
    }
    if not cpu.faces or len(cpu.faces) != len(other.faces):
        raise CheckFailed("no face found, or the device found other faces than the CPU", values)
    if setup.device.type == "cuda" and len(chunks.sizes) != 1:
        raise CheckFailed("the faces of the two photos did not share one chunk on the GPU", values)
    landmarks = max(
        float(np.abs(np.subtract(a.landmarks, b.landmarks)).max()) for a, b in zip(cpu.faces, other.faces, strict=True)
    )
    values["landmark max px diff"] = round(landmarks, 4)
    level_diff, background_differs = 0, 0
    for image_cpu, image_other, mask_cpu, mask_other in zip(
        cpu.images, other.images, cpu.masks, other.masks, strict=True
    ):
        a, b = image_cpu.mul(255), image_other.cpu().mul(255)
        level_diff = max(level_diff, float((a - b).abs().max()))
        background = (mask_cpu == 0) & (mask_other.cpu() == 0)
        background_differs += int((image_cpu[background] != image_other.cpu()[background]).any(dim=-1).sum())
    values["max level diff"] = round(level_diff, 3)
    values["background pixels differing"] = background_differs
    if level_diff > MAX_LEVEL_DIFFERENCE or background_differs:
        raise CheckFailed(f"more than {MAX_LEVEL_DIFFERENCE} level apart, or the background changed", values)
    return values


def out_of_memory_halving(setup: Setup) -> dict[str, object]:
    """The photos' faces in one chunk of 8 with the process capped to about 3 faces' memory: the chunk must
    halve (to 2) and give what unhindered chunks of one give."""
    if setup.device.type != "cuda":
        raise CheckSkipped("no CUDA")
    from codeformer_nodes import RestoreOptions
    from codeformer_nodes.models import clear_model_cache, load_codeformer
    from codeformer_nodes.pipeline.inference import run_network

    device = setup.device
    clear_model_cache()
    network = load_codeformer(setup.checkpoint, device, precision="auto")
    crops = setup.photo_crops()
    fidelities = [FIDELITY] * len(crops)
    torch.cuda.empty_cache()
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    expected = run_network(network, crops, fidelities, RestoreOptions(chunk_size=1)).cpu()
    per_face = torch.cuda.max_memory_allocated(device) - resident
    total = torch.cuda.get_device_properties(device).total_memory
    cap = resident + 3 * per_face
    chunks = ChunkLog()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total, device)
    try:
        halved = run_network(network, crops, fidelities, RestoreOptions(chunk_size=8), chunks)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    sizes = chunks.sizes
    values = {
        "cap MiB": round(cap / 2**20),
        "per face MiB": round(per_face / 2**20),
        "chunks ran": sizes,
        "max level diff vs chunks of 1": round(float((halved.cpu() - expected).abs().max() * 255), 3),
    }
    if max(sizes) >= 8:
        raise CheckFailed("the cap did not force a smaller chunk: memory per face was mismeasured", values)
    if values["max level diff vs chunks of 1"] > MAX_LEVEL_DIFFERENCE:
        raise CheckFailed("halved chunks restore differently", values)
    return values


Check = Callable[[], dict[str, object]]


def other_families_in_half(setup: Setup) -> dict[str, object]:
    """GFPGAN and RestoreFormer (random weights of the official shapes) in each whole-network half mode against
    fp32, in the device's own half arithmetic: the figures ``models.restorers.HALF_MODES_MEASURED`` holds were
    measured on a CPU with a half-rounding stand-in. A mode a family is offered in must keep >= 40 dB."""
    if setup.device.type != "cuda":
        raise CheckSkipped("no CUDA")
    from codeformer_nodes import load_face_restorer
    from codeformer_nodes.models import clear_model_cache

    faces = normalised(setup.photo_crops()).to(setup.device)
    values: dict[str, object] = {"faces": faces.shape[0]}
    below = []
    for family in ("GFPGAN", "RestoreFormer"):
        clear_model_cache()
        restorer = load_face_restorer(random_weights(family, setup.folder), device=setup.device, precision="fp32")
        with torch.inference_mode():
            baseline = [face_levels(restorer(face[None])[0]) for face in faces]
            for mode, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                half = restorer.to(dtype)
                decibels = [psnr(face_levels(half(face[None].to(dtype))[0]), fp32) for face, fp32 in zip(
                    faces, baseline, strict=True)]  # fmt: skip
                values[f"{family} {mode} dB min"] = round(min(decibels), 1)
                if mode in restorer.kind.half_modes and min(decibels) < MIN_HALF_PSNR:
                    below.append(f"{family} {mode}")
                restorer.float()
    clear_model_cache()
    if below:
        raise CheckFailed(f"{', '.join(below)} offered but under {MIN_HALF_PSNR} dB against fp32", values)
    return values


def network_checks(setup: Setup) -> list[tuple[str, str, Check]]:
    """(section, name, check) for items 2-4 of the issue, in the order they run."""
    sweep = PrecisionSweep(setup)
    images = ("smoke face",) if setup.smoke else ("crowd", "synthetic_4k")
    checks: list[tuple[str, str, Check]] = [
        ("precision", mode, lambda mode=mode: sweep.measure(mode)) for mode in MODES
    ]
    checks += [
        ("pipeline vs official", name, lambda name=name: pipeline_against_official(setup, name)) for name in images
    ]
    checks += [
        ("device paths", "detection + paste", lambda: device_against_cpu(setup)),
        ("device paths", "out-of-memory halving", lambda: out_of_memory_halving(setup)),
        ("other families", "GFPGAN, RestoreFormer half vs fp32", lambda: other_families_in_half(setup)),
    ]
    return checks
