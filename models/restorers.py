"""Face restorers other than CodeFormer (GFPGAN, RestoreFormer), built by spandrel behind CodeFormer's call.

Each family declares what it takes (:class:`RestorerKind`): only CodeFormer has a fidelity
input. The others are called as GFPGAN's own inference (``GFPGANer.enhance``) calls them:
the aligned face in [-1, 1], the first output clamped and rounded to 8-bit levels
(``tensor2img``). ``GFPGANer.enhance`` also passes its ``weight`` argument, which every
network it builds swallows unread (``**kwargs``): passing CodeFormer's ``w`` on would change
nothing at best and, in packs whose networks lack ``**kwargs``, fails. It is never passed on.

GFPGAN 1.2-1.4 (the clean StyleGAN2 decoder) adds noise after each style convolution, drawn
afresh on every call by ``GFPGANer.enhance``, so no two official runs agree. Here the decoder
uses the noise stored in the weights file (``randomize_noise=False``, the StyleGAN2 convention
for repeatable output): the same for every face, batch position, device and run.

RestoreFormer loads from GFPGAN's release layout (``RestoreFormer.pth``) and from the original
checkpoints, whose network sits under ``vqvae.``; RestoreFormer++ is refused by name (spandrel
builds only RestoreFormer's one-scale decoder).

Precision: a family runs in a whole-network half mode only where that mode kept >= 40 dB
against fp32 (:data:`HALF_MODES_MEASURED`); the ``mixed-*`` modes keep CodeFormer's codes in
float32, and these families have no codes to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from .choices import RESTORATION
from .cpu_memory import keep_freed_cpu_memory
from .errors import StateDictMismatchError, UnsupportedModelError
from .precision import FLOAT32, Precision
from .upsamplers import SPANDREL_INSTALL

if TYPE_CHECKING:
    from .checkpoint import StateDict


@dataclass(frozen=True)
class RestorerKind:
    """What a face-restoration family takes, so callers offer and pass it only that.

    Attributes:
        architecture: the family's name ("CodeFormer", "GFPGAN", "RestoreFormer").
        accepts_fidelity: takes CodeFormer's fidelity ``w`` (and AdaIN); the others have no
            such input, and a front end ignores its fidelity setting for them.
        network_call: keyword arguments of the official inference's call besides the face.
        half_modes: the whole-network half modes (``bf16``, ``fp16``) it runs in besides fp32; ``auto``
            takes ``bf16`` from them where the device computes bfloat16 natively.
    """

    architecture: str
    accepts_fidelity: bool
    network_call: dict[str, Any] = field(default_factory=dict)
    half_modes: tuple[str, ...] = ()


# Whole-network half modes against fp32: the lowest PSNR of the restored 8-bit faces (the bar is 40 dB) of
# `benchmarks/bench_restorers.py` (random weights of the official shapes, the 4 aligned faces of group_four.png;
# each op in float32, its result rounded to half, as a GPU's half kernels compute: an AVX2 CPU emulates half
# ~100x slower than fp32; BENCHMARKS.md). Each refusal says why; the rest run.
HALF_MODES_MEASURED = {
    ("GFPGAN", "bf16"): "it kept 50.6 dB against fp32",
    ("GFPGAN", "fp16"): (
        "it kept 60.1 dB with random weights, but trained GFPGAN weights give broken faces in float16 (GFPGAN issue "
        "#50: its author traces it to the style-code normalisation, rsqrt(mean(x**2) + 1e-8); spandrel marks "
        "GFPGAN unsupported in float16), which random weights do not show"
    ),
    ("RestoreFormer", "bf16"): "it kept only 34.7 dB against fp32 (the bar is 40 dB)",
    ("RestoreFormer", "fp16"): "it kept only 39.5 dB against fp32 (the bar is 40 dB)",
}
WHOLE_NETWORK_MODES = {"bf16": Precision(torch.bfloat16), "fp16": Precision(torch.float16)}


@runtime_checkable
class LoadedRestorer(Protocol):
    """What every loaded face restorer says of itself (``LoadedCodeFormer``, ``SpandrelFaceRestorer``, the
    onnxruntime network): its family, what its weights do and the file they came from."""

    kind: RestorerKind
    task: str
    source: Path


CODEFORMER_KIND = RestorerKind("CodeFormer", accepts_fidelity=True)
# By spandrel architecture id. GFPGAN: no intermediate RGB outputs (as GFPGANer asks), stored noise.
SPANDREL_KINDS = {
    "GFPGAN": RestorerKind("GFPGAN", False, {"return_rgb": False, "randomize_noise": False}, half_modes=("bf16",)),
    "RestoreFormer": RestorerKind("RestoreFormer", False),
}

# Keys every GFPGAN 1.2-1.4 file holds (spandrel recognises GFPGAN by them).
GFPGAN_KEYS = ("toRGB.0.weight", "stylegan_decoder.style_mlp.1.weight")
# Keys every RestoreFormer (and RestoreFormer++) network holds, in GFPGAN's release layout (RestoreFormer.pth).
RESTOREFORMER_KEYS = (
    "quantize.embedding.weight",
    "encoder.conv_in.weight",
    "quant_conv.weight",
    "decoder.conv_out.weight",
)
# The original RestoreFormer and RestoreFormer++ checkpoints (PyTorch Lightning, under "state_dict") hold the
# network under this attribute, beside training-only modules; their own inference strips it and loads non-strictly.
TRAINING_WRAPPER_PREFIX = "vqvae."

# What the pipeline's common call passes as w and adain to a network without a fidelity input: never read.
IgnoredFidelity = Tensor | float | None
IgnoredAdain = bool | None


class SpandrelFaceRestorer(torch.nn.Module):
    """A spandrel-built face restorer with CodeFormer's call (``RestorationNetwork``).

    ``w`` and ``adain`` are accepted because the pipeline calls every network alike; they are
    ignored (the type says so), never passed on. The output is rounded to 8-bit levels, as the
    family's own inference rounds it before pasting.
    """

    generator_dtype: ClassVar[torch.dtype | None] = None  # one dtype throughout: mixed modes are CodeFormer's
    task: ClassVar[str] = RESTORATION  # these families publish no colorization or inpainting weights

    def __init__(self, network: torch.nn.Module, kind: RestorerKind, source: Path, sha256: str) -> None:
        super().__init__()
        self.network = network
        self.kind = kind
        self.source = source
        self.sha256 = sha256

    def forward(self, x: Tensor, *, w: IgnoredFidelity = None, adain: IgnoredAdain = None) -> tuple[Tensor]:
        """(B, 3, 512, 512) faces in [-1, 1] -> a 1-tuple of restored faces in [-1, 1] on 8-bit levels."""
        with keep_freed_cpu_memory(x.device):  # contiguous, as the official tensor: GFPGAN views its features flat
            out = self.network(x.contiguous(), **self.kind.network_call)[0]
        levels = ((out.float().clamp(-1, 1) + 1) / 2 * 255).round()  # as basicsr's tensor2img(min_max=(-1, 1))
        return (levels / 255 * 2 - 1,)


def restorer_precision(
    kind: RestorerKind, asked: str | Precision, device_precision: Precision = FLOAT32, source: Path | None = None
) -> Precision:
    """The precision a spandrel family runs in when ``asked`` for one: fp32, or a half mode it keeps >= 40 dB in.

    ``device_precision`` is what ``asked`` means for CodeFormer on the device (:func:`choose_precision`, which
    has already refused modes the device crawls through): ``auto`` takes the family's ``bf16`` only where it
    picked bfloat16 there (native hardware), else fp32. ``source``, the weights file, is named in a refusal.
    """
    if asked == "auto":
        native_bfloat16 = torch.bfloat16 in (device_precision.dtype, device_precision.generator_dtype)
        return WHOLE_NETWORK_MODES["bf16"] if native_bfloat16 and "bf16" in kind.half_modes else FLOAT32
    if asked == "fp32" or asked == FLOAT32:
        return FLOAT32
    offered = ", ".join(("auto", "fp32", *kind.half_modes))
    family = kind.architecture if source is None else f"{kind.architecture} ({source})"
    if isinstance(asked, str) and asked.startswith("mixed-"):
        raise ValueError(
            f"{family} takes no {asked}: the mixed modes keep CodeFormer's codes in float32, and "
            f"{kind.architecture} has no codes; use {offered}"
        )
    name = asked if isinstance(asked, str) else next((n for n, p in WHOLE_NETWORK_MODES.items() if p == asked), None)
    if name in kind.half_modes:
        return WHOLE_NETWORK_MODES[name]
    why = HALF_MODES_MEASURED.get((kind.architecture, name), "it is not measured against fp32")
    raise ValueError(f"{family} does not run in {name or asked}: {why}; use {offered}")


def build_spandrel_restorer(
    state_dict: StateDict, path: Path, sha256: str, precision: str | Precision, device_precision: Precision = FLOAT32
) -> SpandrelFaceRestorer:
    """A face restorer from a state dict spandrel recognises as one (purpose FaceSR), in eval mode on the CPU, in
    what :func:`restorer_precision` gives for ``precision``."""
    spandrel = _import_spandrel()
    state_dict = restoreformer_network(state_dict, path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as error:
        from .checkpoint import guess_architecture

        raise UnsupportedModelError(
            f"{path} is neither CodeFormer nor a face restorer spandrel knows (GFPGAN, RestoreFormer): "
            f"{guess_architecture(state_dict)}. Pick a face-restoration file (e.g. codeformer.pth, GFPGANv1.4.pth)."
        ) from error
    except RuntimeError as error:  # recognised by its keys, but load_state_dict found others missing or mis-shaped
        raise StateDictMismatchError(
            f"{path} has keys spandrel recognises, but does not fit that network "
            f"({str(error).strip().splitlines()[0]}); of GFPGAN, only 1.2-1.4 (the clean architecture) loads, "
            "of RestoreFormer, the first (RestoreFormer.pth)."
        ) from error
    architecture = descriptor.architecture.id
    if descriptor.purpose != "FaceSR":
        raise UnsupportedModelError(
            f"{path} holds a {descriptor.architecture.name} model for {descriptor.purpose}, not face restoration; "
            "give it as an upscaler, or pick a face-restoration file (e.g. codeformer.pth, GFPGANv1.4.pth)"
        )
    if architecture not in SPANDREL_KINDS:
        raise UnsupportedModelError(
            f"{path} holds a {descriptor.architecture.name} face restorer, whose official inference is not "
            f"reproduced here; supported: CodeFormer, {', '.join(SPANDREL_KINDS)}"
        )
    kind = SPANDREL_KINDS[architecture]
    network = descriptor.model.to(restorer_precision(kind, precision, device_precision, path).dtype)
    return SpandrelFaceRestorer(network, kind, path, sha256).requires_grad_(False).eval()


def restoreformer_network(state_dict: StateDict, path: Path) -> StateDict:
    """The state dict spandrel should see: an original RestoreFormer checkpoint's ``vqvae.`` network without
    that prefix (its losses and discriminators dropped, as its own non-strict load ignores them), anything
    else unchanged; RestoreFormer++ refused by name, since spandrel would build it as RestoreFormer and fail.
    """
    network = {
        key.removeprefix(TRAINING_WRAPPER_PREFIX): value
        for key, value in state_dict.items()
        if key.startswith(TRAINING_WRAPPER_PREFIX)
    }
    if not all(key in network for key in RESTOREFORMER_KEYS):
        network = state_dict
    if not all(key in network for key in RESTOREFORMER_KEYS):
        return state_dict
    attending = _decoder_attention_levels(network)
    if len(attending) > 1:
        levels = ", ".join(f"decoder.up.{level}.attn" for level in attending)
        raise UnsupportedModelError(
            f"{path} is a RestoreFormer++ model (its decoder attends at {len(attending)} scales: {levels}), which "
            "spandrel does not build (it knows RestoreFormer, whose decoder attends at one), so its official "
            "inference is not reproduced here; use RestoreFormer.pth or GFPGANv1.4.pth"
        )
    return network


def _decoder_attention_levels(network: StateDict) -> list[str]:
    """The decoder levels with attention blocks (``decoder.up.<level>.attn.*``): RestoreFormer's decoder attends
    to the encoder at one scale (16x16), RestoreFormer++'s at several."""
    levels = set()
    for key in network:
        parts = key.split(".")
        if parts[:2] == ["decoder", "up"] and parts[3:4] == ["attn"]:
            levels.add(parts[2])
    return sorted(levels)


def _import_spandrel() -> Any:
    try:
        import spandrel
    except ImportError as error:
        raise ImportError(
            f"face restorers other than CodeFormer (GFPGAN, RestoreFormer) load through spandrel, which is not "
            f"installed: {SPANDREL_INSTALL}"
        ) from error
    return spandrel
