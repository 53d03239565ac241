"""CodeFormer: blind face restoration with a codebook lookup transformer.

Zhou, Chan, Li, Loy, "Towards Robust Blind Face Restoration with Codebook Lookup
Transformer", NeurIPS 2022. A VQGAN encoder turns a 512x512 face into 16x16 latent
tokens; a transformer predicts, for every token, which entry of a learned codebook it
should be; the looked-up codes go through the VQGAN generator. The Controllable Feature
Transformation (CFT) adds back encoder features at four scales, weighted by the fidelity
``w``: ``w = 0`` trusts the codebook (quality), ``w = 1`` trusts the input (fidelity).

This is an inference-only implementation written from the paper and the architecture
notes of the numerical reference; parameter names and shapes match the official state
dict so that released checkpoints load with ``strict=True``. The released weights carry
their own licence (S-Lab License 1.0, non-commercial); this code is Apache-2.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)


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
        skip = x if self.conv_out is None else self.conv_out(x)
        return skip + h


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
        return x + self.proj_out(attended.transpose(2, 3).reshape(b, c, h, w))


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
    feature-map size: CFT fuses encoder features right after it.
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


class FuseSFT(nn.Module):
    """CFT block: predicts a per-pixel scale and shift from encoder and decoder features."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_channels, out_channels)
        self.scale = self._branch(out_channels)
        self.shift = self._branch(out_channels)

    @staticmethod
    def _branch(channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, enc_feat: Tensor, dec_feat: Tensor, w: Tensor) -> Tensor:
        """``w`` is a (B,1,1,1) tensor; samples with ``w <= 0`` keep ``dec_feat`` exactly."""
        h = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        fused = dec_feat + w * (dec_feat * self.scale(h) + self.shift(h))
        return torch.where(w > 0, fused, dec_feat)


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention in which queries and keys see the position embedding.

    Parameters keep the names of ``torch.nn.MultiheadAttention`` (packed ``in_proj``),
    so checkpoints load as they are; tensors are batch-first.
    """

    def __init__(self, dim: int, n_head: int, fused: bool = True) -> None:
        super().__init__()
        self.n_head = n_head
        self.fused = fused
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, position: Tensor) -> Tensor:
        b, n, d = x.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        with_position = x + position
        q = F.linear(with_position, w_q, b_q)
        k = F.linear(with_position, w_k, b_k)
        v = F.linear(x, w_v, b_v)
        q, k, v = (t.reshape(b, n, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.fused:
            attended = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.n_head), dim=-1)
            attended = weights @ v
        return self.out_proj(attended.transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer with exact (erf) GELU."""

    def __init__(self, dim: int, n_head: int, dim_mlp: int) -> None:
        super().__init__()
        self.self_attn = MultiheadSelfAttention(dim, n_head)
        self.linear1 = nn.Linear(dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, position: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm1(x), position)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class Codebook(nn.Module):
    """The learned codebook; inference looks entries up by predicted index (no quantising)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def forward(self, indices: Tensor) -> Tensor:
        """(B,256) code indices -> (B,dim,16,16) features, an exact row gather.

        The result is made contiguous: left channels-last (as the permute leaves it), the
        whole generator would follow that layout, whose CPU GroupNorm loses about three
        digits on large activations.
        """
        codes = self.embedding(indices)
        grid = codes.reshape(indices.shape[0], LATENT_SIDE, LATENT_SIDE, -1)
        return grid.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)


def adaptive_instance_norm(content: Tensor, style: Tensor) -> Tensor:
    """Give ``content`` the per-sample, per-channel mean and (unbiased) std of ``style``."""

    def stats(t: Tensor) -> tuple[Tensor, Tensor]:
        flat = t.flatten(2)
        mean = flat.mean(dim=2)[..., None, None]
        std = (flat.var(dim=2, unbiased=True) + ADAIN_EPS).sqrt()[..., None, None]
        return mean, std

    content_mean, content_std = stats(content)
    style_mean, style_std = stats(style)
    return (content - content_mean) / content_std * style_std + style_mean


class CodeFormer(nn.Module):
    """The CodeFormer inference network; input (B,3,512,512) roughly in [-1, 1]."""

    def __init__(self, config: CodeFormerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CodeFormerConfig()
        tokens = LATENT_SIDE * LATENT_SIDE
        self.position_emb = nn.Parameter(torch.empty(tokens, config.dim_embd))
        self.encoder = VQEncoder(config)
        self.quantize = Codebook(config.codebook_size, config.emb_dim)
        self.generator = VQGenerator(config)
        self.feat_emb = nn.Linear(config.emb_dim, config.dim_embd)
        self.ft_layers = nn.ModuleList(
            TransformerLayer(config.dim_embd, config.n_head, config.dim_mlp) for _ in range(config.n_layers)
        )
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(config.dim_embd), nn.Linear(config.dim_embd, config.codebook_size, bias=False)
        )
        widths = {size: self._encoder_width(size) for size in config.connect_sizes}
        self.fuse_convs_dict = nn.ModuleDict({str(size): FuseSFT(widths[size], widths[size]) for size in widths})

    def _encoder_width(self, size: int) -> int:
        level = int(math.log2(IMAGE_SIZE // size))
        return self.config.base_channels * self.config.channel_multipliers[level]

    def set_fused_attention(self, enabled: bool) -> None:
        """Choose ``scaled_dot_product_attention`` (default) or the explicit softmax form."""
        for layer in self.ft_layers:
            layer.self_attn.fused = enabled

    def forward(
        self,
        x: Tensor,
        w: float | Tensor = 0,
        detach_16: bool = True,
        code_only: bool = False,
        adain: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor] | tuple[Tensor, Tensor]:
        """Restore faces; signature and returns follow the official model.

        Args:
            x: (B,3,512,512) faces, RGB, normalised as ``(rgb - 0.5) / 0.5``.
            w: fidelity in [0, 1], a number or a (B,) tensor (one per face); ``w = 0`` skips CFT.
            detach_16: accepted for call compatibility; it only affects gradients.
            code_only: return ``(logits, lq_feat)`` without running the generator.
            adain: match the looked-up codes' channel statistics to the encoder output.

        Returns:
            ``(out, logits, lq_feat)``: out (B,3,512,512), unclamped; logits (B,256,
            codebook_size); lq_feat (B,emb_dim,16,16). With ``code_only``, the last two.
        """
        del detach_16
        _check_input(x)
        fidelity = self._fidelity(w, x)
        lq_feat, skips = self.encoder(x)
        logits = self.predict_codes(lq_feat)
        if code_only:
            return logits, lq_feat
        codes = self.quantize(logits.argmax(dim=2))
        if adain:
            codes = adaptive_instance_norm(codes, lq_feat)
        out = self.generate(codes, skips, fidelity)
        return out, logits, lq_feat

    def predict_codes(self, lq_feat: Tensor) -> Tensor:
        """Logits over the codebook for each of the 16x16 tokens (row-major)."""
        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.position_emb)
        return self.idx_pred_layer(tokens)

    def generate(self, codes: Tensor, skips: dict[int, Tensor], w: Tensor) -> Tensor:
        fuse = bool((w > 0).any())
        h = codes
        for index, block in enumerate(self.generator.blocks):
            h = block(h)
            size = self.generator.level_start.get(index)
            if fuse and str(size) in self.fuse_convs_dict:
                h = self.fuse_convs_dict[str(size)](skips[size], h, w)
        return h

    @staticmethod
    def _fidelity(w: float | Tensor, x: Tensor) -> Tensor:
        """Fidelity as a (B,1,1,1) tensor in the input's dtype and device, checked before any work."""
        weight = torch.as_tensor(w, dtype=torch.float64).detach().cpu()
        if weight.ndim == 0:
            weight = weight.expand(x.shape[0])
        if weight.shape != (x.shape[0],):
            raise ValueError(
                f"w must be a number or a tensor of shape ({x.shape[0]},), one per face; got {tuple(weight.shape)}"
            )
        if not bool(((weight >= 0) & (weight <= 1)).all()):
            raise ValueError(f"w must lie in [0, 1] (0: quality, 1: fidelity); got {weight.tolist()}")
        return weight.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)


def _check_input(x: Tensor) -> None:
    """Only (B, 3, 512, 512) works: the transformer has one position per cell of a fixed 16x16 grid."""
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"CodeFormer takes (B, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) faces; got {tuple(x.shape)}. Align faces to "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} first (restore_faces does)."
        )
