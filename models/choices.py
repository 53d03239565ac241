"""What a user chooses among when loading a network: its task, its precision, its backend.

Named here, apart from the modules that act on them, so that building the console scripts'
``--help`` imports no torch.
"""

from __future__ import annotations

# The tasks of the official checkpoints.
RESTORATION, COLORIZATION, INPAINTING = "restoration", "colorization", "inpainting"
TASKS = (RESTORATION, COLORIZATION, INPAINTING)

# The precisions the loader offers (``models.precision`` says what each computes in).
PRECISIONS = ("auto", "fp32", "mixed-bf16", "mixed-fp16", "bf16", "fp16")
PRECISION_HELP = (
    "auto: mixed-bf16 where the hardware runs bfloat16 natively, else fp32 (both keep the float32 codes); "
    "mixed-*: codes in float32, generator in bf16/fp16; bf16/fp16: the whole network in half precision "
    "(faster, but changes codes: a different restoration). GFPGAN runs in fp32 or bf16 (auto: bf16 where native), "
    "RestoreFormer in fp32"
)

# What runs the network: torch, or the float32 network exported to ONNX and run by onnxruntime.
BACKENDS = ("torch", "onnxruntime")
