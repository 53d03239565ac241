"""The code-prediction transformer's layers: pre-norm, with the position embedding on queries and keys."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
