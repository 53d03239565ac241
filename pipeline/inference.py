"""Running the network over aligned crops in chunks, one fidelity per face."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch

from .geometry import FACE_SIZE
from .images import normalise
from .options import RestoreOptions
from .tasks import blend_inpainting, task_adain

# Called after each chunk with (faces done, faces in all); may raise to stop the run.
ChunkCallback = Callable[[int, int], None]
# A face in flight through the float32 network peaks at about 270 MiB above the weights (CPU,
# measured); counted with room to spare. Half-precision generators need less.
BYTES_PER_FACE = 512 << 20
MAX_AUTO_CHUNK = 16


class RestorationNetwork(Protocol):
    """What the pipeline needs of a network: CodeFormer's call, and parameters that say where it runs."""

    def __call__(self, x: torch.Tensor, *, w: torch.Tensor, adain: bool) -> tuple[torch.Tensor, ...]: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...


def run_network(
    model: RestorationNetwork,
    crops: np.ndarray,
    fidelities: list[float],
    options: RestoreOptions,
    on_chunk: ChunkCallback | None = None,
    fill: np.ndarray | None = None,
) -> torch.Tensor:
    """Restore (N, 512, 512, 3) uint8 crops in chunks; returns float32 (N, 512, 512, 3) in [0, 1] on the
    network's device.

    Inpainting (``fill``: (N, 512, 512) bool) keeps every pixel outside its mask exactly.

    Running out of memory (on CUDA, in practice) halves the chunk and tries again, down to
    one face, then re-raises.
    """
    device, dtype = device_of(model), dtype_of(model)
    adain = task_adain(options.task, options.adain)
    faces = torch.from_numpy(crops)
    total = faces.shape[0]
    outputs: list[torch.Tensor] = []
    chunk, start = faces_per_forward(model, options), 0
    while start < total:
        batch = faces[start : start + chunk]
        x = normalise(batch)
        holes = None if fill is None else torch.from_numpy(fill[start : start + chunk])[:, None]
        network_input = x if holes is None else x.masked_fill(holes, 1.0)  # the model was taught white holes
        w = torch.tensor(fidelities[start : start + chunk])
        try:
            with torch.inference_mode():
                out = model(network_input.to(device, dtype), w=w, adain=adain)[0]
            if holes is not None:
                out = blend_inpainting(x.to(out.device), out.float(), holes)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            chunk //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        outputs.append(as_restored_crops(out, start, total))
        start += batch.shape[0]
        if on_chunk is not None:
            on_chunk(start, total)
    if not outputs:
        return torch.zeros((0, FACE_SIZE, FACE_SIZE, 3), device=device)
    return torch.cat(outputs)


def as_restored_crops(out: torch.Tensor, first: int, total: int) -> torch.Tensor:
    """Network output (B, 3, 512, 512) as restored crops (B, 512, 512, 3) in [0, 1], as the official flow
    clamps it; refuses NaN or infinite pixels (faces ``first + 1``.. of ``total``), never pastes them."""
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"the network gave NaN or infinite pixels for faces {first + 1}-{first + out.shape[0]} of {total}; "
            "its weights are probably damaged: load the official checkpoint again"
        )
    return ((out.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)


def auto_chunk_size(device: torch.device) -> int:
    """Faces per forward when not given: 1 on a CPU, where batching gains no speed and a chunk of
    8 doubles peak memory (3.7 GB against 1.8 GB on a 4-face photo); on a GPU, as many as fit in
    half its free memory, up to 16."""
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_AUTO_CHUNK, free // 2 // BYTES_PER_FACE))


def faces_per_forward(model: RestorationNetwork, options: RestoreOptions) -> int:
    """The chunk the pipeline runs ``model`` in under ``options``: a folder run groups this many images."""
    return options.chunk_size or auto_chunk_size(device_of(model))


def device_of(model: RestorationNetwork) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def dtype_of(model: RestorationNetwork) -> torch.dtype:
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32
