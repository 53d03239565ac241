"""``codeformer-fetch [NAME...] [--dir DIR]``: fetch the official weights ahead of time, checked.

Without names it fetches what the default run needs: ``codeformer.pth``, the default face
detector and the face parser (CodeFormer's flow pastes through it). ``RealESRGAN_x2plus.pth``
is the official background and face upsampler; ``GFPGANv1.4.pth`` the GFPGAN face restorer.
Files go to the per-user cache (where the library and the command line look for them) or to
``--dir`` (e.g. ``ComfyUI/models/facerestore_models``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.auxiliary import DETECTOR_WEIGHTS, PARSENET_WEIGHTS
from ..models.downloads import MIRROR_VARIABLE, locate, user_cache_dir
from ..models.errors import CodeFormerWeightsError
from ..models.official import FACE_RESTORER_NAMES, OFFICIAL_CHECKPOINTS
from ..models.upsamplers import UPSAMPLER_FILES
from ..pipeline.detection import DEFAULT_DETECTOR
from .helptext import DefaultsHelpFormatter, description

FETCHABLE = {
    **FACE_RESTORER_NAMES,
    **{w.file.name: w.file for w in (*DETECTOR_WEIGHTS.values(), PARSENET_WEIGHTS)},
    **UPSAMPLER_FILES,
}
DEFAULTS = (
    OFFICIAL_CHECKPOINTS["restoration"].name,
    DETECTOR_WEIGHTS[DEFAULT_DETECTOR].file.name,
    PARSENET_WEIGHTS.file.name,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codeformer-fetch", description=description(__doc__), formatter_class=DefaultsHelpFormatter
    )
    names = f"files to fetch (default: {', '.join(DEFAULTS)}); any of {', '.join(FETCHABLE)}"
    parser.add_argument("names", nargs="*", metavar="NAME", help=names)
    parser.add_argument("--dir", type=Path, help=f"folder to put them in (default: {user_cache_dir()})")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in FETCHABLE]
    if unknown:
        parser.error(f"unknown file(s) {', '.join(unknown)}; choose from {', '.join(FETCHABLE)}")
    folder = args.dir or user_cache_dir()
    try:
        for name in args.names or DEFAULTS:
            print(f"{locate(FETCHABLE[name], [folder])}", file=sys.stdout)
    except CodeFormerWeightsError as error:
        print(f"codeformer-fetch: {error}", file=sys.stderr)
        print(f"codeformer-fetch: a mirror can be set with {MIRROR_VARIABLE}=URL", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
