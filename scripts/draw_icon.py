#!/usr/bin/env python3
# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""draw_icon: the pack's icon (docs/icon.png, 256x256), the ``Icon`` of ``[tool.comfy]``.

A face whose left half is coarse blocks and right half smooth, split by a seam: restoration.
Drawn at 4x and shrunk, so edges are smooth; the block shades are seeded, so the file is the
same on every run.

    python scripts/draw_icon.py [OUT.png]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
SCALE = 4
BACKGROUND = (27, 38, 59, 255)
SKIN = (242, 200, 160, 255)
FEATURES = (40, 52, 70, 255)
SEAM = (120, 210, 255, 255)
SPARKLE = (255, 236, 140, 255)


def draw_icon() -> Image.Image:
    side = SIZE * SCALE
    icon = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(icon).rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 6, fill=BACKGROUND)
    cx, cy, rx, ry = side // 2, side // 2 + 20, 300, 380
    face = Image.new("L", (side, side), 0)
    ImageDraw.Draw(face).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    blocks = Image.new("RGBA", (side, side))
    pen, shades, block = ImageDraw.Draw(blocks), random.Random(3), 64
    for y in range(0, side, block):
        for x in range(0, side, block):
            v = shades.randint(-40, 25)
            pen.rectangle((x, y, x + block - 1, y + block - 1), fill=(200 + v, 160 + v, 125 + v, 255))
    left = Image.new("L", (side, side), 0)
    ImageDraw.Draw(left).rectangle((0, 0, cx - 1, side), fill=255)
    icon.paste(Image.composite(blocks, Image.new("RGBA", (side, side), SKIN), left), (0, 0), face)
    draw = ImageDraw.Draw(icon)
    for ex in (cx - 130, cx + 130):
        draw.ellipse((ex - 42, cy - 110, ex + 42, cy - 40), fill=FEATURES)
    draw.arc((cx - 150, cy + 40, cx + 150, cy + 210), 20, 160, fill=FEATURES, width=34)
    draw.line((cx, cy - 420, cx, cy + 420), fill=SEAM, width=22)
    sx, sy, r, waist = cx + 300, cy - 330, 90, 22
    star = [(0, -r), (waist, -waist), (r, 0), (waist, waist), (0, r), (-waist, waist), (-r, 0), (-waist, -waist)]
    draw.polygon([(sx + x, sy + y) for x, y in star], fill=SPARKLE)
    return icon.resize((SIZE, SIZE), Image.LANCZOS)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "icon.png"
    draw_icon().save(out, optimize=True)
    print(out)
