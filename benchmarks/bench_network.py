"""Time, peak memory and numerical drift of the CodeFormer network per precision mode.

One 512x512 face goes through the network (``w=0.5, adain=True``, under
``torch.inference_mode()``) in several configurations: the reference (spandrel_extra_arches'
build of the official network, float32), ours in float32 (eager and ``torch.compile``d),
code-exact mixed precision and whole-network bfloat16 where the hardware runs bfloat16
natively, and on a GPU also float16 modes and batches of 4, 16 and 64. Each configuration
runs in its own process (``--worker NAME``), so the peak memory it reports is its own. The
parent builds the weights and the input once, hands them over in a temporary directory,
and compares every output with ours in float32 (codes, PSNR of the uint8 face) and with
the float64 reference vectors (max abs difference). On a CPU two more rows swap how freed
activations are handled (``models/cpu_memory.py``): the reference with them kept, ours with
them given back, so that the share of that change is seen apart from the rest.

Weights are the numerical reference's recipe when ``../shared/reference`` sits beside the
project, seeded random weights otherwise. CPU memory is read from Linux's ``/proc``.

    .venv/bin/python benchmarks/bench_network.py [--device cpu|cuda] [--repeats 3]

The reference needs the ``test`` extra (spandrel_extra_arches).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from codeformer_nodes import CodeFormer, load_codeformer
from codeformer_nodes.models import choose_precision, has_native_bfloat16
from codeformer_nodes.models.cpu_memory import OPT_OUT_VARIABLE, keep_freed_cpu_memory

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
WEIGHTS_FILE = "weights.safetensors"
INPUT_FILE = "input.safetensors"
FIDELITY = 0.5
SEED = 7
FACE_SHAPE = (1, 3, 512, 512)
GPU_BATCH_SIZES = (4, 16, 64)
MIB = 1 << 20
SPANDREL_MODULE = "spandrel_extra_arches.architectures.CodeFormer"


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration; ``name`` is what ``--worker`` takes."""

    name: str
    network: str  # "ours" or "reference" (spandrel_extra_arches' build of the official network)
    precision: str  # a name of codeformer_nodes.models.PRECISIONS
    batch: int = 1
    compiled: bool = False
    # CPU memory between activations: "as shipped" (the reference: glibc gives big blocks back; ours:
    # kept during each call, models/cpu_memory.py), "kept" (the reference inside our scope too) or
    # "given back" (ours with the scope turned off), to show what the scope alone is worth.
    cpu_memory: str = "as shipped"


REFERENCE_CONFIG = Config("reference-fp32", "reference", "fp32")
OURS_FP32 = Config("ours-fp32", "ours", "fp32")


def configurations(device: torch.device) -> tuple[list[Config], list[str]]:
    """The configurations to run on ``device``, and a line for each left out (with why)."""
    configs = [REFERENCE_CONFIG, OURS_FP32, Config("ours-fp32-compiled", "ours", "fp32", compiled=True)]
    left_out = []
    if device.type == "cpu":
        configs[1:1] = [
            Config("reference-fp32-kept", "reference", "fp32", cpu_memory="kept"),
            Config("ours-fp32-given-back", "ours", "fp32", cpu_memory="given back"),
        ]
    if has_native_bfloat16(device):
        configs += [Config("ours-mixed-bf16", "ours", "mixed-bf16"), Config("ours-bf16", "ours", "bf16")]
    else:
        left_out.append(f"mixed-bf16 and bf16: {device} has no native bfloat16 (emulated, minutes per face)")
    if device.type == "cuda":
        configs += [Config("ours-mixed-fp16", "ours", "mixed-fp16"), Config("ours-fp16", "ours", "fp16")]
        fast = "mixed-bf16" if has_native_bfloat16(device) else "mixed-fp16"
        configs += [
            Config(f"ours-{precision}-b{batch}", "ours", precision, batch=batch)
            for precision in ("fp32", fast)
            for batch in GPU_BATCH_SIZES
        ]
        configs += [Config(f"reference-fp32-b{batch}", "reference", "fp32", batch=batch) for batch in GPU_BATCH_SIZES]
    return configs, left_out


# --- worker: one configuration in its own process ---------------------------------------


def load_network(config: Config, weights: Path, device: torch.device) -> nn.Module:
    """Our network through ``load_codeformer``, or the reference, in the config's precision."""
    if config.network == "ours":
        model = load_codeformer(weights, device, config.precision)
        if config.compiled:
            model = torch.compile(model, options={"freezing": True})
        return model
    architecture = importlib.import_module(SPANDREL_MODULE).CodeFormerArch()
    return architecture.load(load_file(weights)).model.eval().to(device)


def forward(model: nn.Module, config: Config, x: Tensor) -> tuple[Tensor, Tensor]:
    """(out, logits) of one call; spandrel's CodeFormer always applies AdaIN."""
    if config.network == "ours":
        out, logits, _ = model(x, w=FIDELITY, adain=True)
        return out, logits
    with keep_freed_cpu_memory(x.device) if config.cpu_memory == "kept" else nullcontext():
        return model(x, weight=FIDELITY)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: resident set size on the CPU, allocated tensors on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_memory(device: torch.device) -> int:
    """Peak bytes: the process's peak RSS on the CPU, peak allocated tensors on CUDA."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_worker(config: Config, device: torch.device, repeats: int, workdir: Path) -> dict[str, float]:
    """Time one configuration, save its output and codes in ``workdir``, return time and memory.

    The memory besides the peak is counted from before loading on the CPU (the RSS right
    after loading undercounts weights that safetensors maps in lazily) and from after
    loading on CUDA.
    """
    torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "ieee"
    if config.cpu_memory == "given back":
        os.environ[OPT_OUT_VARIABLE] = "0"
    if config.network == "reference":
        importlib.import_module(SPANDREL_MODULE)  # its import (~170 MB RSS) is not the network's memory
    baseline = memory_in_use(device)
    model = load_network(config, workdir / WEIGHTS_FILE, device)
    face = load_file(workdir / INPUT_FILE)["input"]
    dtype = choose_precision(config.precision, device).dtype
    x = face.to(device, dtype).expand(config.batch, -1, -1, -1).contiguous()
    if device.type == "cuda":
        baseline = memory_in_use(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    with torch.inference_mode():
        start = time.perf_counter()
        forward(model, config, x)  # warm-up (and compilation)
        first_call = time.perf_counter() - start
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            out, logits = forward(model, config, x)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    peak = peak_memory(device)
    outputs = {"out": out[:1].float().cpu().contiguous(), "codes": logits[:1].argmax(dim=-1).cpu()}
    save_file(outputs, workdir / f"{config.name}.safetensors")
    return {
        "seconds_per_face": statistics.median(seconds) / config.batch,
        "first_call_seconds": first_call,
        "peak_mib": peak / MIB,
        "above_baseline_mib": (peak - baseline) / MIB,
    }


# --- parent: weights, input, one process per configuration, the table -------------------


def recipe_weights() -> dict[str, Tensor]:
    """The reference's recipe (``recipe.py``, numpy float64) as float32 tensors."""
    spec = importlib.util.spec_from_file_location("codeformer_recipe", REFERENCE / "recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    arrays = recipe.recipe_state_dict(str(REFERENCE / "manifest.json"))
    return {key: torch.from_numpy(array).float() for key, array in arrays.items()}


def random_weights(seed: int) -> dict[str, Tensor]:
    """Seeded weights of the recipe's shape rules (``CodeFormer()`` leaves its parameters empty)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in CodeFormer().state_dict().items()}
    weights = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        if len(shape) >= 2:
            weights[key] = noise / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(".weight"):
            weights[key] = 1 + 0.1 * noise
        else:
            weights[key] = 0.02 * noise
    return weights


def write_weights(path: Path) -> str:
    """Save the benchmark's float32 weights to ``path``; say where they came from."""
    if (REFERENCE / "recipe.py").is_file():
        save_file(recipe_weights(), path)
        return "recipe of ../shared/reference/recipe.py"
    save_file(random_weights(SEED), path)
    return f"seeded random (seed {SEED}; ../shared/reference is absent)"


def write_input(path: Path) -> str:
    """Save the (1,3,512,512) input face to ``path``; say where it came from."""
    vectors = REFERENCE / "vectors.safetensors"
    if vectors.is_file():
        save_file({"input": load_file(vectors)["input"]}, path)
        return "'input' of ../shared/reference/vectors.safetensors"
    generator = torch.Generator().manual_seed(SEED)
    save_file({"input": torch.rand(FACE_SHAPE, generator=generator) * 2 - 1}, path)
    return f"uniform(-1, 1), torch seed {SEED}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_in_subprocess(config: Config, device: torch.device, repeats: int, workdir: Path) -> dict[str, float]:
    """Run ``--worker`` for one configuration and return what it measured."""
    command = [sys.executable, __file__, "--worker", config.name, "--device", str(device)]
    command += ["--repeats", str(repeats), "--workdir", str(workdir)]
    print(f"running {config.name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {config.name} exited with {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def table(rows: list[list[str]]) -> str:
    """Rows as aligned columns, the first column left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def face_psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of two network outputs as the uint8 faces the pipeline makes of them."""

    def as_uint8(t: Tensor) -> Tensor:
        return ((t.double().clamp(-1, 1) + 1) * 127.5).round()

    mse = ((as_uint8(a) - as_uint8(b)) ** 2).mean().item()
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def benchmark(device: torch.device, repeats: int) -> None:
    """Run every configuration in its own process and print the header and the table."""
    configs, left_out = configurations(device)
    with tempfile.TemporaryDirectory(prefix="bench_codeformer_") as tmp:
        workdir = Path(tmp)
        weights_source = write_weights(workdir / WEIGHTS_FILE)
        input_source = write_input(workdir / INPUT_FILE)
        measured = {config.name: run_in_subprocess(config, device, repeats, workdir) for config in configs}
        outputs = {config.name: load_file(workdir / f"{config.name}.safetensors") for config in configs}
    vectors = REFERENCE / "vectors.safetensors"
    float64_out = load_file(vectors)[f"out_w{FIDELITY}_adain1"] if vectors.is_file() else None

    if device.type == "cuda":
        memory = "peak allocated tensors; 'above weights' = peak minus what was allocated after loading"
        above = "above weights"
    else:
        memory = "peak RSS of the process; 'above imports' = peak minus the RSS before loading the weights"
        above = "above imports"
    print(f"CodeFormer network, one 512x512 face per sample, w={FIDELITY}, adain=True, torch.inference_mode()")
    print(f"torch {torch.__version__}; {device.type}: {device_name(device)}; {torch.get_num_threads()} CPU threads")
    print(f"native bfloat16: {has_native_bfloat16(device)}; TF32 off for float32 convolutions and matmuls")
    print(f"time: median of {repeats} runs after 1 warm-up, per face; speed-up = {REFERENCE_CONFIG.name} time / time")
    print("first call: the warm-up's seconds (compilation included where compiled)")
    print(f"weights: {weights_source}")
    print(f"input: {input_source}")
    print(f"memory (MiB): {memory}")
    print(f"codes flipped and PSNR of the uint8 face: against {OURS_FP32.name}")
    print("vs float64: max|out - the reference's float64 vector|")
    if device.type == "cpu":
        print(
            "CPU memory: the reference as shipped gives freed activations back to the system (glibc), ours keeps "
            "them during each call (models/cpu_memory.py); '-kept' runs the reference inside that scope too, "
            "'-given-back' runs ours without it"
        )
    for line in left_out:
        print(f"left out: {line}")
    print()

    reference_time = measured[REFERENCE_CONFIG.name]["seconds_per_face"]
    baseline = outputs[OURS_FP32.name]
    header = ["config", "batch", "ms/face", "speed-up", "first call s", "codes flipped", "PSNR dB", "vs float64"]
    rows = [[*header, "peak", above]]
    for config in configs:
        result, output = measured[config.name], outputs[config.name]
        flipped = int((output["codes"] != baseline["codes"]).sum())
        drift = "-" if float64_out is None else f"{(output['out'] - float64_out).abs().max().item():.2e}"
        rows.append(
            [
                config.name,
                str(config.batch),
                f"{result['seconds_per_face'] * 1000:.1f}",
                f"{reference_time / result['seconds_per_face']:.2f}x",
                f"{result['first_call_seconds']:.1f}",
                f"{flipped}/{output['codes'].numel()}",
                f"{face_psnr(output['out'], baseline['out']):.1f}",
                drift,
                f"{result['peak_mib']:.0f}",
                f"{result['above_baseline_mib']:.0f}",
            ]
        )
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda when available"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median is reported)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = torch.device(args.device)
    if args.worker is None:
        benchmark(device, args.repeats)
        return
    config = {config.name: config for config in configurations(device)[0]}[args.worker]
    print(json.dumps(run_worker(config, device, args.repeats, args.workdir)))


if __name__ == "__main__":
    main()
