"""The VQGAN halves of CodeFormer: the encoder (512x512 face -> 16x16 latent) and the generator.

Blocks follow the architecture notes of the numerical reference: pre-activation ResBlocks
with GroupNorm and swish, single-head attention at 16x16, asymmetric-padding downsampling
and nearest-neighbour upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GROUP_NORM_EPS, GROUP_NORM_GROUPS, IMAGE_SIZE, LATENT_SIDE, CodeFormerConfig


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x), in one pass over memory."""
    return F.silu(x)


def add_residual(stream: Tensor, branch: Tensor) -> Tensor:
    """``stream + branch``, in place on the fresh ``branch``; in float32 under autocast (mixed
    precision), so that only convolutions and products round to the half type."""
    if torch.is_autocast_enabled(branch.device.type):
        return stream.float() + branch.float()
    return branch.add_(stream)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm whose statistics are always float32 (or float64): half inputs are normalised in
    float32 and handed back in their own dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def group_norm(channels: int) -> GroupNorm32:
    return GroupNorm32(GROUP_NORM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block; a 1x1 ``conv_out`` matches widths on the skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return add_residual(x if self.conv_out is None else self.conv_out(x), h)


class Downsample(nn.Module):
    """Halve the size: zero-pad right and bottom by one pixel, 3x3 conv with stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the size: nearest neighbour, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map (used at 16x16)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).reshape(b, 1, c, h * w).transpose(2, 3) for conv in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)
        # contiguous: the transposed view has channels-last strides, which every later block would inherit
        return add_residual(x, self.proj_out(attended.transpose(2, 3).reshape(b, c, h, w).contiguous()))


class VQEncoder(nn.Module):
    """VQGAN encoder, 512x512x3 -> 16x16x``emb_dim``; remembers where each level ends.

    ``skip_after`` maps a block index to the feature-map size of the level whose last
    ResBlock it is: CFT takes its encoder features there.
    """

    def __init__(self, config: CodeFormerConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        blocks: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        self.skip_after: dict[int, int] = {}
        size, channels = IMAGE_SIZE, widths[0]
        for level, width in enumerate(widths):
            for _ in range(2):
                blocks.append(ResBlock(channels, width))
                channels = width
                if size == LATENT_SIDE:
                    blocks.append(AttnBlock(channels))
            self.skip_after[len(blocks) - 1] = size
            if level < len(widths) - 1:
                blocks.append(Downsample(channels))
                size //= 2
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        blocks += [group_norm(channels), nn.Conv2d(channels, config.emb_dim, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        skips: dict[int, Tensor] = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.skip_after:
                skips[self.skip_after[index]] = x
        return x, skips


class VQGenerator(nn.Module):
    """VQGAN decoder, 16x16x``emb_dim`` -> 512x512x3 (no output activation).

    ``level_start`` maps the index of each level's first ResBlock to that level's
    feature-map size: CFT fuses encoder features right after it. ``first_upsampled_block``
    is the first block past the 16x16 stage (and the upsampling that ends it).
    """

    def __init__(self, config: CodeFormerConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in reversed(config.channel_multipliers)]
        channels = widths[0]
        blocks: list[nn.Module] = [nn.Conv2d(config.emb_dim, channels, 3, padding=1)]
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        self.level_start: dict[int, int] = {}
        size = LATENT_SIDE
        for level, width in enumerate(widths):
            self.level_start[len(blocks)] = size
            for _ in range(2):
                blocks.append(ResBlock(channels, width))
                channels = width
                if size == LATENT_SIDE:
                    blocks.append(AttnBlock(channels))
            if level < len(widths) - 1:
                blocks.append(Upsample(channels))
                size *= 2
        blocks += [group_norm(channels), nn.Conv2d(channels, 3, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.first_upsampled_block = min(index for index, size in self.level_start.items() if size > LATENT_SIDE)
