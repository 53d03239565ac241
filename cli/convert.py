"""``codeformer-convert SRC DST``: rewrite a CodeFormer checkpoint as ``.safetensors``, losslessly.

The tensors are copied bit for bit (``models.convert``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.errors import CodeFormerWeightsError
from .helptext import DefaultsHelpFormatter, description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codeformer-convert", description=description(__doc__), formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("source", type=Path, help="CodeFormer weights (.pth, .pt, .ckpt or .safetensors)")
    parser.add_argument("destination", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    from ..models.convert import convert_to_safetensors  # torch loads once the arguments are read

    try:
        task = convert_to_safetensors(args.source, args.destination)
    except (CodeFormerWeightsError, ValueError, OSError) as error:
        print(f"codeformer-convert: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.destination} (CodeFormer {task})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
