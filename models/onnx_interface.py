"""The ONNX model's interface (FaceFusion's face enhancer) and the export's defaults, named apart from the
exporter (``onnx_export``) so that ``codeformer-export --help`` imports no torch.

FaceFusion's face enhancer (facefusion/processors/modules/face_enhancer/core.py) feeds the session inputs
named 'input' and 'weight' (a float64 array of shape (1,)) and takes the first output.
"""

from __future__ import annotations

INPUT_NAME, WEIGHT_NAME = "input", "weight"
OUTPUT_NAME, LOGITS_NAME = "output", "logits"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
DEFAULT_CHECK_WEIGHTS = (0.0, 0.5)
