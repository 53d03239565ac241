"""Test scenes built from the real photos in ``../shared/testdata`` and the reference's recipe
weights, shared by tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "testdata" / "photos"
# x of the four face centres in group_four.png
GROUP_FOUR_FACE_CENTRES = (214, 471, 693, 934)


def recipe_checkpoint(folder: Path) -> Path:
    """The reference's recipe weights (float32) as an official-layout ``codeformer.pth`` in ``folder``."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("codeformer_recipe", SHARED / "reference" / "recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    arrays = recipe.recipe_state_dict(str(SHARED / "reference" / "manifest.json"))
    path = folder / "codeformer.pth"
    torch.save({"params_ema": {key: torch.from_numpy(value).float() for key, value in arrays.items()}}, path)
    return path


def read_rgb(name: str) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(PHOTOS / name).convert("RGB"))


def crowd_rgb() -> np.ndarray:
    """Eight faces in two rows whose paste squares overlap (680x460): each face of group_four.png
    cut as a 170-pixel strip, the strips side by side, and a mirrored copy of the row, shifted,
    below. Pasted in the wrong order, this image differs from the official flow by 24 dB."""
    photo = read_rgb("group_four.png")
    row = np.concatenate([photo[50:280, x - 85 : x + 85] for x in GROUP_FOUR_FACE_CENTRES], axis=1)
    mirrored = row[:, ::-1]
    below = np.concatenate([mirrored[:, 40:], np.full_like(mirrored[:, :40], 128)], axis=1)
    return np.ascontiguousarray(np.concatenate([row, below], axis=0))


def synthetic_4k() -> np.ndarray:
    """3840x2160 RGB: two faces of group_four.png, enlarged 1.5x, on a smooth gradient."""
    from PIL import Image

    photo = Image.fromarray(read_rgb("group_four.png"))
    canvas = np.empty((2160, 3840, 3), np.uint8)
    canvas[...] = np.linspace(40, 200, 3840, dtype=np.float32).astype(np.uint8)[None, :, None]
    for (left, top, right, bottom), (x, y) in (((380, 40, 560, 290), (700, 600)), ((610, 40, 780, 290), (2600, 1200))):
        face = photo.crop((left, top, right, bottom))
        face = np.array(face.resize((face.width * 3 // 2, face.height * 3 // 2), Image.LANCZOS))
        canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    return canvas
