"""Importing the pack must stay cheap: ComfyUI imports every pack at start-up."""

from __future__ import annotations

import subprocess
import sys

HEAVY_MODULES = ("torch", "facexlib", "cv2", "torchvision", "safetensors")


def test_import_loads_nothing_heavy():
    code = f"import sys, codeformer_nodes\nprint(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_public_names_resolve_lazily():
    import codeformer_nodes

    assert callable(codeformer_nodes.load_codeformer)
    assert issubclass(codeformer_nodes.WeightsFileError, codeformer_nodes.CodeFormerWeightsError)
