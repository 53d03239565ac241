"""Background and face upsampling with a super-resolution network (ESRGAN, Real-ESRGAN, Compact, ...),
run as Real-ESRGAN's ``RealESRGANer`` runs it for CodeFormer's ``--bg_upsampler`` and ``--face_upsample``.

An image is taken as 8-bit levels in [0, 1], padded on its right and bottom by reflection
(``pre_pad``, then up to a multiple of 2 for x2 networks or 4 for x1 networks), enlarged
tile by tile (each tile seen with ``tile_pad`` pixels of context, only its own part kept),
unpadded, clamped and rounded to 8-bit levels. Running out of memory halves the tile and
tries again, as ComfyUI's own upscale node does.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.upsamplers import DEFAULT_PRE_PAD, DEFAULT_TILE, DEFAULT_TILE_PAD

MIN_TILE = 32


class TiledUpsampler:
    """The pipeline's :data:`~.options.Upscaler` made of a super-resolution network.

    Args:
        network: takes (1, 3, h, w) RGB in [0, 1] and returns (1, 3, h * scale, w * scale).
        scale: the network's enlargement.
        tile: tile side in input pixels; 0 for the whole image at once.
        tile_pad, pre_pad: context around each tile, and padding of the whole image.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        scale: int,
        tile: int = DEFAULT_TILE,
        tile_pad: int = DEFAULT_TILE_PAD,
        pre_pad: int = DEFAULT_PRE_PAD,
    ) -> None:
        if scale < 1 or tile < 0 or tile_pad < 0 or pre_pad < 0:
            raise ValueError(f"upsampler needs scale >= 1 and tile, tile_pad, pre_pad >= 0; got {scale}, {tile}, "
                             f"{tile_pad}, {pre_pad}")  # fmt: skip
        self.network, self.scale = network, scale
        self.tile, self.tile_pad, self.pre_pad = tile, tile_pad, pre_pad

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(1, H, W, 3) float in [0, 1] -> (1, H * scale, W * scale, 3) float 8-bit levels, on the CPU."""
        parameter = next(self.network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        levels = images[..., :3].clamp(0, 1).mul(255).round().div(255)  # what RealESRGANer reads from uint8
        x = levels.movedim(-1, 1).to(device, dtype)
        height, width = x.shape[-2:]
        x = _padded(x, self.pre_pad, self.pre_pad)
        multiple = {2: 2, 1: 4}.get(self.scale, 1)
        x = _padded(x, -x.shape[-1] % multiple, -x.shape[-2] % multiple)
        tile = self.tile
        while True:
            try:
                with torch.inference_mode():
                    out = self._tiled(x, tile) if tile > 0 else self.network(x)
                break
            except torch.OutOfMemoryError:
                tile = min(tile or max(x.shape[-2:]), max(x.shape[-2:])) // 2
                if tile < MIN_TILE:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        out = out[..., : height * self.scale, : width * self.scale]
        return out.float().clamp(0, 1).mul(255).round().div(255).movedim(1, -1).cpu()

    def _tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """The network over ``tile``-sized tiles, each seen with ``tile_pad`` pixels of context."""
        _, channels, height, width = x.shape
        scale, pad = self.scale, self.tile_pad
        out = x.new_zeros((1, channels, height * scale, width * scale))
        for top in range(0, math.ceil(height / tile) * tile, tile):
            for left in range(0, math.ceil(width / tile) * tile, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                seen_top, seen_left = max(top - pad, 0), max(left - pad, 0)
                seen = x[..., seen_top : min(bottom + pad, height), seen_left : min(right + pad, width)]
                enlarged = self.network(seen)
                rows = slice((top - seen_top) * scale, (bottom - seen_top) * scale)
                cols = slice((left - seen_left) * scale, (right - seen_left) * scale)
                out[..., top * scale : bottom * scale, left * scale : right * scale] = enlarged[..., rows, cols]
        return out


def _padded(x: torch.Tensor, right: int, bottom: int) -> torch.Tensor:
    return F.pad(x, (0, right, 0, bottom), mode="reflect") if right or bottom else x


def load_upsampler(
    source: str | Path,
    device: torch.device | str = "cpu",
    tile: int = DEFAULT_TILE,
    weights_dir: str | Path | None = None,
) -> TiledUpsampler:
    """A :class:`TiledUpsampler` from a super-resolution file, or the bare name ``RealESRGAN_x2plus.pth``
    (fetched when missing), on ``device``."""
    from ..models.upsamplers import load_upsampler_network

    descriptor = load_upsampler_network(source, device, weights_dir)
    return TiledUpsampler(descriptor.model, descriptor.scale, tile=tile)
