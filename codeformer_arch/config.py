"""CodeFormer's hyperparameters and the fixed sizes of its architecture."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIZE = 512
LATENT_SIDE = 16
GROUP_NORM_GROUPS = 32
GROUP_NORM_EPS = 1e-6
ADAIN_EPS = 1e-5


@dataclass(frozen=True)
class CodeFormerConfig:
    """Hyperparameters of a CodeFormer network.

    Attributes:
        codebook_size: number of codebook entries (1024 for restoration and
            colorization, 512 for inpainting).
        connect_sizes: feature-map sizes at which CFT fuses encoder features into the
            generator (32/64/128/256 for restoration, 32/64/128 for the variants).
        dim_embd: transformer width.
        n_head: attention heads of the transformer; not readable from a state dict.
        n_layers: transformer layers.
        dim_mlp: hidden width of the transformer MLP.
        emb_dim: channels of a codebook entry (the VQGAN latent).
        base_channels: channels of the VQGAN's first level.
        channel_multipliers: per-level channel multiplier, from 512x512 down to 16x16.
    """

    codebook_size: int = 1024
    connect_sizes: tuple[int, ...] = (32, 64, 128, 256)
    dim_embd: int = 512
    n_head: int = 8
    n_layers: int = 9
    dim_mlp: int = 1024
    emb_dim: int = 256
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4, 4, 8)
