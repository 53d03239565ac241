"""The official CodeFormer checkpoints and the other face restorers' files, fetched when first needed.

Pinned by the published size and SHA-256 of ``codeformer.pth`` and
``codeformer_inpainting.pth``. No figures are published for ``codeformer_colorization.pth``
(neither on the release page nor in the model lists of other tools), so it is checked by
its keys and shapes: it must be recognised as the colorization checkpoint.

``GFPGANv1.4.pth`` (TencentARC/GFPGAN, Apache-2.0; the release GFPGAN's inference fetches it
from): its release page gives no figures; these are the size and SHA-256 that independent
model lists and installers agree on.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .choices import COLORIZATION, INPAINTING, RESTORATION
from .downloads import PinnedFile
from .errors import UnsupportedModelError

_RELEASE = "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0"


def _check_task(task: str, path: Path) -> None:
    from .checkpoint import read_state_dict, recognise

    found = recognise(read_state_dict(path), path).task
    if found != task:
        raise UnsupportedModelError(f"{path} holds the CodeFormer {found} checkpoint, not the {task} one")


def _official(name: str, task: str, size: int | None, sha256: str | None) -> PinnedFile:
    return PinnedFile(name, f"{_RELEASE}/{name}", size, sha256, partial(_check_task, task))


OFFICIAL_CHECKPOINTS = {
    RESTORATION: _official(
        "codeformer.pth", RESTORATION, 376_637_898, "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7"
    ),
    COLORIZATION: _official("codeformer_colorization.pth", COLORIZATION, None, None),
    INPAINTING: _official(
        "codeformer_inpainting.pth", INPAINTING, 370_786_611,
        "b0d1b868c3dacf75d637bbcc0d4b3dd4ce2a064a338dfb4d35c740d3b4ae8797",
    ),
}  # fmt: skip
OFFICIAL_NAMES = {file.name: file for file in OFFICIAL_CHECKPOINTS.values()}


def _check_gfpgan(path: Path) -> None:
    from .checkpoint import read_state_dict
    from .restorers import GFPGAN_KEYS

    missing = [key for key in GFPGAN_KEYS if key not in read_state_dict(path)]
    if missing:
        raise UnsupportedModelError(f"{path} is not GFPGAN v1.4: it lacks {', '.join(missing)}")


GFPGAN_V1_4 = PinnedFile(
    "GFPGANv1.4.pth",
    "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
    348_632_874,
    "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    _check_gfpgan,
)
# What ``load_face_restorer`` and the loader node fetch by bare name, besides the CodeFormer checkpoints.
FACE_RESTORER_NAMES = {**OFFICIAL_NAMES, GFPGAN_V1_4.name: GFPGAN_V1_4}
