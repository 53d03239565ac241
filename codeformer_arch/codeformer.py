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
from torch import Tensor, nn

from .config import ADAIN_EPS, IMAGE_SIZE, LATENT_SIDE, CodeFormerConfig
from .precision import ieee_float32, run_in_half
from .transformer import TransformerLayer
from .vqgan import ResBlock, VQEncoder, VQGenerator


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
        """``w`` is a (B,1,1,1) tensor; samples with ``w = 0`` keep ``dec_feat`` exactly.

        Computes ``dec_feat + w * (dec_feat * scale + shift)`` in place on the fresh ``scale``
        tensor, in that order, so the result is the same to the last bit; in float32 under
        autocast (mixed precision).
        """
        h = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        scale, shift = self.scale(h), self.shift(h)
        if torch.is_autocast_enabled(dec_feat.device.type):
            scale, shift, dec_feat = scale.float(), shift.float(), dec_feat.float()
        fused = scale.mul_(dec_feat).add_(shift).mul_(w).add_(dec_feat)
        return fused if bool((w > 0).all()) else torch.where(w > 0, fused, dec_feat)


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


@dataclass(frozen=True)
class Encoded:
    """What the encoder and the transformer make of a batch of faces.

    Attributes:
        lq_feat: (B, emb_dim, 16, 16) encoder output.
        skips: encoder features by feature-map size, for the CFT fusion.
        logits: (B, 256, codebook_size) scores of each codebook entry per token.
    """

    lq_feat: Tensor
    skips: dict[int, Tensor]
    logits: Tensor


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
        # The dtype the generator and the CFT fusion compute in (see precision.py); None: the
        # parameters' own, like the rest of the network.
        self.generator_dtype: torch.dtype | None = None

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
        fidelity = self._fidelity(w, x)
        encoded = self.encode(x)
        if code_only:
            return encoded.logits, encoded.lq_feat
        out = self.decode(encoded, encoded.logits.argmax(dim=2), fidelity, adain)
        return out, encoded.logits, encoded.lq_feat

    def encode(self, x: Tensor) -> Encoded:
        """The code path: encoder features and the logits over the codebook (TF32 off on CUDA).

        With :meth:`decode`, this splits ``forward`` so that callers can choose the codes
        themselves (e.g. from logits averaged over video frames).
        """
        _check_input(x)
        # Standard layout whatever the caller's strides: a channels-last input (an NHWC batch
        # permuted, as images usually arrive) would send every layer down the channels-last
        # path, whose CPU GroupNorm loses about three digits on large activations.
        x = x.contiguous()
        with ieee_float32(x.device.type):
            lq_feat, skips = self.encoder(x)
            return Encoded(lq_feat=lq_feat, skips=skips, logits=self.predict_codes(lq_feat))

    def decode(self, encoded: Encoded, codes: Tensor, w: float | Tensor, adain: bool) -> Tensor:
        """The image from chosen code indices (B, 256) and the encoder features they go with."""
        fidelity = self._fidelity(w, encoded.lq_feat)
        with ieee_float32(codes.device.type):
            looked_up = self.quantize(codes)
            if adain:
                looked_up = adaptive_instance_norm(looked_up, encoded.lq_feat)
            return self.generate(looked_up, encoded.skips, fidelity)

    def predict_codes(self, lq_feat: Tensor) -> Tensor:
        """Logits over the codebook for each of the 16x16 tokens (row-major)."""
        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.position_emb)
        return self.idx_pred_layer(tokens)

    def set_generator_dtype(self, dtype: torch.dtype | None) -> None:
        """Run the generator and CFT in ``dtype`` (bfloat16 or float16), the codes staying in the
        parameters' dtype, so they are exactly the full-precision codes; None undoes it."""
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"the generator runs in bfloat16 or float16 (or None, as the rest); got {dtype}")
        self.generator_dtype = dtype

    def generate(self, codes: Tensor, skips: dict[int, Tensor], w: Tensor) -> Tensor:
        """The image from looked-up codes, the encoder's skip features and the fidelity.

        With a half ``generator_dtype``, the 16x16 stage (where the codes enter, a few percent
        of the work) still runs in full precision: rounded there, the face moves most
        (2 dB of PSNR against float32 with the recipe weights).
        """
        blocks = len(self.generator.blocks)
        if self.generator_dtype is None:
            return self._decode(codes, skips, w, range(blocks))
        split = self.generator.first_upsampled_block
        h = self._decode(codes, skips, w, range(split))

        def decode_rest(dtype: torch.dtype | None) -> Tensor:
            if dtype is None:
                return self._decode(h, skips, w, range(split, blocks))
            cast = {size: feature.to(dtype) for size, feature in skips.items()}
            return self._decode(h.to(dtype), cast, w, range(split, blocks)).to(h.dtype)

        return run_in_half(decode_rest, h.device.type, self.generator_dtype)

    def _decode(self, h: Tensor, skips: dict[int, Tensor], w: Tensor, indices: range) -> Tensor:
        """Generator blocks ``indices`` on ``h``, with CFT after each level's first ResBlock."""
        fuse = bool((w > 0).any())
        for index in indices:
            h = self.generator.blocks[index](h)
            size = self.generator.level_start.get(index)
            if fuse and str(size) in self.fuse_convs_dict:
                h = self.fuse_convs_dict[str(size)](skips[size], h, w)
        return h

    @staticmethod
    def _fidelity(w: float | Tensor, x: Tensor) -> Tensor:
        """Fidelity as a (B,1,1,1) tensor in the dtype and device of ``x`` (a batch of B), checked before any
        work; a (B,1,1,1) tensor (as ``forward`` hands ``decode``) is checked as its (B,) values are."""
        weight = torch.as_tensor(w, dtype=torch.float64).detach().cpu()
        if weight.ndim == 4 and weight.shape[1:] == (1, 1, 1):
            weight = weight.reshape(-1)
        if weight.ndim == 0:
            weight = weight.expand(x.shape[0])
        if weight.shape != (x.shape[0],):
            raise ValueError(
                f"w must be a number or a tensor of shape ({x.shape[0]},) or ({x.shape[0]}, 1, 1, 1), one per face; "
                f"got {tuple(weight.shape)}"
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
