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


def test_help_of_every_console_script_loads_nothing_heavy():
    """``--help`` is what a new user runs first: it must not wait seconds for torch to import."""
    scripts = ("restore", "fetch", "convert", "export")
    code = (
        "import contextlib, io, sys\n"
        f"for name in {scripts!r}:\n"
        "    module = __import__(f'codeformer_nodes.cli.{name}', fromlist=['main'])\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.suppress(SystemExit):\n"
        "        module.main(['--help'])\n"
        "    assert 'usage:' in text.getvalue(), name\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
