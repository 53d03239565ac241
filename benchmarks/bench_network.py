"""Time, peak memory and numerical drift of the CodeFormer network per dtype and layout.

One 512x512 face goes through the network (``w=0.5, adain=True``, under
``torch.inference_mode()``) in several configurations: ours in float32, float32
channels-last and bfloat16 (plus float16 and batches of 4 and 16 on a GPU), beside
spandrel_extra_arches' CodeFormer in float32 as a baseline. Each configuration runs in its
own process (``--worker NAME``), so the peak memory it reports is its own. The parent builds
the weights and the input once, hands them over in a temporary directory, and compares
every output with our float32 output.

Weights are the numerical reference's recipe when ``../shared/reference`` sits beside the
project, seeded random weights otherwise. CPU memory is read from Linux's ``/proc``.

    .venv/bin/python benchmarks/bench_network.py [--device cpu|cuda] [--repeats 3]
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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from codeformer_nodes import CodeFormer, load_codeformer

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
WEIGHTS_FILE = "weights.safetensors"
INPUT_FILE = "input.safetensors"
FIDELITY = 0.5
SEED = 7
FACE_SHAPE = (1, 3, 512, 512)
GPU_BATCH_SIZES = (4, 16)
MIB = 1 << 20
SPANDREL_MODULE = "spandrel_extra_arches.architectures.CodeFormer"


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration; ``name`` is what ``--worker`` takes."""

    name: str
    network: str  # "ours" or "spandrel"
    dtype: torch.dtype
    channels_last: bool = False
    batch: int = 1


REFERENCE_CONFIG = Config("ours-fp32", "ours", torch.float32)


def configurations(device: torch.device, baseline: bool) -> list[Config]:
    """The configurations to run on ``device``; the first is the one all others are compared with."""
    configs = [
        REFERENCE_CONFIG,
        Config("ours-fp32-cl", "ours", torch.float32, channels_last=True),
        Config("ours-bf16", "ours", torch.bfloat16),
    ]
    if device.type == "cuda":
        configs.append(Config("ours-fp16", "ours", torch.float16))
        configs += [
            Config(f"ours-{short}-b{batch}", "ours", dtype, batch=batch)
            for short, dtype in (("fp32", torch.float32), ("fp16", torch.float16))
            for batch in GPU_BATCH_SIZES
        ]
    if baseline:
        configs.append(Config("spandrel-fp32", "spandrel", torch.float32))
    return configs


# --- worker: one configuration in its own process ---------------------------------------


def load_network(config: Config, weights: Path, device: torch.device) -> nn.Module:
    """Our network through ``load_codeformer``, or spandrel's, in the config's dtype and layout."""
    if config.network == "ours":
        model = load_codeformer(weights, device, config.dtype)
    else:
        architecture = importlib.import_module(SPANDREL_MODULE).CodeFormerArch()
        model = architecture.load(load_file(weights)).model.eval().to(device, config.dtype)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def forward(model: nn.Module, config: Config, x: Tensor) -> tuple[Tensor, Tensor]:
    """(out, logits) of one call; spandrel's CodeFormer always applies AdaIN."""
    if config.network == "ours":
        out, logits, _ = model(x, w=FIDELITY, adain=True)
        return out, logits
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
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if config.network == "spandrel":
        importlib.import_module(SPANDREL_MODULE)  # its import (~170 MB RSS) is not the network's memory
    baseline = memory_in_use(device)
    model = load_network(config, workdir / WEIGHTS_FILE, device)
    face = load_file(workdir / INPUT_FILE)["input"]
    x = face.to(device, config.dtype).expand(config.batch, -1, -1, -1).contiguous()
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        baseline = memory_in_use(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    with torch.inference_mode():
        forward(model, config, x)  # warm-up
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            out, logits = forward(model, config, x)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    peak = peak_memory(device)
    outputs = {"out": out.float().cpu().contiguous(), "codes": logits.argmax(dim=-1).cpu()}
    save_file(outputs, workdir / f"{config.name}.safetensors")
    return {
        "seconds_per_face": statistics.median(seconds) / config.batch,
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


def benchmark(device: torch.device, repeats: int, baseline: bool) -> None:
    """Run every configuration in its own process and print the header and the table."""
    configs = configurations(device, baseline)
    with tempfile.TemporaryDirectory(prefix="bench_codeformer_") as tmp:
        workdir = Path(tmp)
        weights_source = write_weights(workdir / WEIGHTS_FILE)
        input_source = write_input(workdir / INPUT_FILE)
        measured = {config.name: run_in_subprocess(config, device, repeats, workdir) for config in configs}
        outputs = {config.name: load_file(workdir / f"{config.name}.safetensors") for config in configs}

    if device.type == "cuda":
        memory = "peak allocated tensors; 'above weights' = peak minus what was allocated after loading"
        above = "above weights"
    else:
        memory = "peak RSS of the process; 'above imports' = peak minus the RSS before loading the weights"
        above = "above imports"
    print(f"CodeFormer network, one 512x512 face per sample, w={FIDELITY}, adain=True, torch.inference_mode()")
    print(f"torch {torch.__version__}; {device.type}: {device_name(device)}; {torch.get_num_threads()} CPU threads")
    if device.type == "cuda":
        print("TF32 off for matmuls and convolutions")
    print(f"time: median of {repeats} runs after 1 warm-up, per face; ratio to {REFERENCE_CONFIG.name}")
    print(f"weights: {weights_source}")
    print(f"input: {input_source}")
    print(f"memory (MiB): {memory}")
    print(f"max|diff| and flipped codes (argmax of the logits): against {REFERENCE_CONFIG.name}")
    print()

    reference_time = measured[REFERENCE_CONFIG.name]["seconds_per_face"]
    reference = outputs[REFERENCE_CONFIG.name]
    header = ["config", "batch", "dtype", "ms/face", "ratio", "max|diff|", "codes flipped", "peak", above]
    rows = [header]
    for config in configs:
        result, output = measured[config.name], outputs[config.name]
        flipped = int((output["codes"] != reference["codes"]).sum())
        rows.append(
            [
                config.name,
                str(config.batch),
                str(config.dtype).removeprefix("torch.") + (" channels_last" if config.channels_last else ""),
                f"{result['seconds_per_face'] * 1000:.1f}",
                f"{result['seconds_per_face'] / reference_time:.2f}x",
                f"{(output['out'] - reference['out']).abs().max().item():.2e}",
                f"{flipped}/{output['codes'].numel()}",
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
    parser.add_argument("--skip-baseline", action="store_true", help="do not run spandrel's CodeFormer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = torch.device(args.device)
    if args.worker is None:
        benchmark(device, args.repeats, baseline=not args.skip_baseline)
        return
    config = {config.name: config for config in configurations(device, baseline=True)}[args.worker]
    print(json.dumps(run_worker(config, device, args.repeats, args.workdir)))


if __name__ == "__main__":
    main()
