"""CodeFormer checkpoints rewritten as ``.safetensors``, losslessly (``codeformer-convert``).

A ``.safetensors`` file cannot carry code, loads without unpickling and maps straight
into memory. The tensors are copied bit for bit; the task and the source file's sha256
go into the file's metadata.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from .checkpoint import SAFETENSORS_SUFFIX, read_state_dict, recognise
from .downloads import file_sha256
from .files import atomic_destination


def convert_to_safetensors(source: Path, destination: Path) -> str:
    """Write ``source``'s CodeFormer state dict to ``destination``; return the task it holds."""
    if destination.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ValueError(f"destination {destination} must end in {SAFETENSORS_SUFFIX}")
    if destination.is_dir():
        raise ValueError(f"destination {destination} is a folder; name the .safetensors file to write in it")
    if destination.resolve() == source.resolve():
        raise ValueError(f"destination {destination} is the source file; choose another name")
    state_dict = read_state_dict(source)
    task = recognise(state_dict, source).task
    tensors = {key: tensor.contiguous() for key, tensor in state_dict.items()}
    metadata = {"architecture": "CodeFormer", "task": task, "source_sha256": file_sha256(source)}
    with atomic_destination(destination) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return task
