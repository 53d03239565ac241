"""Time per face of the exported ONNX model in onnxruntime (CPU) against our torch float32 network, in one run.

One 512x512 face at ``w=0.5`` with AdaIN. The network is exported with ``codeformer-export``'s
code (FaceFusion's interface, GroupNorm statistics in float64); onnxruntime runs it on the
CPU with its default graph optimisations and ``--threads`` intra-op threads, torch with the
same number of threads under ``torch.inference_mode()``. The two alternate, one warm-up
each and then ``--repeats`` timed rounds, so a change in the host's load hits both alike;
the median wall time is reported, and the median CPU time of the process (all threads),
which a busy host moves less. The table also gives how far each output lies from our torch output
(max abs difference, flipped codes, PSNR of the uint8 faces) and, where
``../shared/reference`` is beside the project, from the float64 reference.

Weights are the reference's recipe when ``../shared/reference`` is there, seeded random
weights otherwise; they go to a temporary directory.

    .venv/bin/python benchmarks/bench_onnx.py [--threads 2] [--repeats 3]

Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from bench_network import REFERENCE, device_name, face_psnr, table, write_input, write_weights
from safetensors.torch import load_file

from codeformer_nodes import load_codeformer
from codeformer_nodes.models import choose_precision
from codeformer_nodes.models.onnx_export import export_onnx, onnx_session, run_onnx

FIDELITY = 0.5


def timed(run) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds of this process (all its threads, onnxruntime's included) and the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up (median is reported)")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        weights_source = write_weights(workdir / "weights.safetensors")
        input_source = write_input(workdir / "input.safetensors")
        x = load_file(str(workdir / "input.safetensors"))["input"]
        network = load_codeformer(workdir / "weights.safetensors", precision="fp32")
        export_seconds, _, _ = timed(lambda: export_onnx(network, workdir / "codeformer.onnx"))
        session = onnx_session(workdir / "codeformer.onnx", threads=args.threads)

        def run_torch() -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                out, logits, _ = network(x, w=FIDELITY, adain=True)
            return out.numpy(), logits.argmax(dim=2).numpy()

        def run_ort() -> tuple[np.ndarray, np.ndarray]:
            out, logits = run_onnx(session, x, FIDELITY)
            return out, logits.argmax(axis=2)

        runs = {"torch-fp32": run_torch, "onnxruntime-cpu": run_ort}
        results = {name: run() for name, run in runs.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu_times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                seconds, cpu_seconds, results[name] = timed(run)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)

    vectors = REFERENCE / "vectors.safetensors"
    reference = load_file(str(vectors))["out_w0.5_adain1"].numpy() if vectors.is_file() else None
    base_out, base_codes = results["torch-fp32"]
    base_ms = statistics.median(times["torch-fp32"]) * 1000
    base_cpu = statistics.median(cpu_times["torch-fp32"])
    rows = [
        [
            "backend",
            "ms/face",
            "ratio",
            "CPU s/face",
            "CPU ratio",
            "max|diff| vs torch",
            "codes flipped",
            "PSNR dB",
            "max|diff| vs f64 ref",
        ]
    ]
    for name, (out, codes) in results.items():
        ms = statistics.median(times[name]) * 1000
        psnr = face_psnr(torch.from_numpy(out), torch.from_numpy(base_out))
        rows.append([
            name,
            f"{ms:.1f}",
            f"{ms / base_ms:.2f}x",
            f"{statistics.median(cpu_times[name]):.1f}",
            f"{statistics.median(cpu_times[name]) / base_cpu:.2f}x",
            f"{np.abs(out - base_out).max():.2e}",
            f"{int((codes != base_codes).sum())}/{codes.size}",
            "inf" if psnr == float("inf") else f"{psnr:.1f}",
            "-" if reference is None else f"{np.abs(out - reference).max():.2e}",
        ])  # fmt: skip

    print(f"CodeFormer network, one 512x512 face, w={FIDELITY}, adain=True")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; cpu: {device_name(cpu)}")
    print(f"threads: torch {torch.get_num_threads()}, onnxruntime intra-op {args.threads}")
    print(f"torch precision 'auto' on this CPU resolves to: {choose_precision('auto', cpu)}")
    print(f"onnxruntime providers: {session.get_providers()}; export took {export_seconds:.1f} s")
    print(f"time: median of {args.repeats} alternating rounds after 1 warm-up each; ratio to torch-fp32")
    print("CPU s: CPU time of the process over the run (less sensitive to other load than wall time)")
    print(f"weights: {weights_source}; input: {input_source}")
    print(table(rows))
    for name in runs:
        walls = ", ".join(f"{t:.2f}" for t in times[name])
        cpus = ", ".join(f"{t:.2f}" for t in cpu_times[name])
        print(f"{name} per round: wall s {walls}; CPU s {cpus}")


if __name__ == "__main__":
    main()
