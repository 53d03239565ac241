"""``codeformer-convert SRC DST``: rewrite a CodeFormer checkpoint as ``.safetensors``, losslessly.

A ``.safetensors`` file cannot carry code, loads without unpickling and maps straight
into memory. The tensors are copied bit for bit; the task and the source file's sha256
go into the file's metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from ..models.checkpoint import SAFETENSORS_SUFFIX, read_state_dict, recognise
from ..models.downloads import file_sha256
from ..models.errors import CodeFormerWeightsError


def convert_to_safetensors(source: Path, destination: Path) -> str:
    """Write ``source``'s CodeFormer state dict to ``destination``; return the task it holds."""
    if destination.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ValueError(f"destination {destination} must end in {SAFETENSORS_SUFFIX}")
    if destination.resolve() == source.resolve():
        raise ValueError(f"destination {destination} is the source file; choose another name")
    state_dict = read_state_dict(source)
    task = recognise(state_dict, source).task
    tensors = {key: tensor.contiguous() for key, tensor in state_dict.items()}
    metadata = {"architecture": "CodeFormer", "task": task, "source_sha256": file_sha256(source)}
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".partial")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codeformer-convert", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="CodeFormer weights (.pth, .pt, .ckpt or .safetensors)")
    parser.add_argument("destination", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        task = convert_to_safetensors(args.source, args.destination)
    except (CodeFormerWeightsError, ValueError) as error:
        print(f"codeformer-convert: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.destination} (CodeFormer {task})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
