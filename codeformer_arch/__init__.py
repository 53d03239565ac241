"""CodeFormer inference network: pure torch, no I/O, no ComfyUI."""

from .codeformer import CodeFormer, CodeFormerConfig

__all__ = ["CodeFormer", "CodeFormerConfig"]
