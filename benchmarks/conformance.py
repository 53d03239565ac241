"""Print how far our float32 and float64 networks are from the official reference vectors.

The tests assert the tolerances; this prints the measured numbers for the notes:
max abs difference per reference output, and whether any code index differs.

    .venv/bin/python benchmarks/conformance.py [--float64]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file

from codeformer_nodes import CodeFormer
from codeformer_nodes.models import recognise

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def recipe(manifest: str, dtype: torch.dtype) -> CodeFormer:
    spec = importlib.util.spec_from_file_location("recipe", REFERENCE / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    weights = {k: torch.from_numpy(v) for k, v in module.recipe_state_dict(str(REFERENCE / manifest)).items()}
    network = CodeFormer(recognise(weights, REFERENCE / manifest).config).eval()
    network.load_state_dict(weights)
    return network.to(dtype)


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float64", action="store_true", help="also run float64 (about 20 s a forward on a CPU)")
    args = parser.parse_args()
    vectors = load_file(str(REFERENCE / "vectors.safetensors"))
    variants = load_file(str(REFERENCE / "variants.safetensors"))
    dtypes = [torch.float32, torch.float64] if args.float64 else [torch.float32]
    for dtype in dtypes:
        network = recipe("manifest.json", dtype)
        x = vectors["input"].to(dtype)
        with torch.inference_mode():
            for adain in (False, True):
                out, logits, lq = network(x.expand(3, -1, -1, -1), w=torch.tensor([0.0, 0.5, 1.0]), adain=adain)
                for i, w in enumerate(("0.0", "0.5", "1.0")):
                    name = f"out_w{w}_adain{int(adain)}"
                    print(f"{dtype}  {name:<24} {diff(out[i : i + 1], vectors[name]):.2e}")
            print(f"{dtype}  {'logits':<24} {diff(logits[:1], vectors['code_only_logits']):.2e}")
            print(f"{dtype}  {'lq_feat':<24} {diff(lq[:1], vectors['code_only_lq_feat']):.2e}")
            same = torch.equal(logits[0].argmax(dim=1), vectors["code_indices"])
            print(f"{dtype}  {'code indices equal':<24} {same}")
            batch, batch_logits, _ = network(vectors["batch2_input"].to(dtype), w=0.5, adain=True)
            print(f"{dtype}  {'batch2_out_w0.5_adain1':<24} {diff(batch, vectors['batch2_out_w0.5_adain1']):.2e}")
            same = torch.equal(batch_logits.argmax(dim=2), vectors["batch2_code_indices"])
            print(f"{dtype}  {'batch2 code indices equal':<24} {same}")
            color = recipe("manifest_colorization.json", dtype)
            out, logits, _ = color(variants["color_input"].to(dtype), w=0, adain=True)
            print(f"{dtype}  {'color_out_w0_adain1':<24} {diff(out, variants['color_out_w0_adain1']):.2e}")
            same = torch.equal(logits[0].argmax(dim=1), variants["color_code_indices"])
            print(f"{dtype}  {'color code indices equal':<24} {same}")
            inpaint = recipe("manifest_inpainting.json", dtype)
            out, logits, _ = inpaint(variants["inpaint_input"].to(dtype), w=1, adain=False)
            print(f"{dtype}  {'inpaint_raw_out_w1_adain0':<24} {diff(out, variants['inpaint_raw_out_w1_adain0']):.2e}")
            same = torch.equal(logits[0].argmax(dim=1), variants["inpaint_code_indices"])
            print(f"{dtype}  {'inpaint code indices equal':<24} {same}")


if __name__ == "__main__":
    main()
