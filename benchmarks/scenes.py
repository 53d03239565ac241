"""Test scenes built from the real photos in ``../shared/testdata`` and the reference's recipe
weights, shared by tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _shared_folder() -> Path:
    """``../shared`` beside the project, or ``shared/`` inside it where only that exists (a copy of the
    working tree on another machine, e.g. a GPU's)."""
    beside, inside = ROOT.parent / "shared", ROOT / "shared"
    return inside if inside.is_dir() and not beside.is_dir() else beside


SHARED = _shared_folder()
PHOTOS = SHARED / "testdata" / "photos"
# x of the four face centres in group_four.png
GROUP_FOUR_FACE_CENTRES = (214, 471, 693, 934)
# GFPGAN's noise injections start at 0 in a fresh network: set to this, so that the noise matters.
NOISE_STRENGTH = 0.3


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


# codeformer-pip 0.0.4 still has this line of FaceRestoreHelper.get_face_landmarks_5, which upstream
# CodeFormer removed in a75e7ae (2024-09-19): with it, the detector's copy is never shrunk.
REMOVED_UPSTREAM = "            scale = max(1, scale)  # always scale up\n"


def official_codeformer(folder: Path, helper_weights: Path) -> Path | None:
    """CodeFormer's own code (codeformer-pip 0.0.4, installed for tests and benchmarks: S-Lab licence,
    called, never copied into the project) as upstream b33cc7d+a75e7ae runs it: the installed package
    copied into ``folder`` with the one line upstream removed, and its ``weights/facelib`` holding the
    detector and parser of ``helper_weights``. Returns the folder to put first on a subprocess's path;
    None when codeformer-pip is not installed."""
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("codeformer")
    if spec is None or spec.origin is None:
        return None
    package = folder / "codeformer"
    shutil.copytree(Path(spec.origin).parent, package, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    helper = package / "facelib" / "utils" / "face_restoration_helper.py"
    source = helper.read_text()
    if source.count(REMOVED_UPSTREAM) != 1:
        raise RuntimeError(f"{helper} changed: check the line upstream a75e7ae removed")
    helper.write_text(source.replace(REMOVED_UPSTREAM, ""))
    weights = package / "weights" / "facelib"
    weights.mkdir(parents=True)
    for name in ("detection_mobilenet0.25_Final.pth", "parsing_parsenet.pth"):
        shutil.copy(helper_weights / name, weights / name)
    return folder


def random_weights(family: str, folder: Path) -> Path:
    """A seeded random ``family`` network (GFPGAN or RestoreFormer) of its official shapes, saved as its release
    saves it: what the half-precision benchmark and the GPU kit measure without trained weights."""
    import torch

    torch.manual_seed(0)
    if family == "GFPGAN":
        from spandrel.architectures.GFPGAN import GFPGAN

        network = GFPGAN()  # the defaults are GFPGANv1.4's (GFPGANer's arch="clean", channel_multiplier=2)
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if name.endswith("weight") and parameter.numel() == 1:  # a noise injection's strength
                    parameter.fill_(NOISE_STRENGTH)
    else:
        from spandrel.architectures.RestoreFormer import RestoreFormer

        network = RestoreFormer()  # the defaults are those GFPGANer's arch="RestoreFormer" builds
    path = folder / f"{family}.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path
