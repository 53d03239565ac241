"""CodeFormer inference network: pure torch, no I/O, no ComfyUI."""

from .codeformer import CodeFormer, CodeFormerConfig, Encoded

__all__ = ["CodeFormer", "CodeFormerConfig", "Encoded"]
