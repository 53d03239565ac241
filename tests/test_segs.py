"""Impact Pack SEGS and core ComfyUI boxes: faces restored exactly inside the given regions.

SEGS are built as Impact Pack builds them (its published SEG structure), and pasted by a
stand-in written from SEGSPaste's published behaviour: each SEG's ``cropped_image`` blended
into the image through its (feathered) ``cropped_mask`` at ``crop_region``, in list order.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.scenes import crowd_rgb
from codeformer_nodes import RestoreOptions, restore_faces
from codeformer_nodes.models.restorers import CODEFORMER_KIND
from codeformer_nodes.nodes.codeformer import CodeFormerRestoreFaces
from codeformer_nodes.nodes.segs import CodeFormerFacesToSEGS, CodeFormerRestoreSEGS
from codeformer_nodes.pipeline.segs import restore_segs

from . import comfy_stand_ins
from .conftest import TESTDATA
from .test_nodes import InvertingNetwork, restore_inputs

DETECTOR = "retinaface_mobile0.25"
# Impact Pack's SEG, as its detectors build it.
ImpactSEG = namedtuple(
    "SEG", ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label", "control_net_wrapper"],
    defaults=[None],
)  # fmt: skip


def segs_paste(image: torch.Tensor, segs: tuple, feather: int = 0, alpha: int = 255) -> torch.Tensor:
    """SEGSPaste's published behaviour, for a one-image batch."""
    import cv2

    result = image.clone()
    for seg in segs[1]:
        mask = np.asarray(seg.cropped_mask, dtype=np.float32)
        if feather:
            mask = cv2.GaussianBlur(mask, (feather * 2 + 1, feather * 2 + 1), 0)
        mask = torch.from_numpy(mask)[..., None] * (alpha / 255)
        x1, y1, x2, y2 = seg.crop_region
        crop = torch.as_tensor(seg.cropped_image)[0]
        result[0, y1:y2, x1:x2] = mask * crop + (1 - mask) * result[0, y1:y2, x1:x2]
    return result


@pytest.fixture
def comfy(monkeypatch, tmp_path, helper_weights):
    comfy_stand_ins.install(monkeypatch, tmp_path / "models")
    (tmp_path / "models" / "facedetection").mkdir(parents=True)
    for helper in helper_weights.iterdir():  # the detector and a parser
        (tmp_path / "models" / "facedetection" / helper.name).symlink_to(helper)


@pytest.fixture
def stand_in_model():
    import comfy.model_patcher

    from codeformer_nodes.models import Precision
    from codeformer_nodes.nodes import host

    network = InvertingNetwork()
    patcher = comfy.model_patcher.ModelPatcher(network, torch.device("cpu"), torch.device("cpu"))
    return host.CodeFormerModel(patcher=patcher, kind=CODEFORMER_KIND, task="restoration", precision=Precision())


def as_image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb / np.float32(255))[None]


@pytest.mark.parametrize(
    ("scene", "flow"), [("group_four", "codeformer"), ("crowd", "facexlib"), ("crowd", "codeformer")]
)
def test_segs_round_trip_equals_the_restore_node(comfy, stand_in_model, scene, flow):
    """SEGS work at the image's own size. Where CodeFormer's flow enlarges the image first (the crowd
    is 680x460), the restore node pastes in the enlarged image and SEGS cannot: there the two differ
    at the faces' edges, and the bound is a PSNR."""
    rgb = (
        crowd_rgb() if scene == "crowd" else np.array(Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB"))
    )
    image = as_image(rgb)
    restored, _, _, _, faces, _, count = CodeFormerRestoreFaces().restore(
        image, stand_in_model, **restore_inputs(flow=flow)
    )
    (segs,) = CodeFormerFacesToSEGS().convert(image, faces)
    assert len(segs[1]) == count == (8 if scene == "crowd" else 4) and segs[0] == tuple(image.shape[1:3])
    assert all(seg.label == "face" and seg.cropped_image.shape[0] == 1 for seg in segs[1])
    (fixed,) = CodeFormerRestoreSEGS().restore(image, segs, stand_in_model, 0.5, DETECTOR, 640, 0.97, flow=flow)
    pasted = segs_paste(image, fixed)
    assert not torch.equal(pasted, image)
    if scene == "crowd" and flow == "codeformer":
        mse = float(((pasted - restored).double() ** 2).mean())
        print(f"SEGS of an enlarged image: {10 * np.log10(1 / mse):.1f} dB against the restore node")
        assert 10 * np.log10(1 / mse) >= 35
        return
    assert (pasted - restored).abs().max() <= 1 / 255, "SEGSPaste of restored SEGS gives the restore node's image"


def impact_like_segs(image: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> tuple:
    """SEGS as an Impact Pack bbox detector makes them: crop region = box grown 1.5x, mask = the box."""
    height, width = image.shape[1:3]
    segs = []
    for x1, y1, x2, y2 in boxes:
        grow_x, grow_y = (x2 - x1) // 4, (y2 - y1) // 4
        region = [max(x1 - grow_x, 0), max(y1 - grow_y, 0), min(x2 + grow_x, width), min(y2 + grow_y, height)]
        mask = np.zeros((region[3] - region[1], region[2] - region[0]), np.float32)
        mask[y1 - region[1] : y2 - region[1], x1 - region[0] : x2 - region[0]] = 1.0
        crop = image[:, region[1] : region[3], region[0] : region[2], :].clone()
        segs.append(ImpactSEG(crop, mask, 0.9, region, [x1, y1, x2, y2], "face"))
    return ((height, width), segs)


def test_impact_segs_restore_only_their_faces_and_a_faceless_seg_is_unchanged(comfy):
    image = as_image(np.array(Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB")))
    face_box, background_box = (408, 84, 537, 256), (1050, 400, 1150, 500)
    segs = impact_like_segs(image, [face_box, background_box])
    options = RestoreOptions(detector=DETECTOR, weights_dir=TESTDATA / "weights", parse_mask=False)
    fixed = restore_segs(image, segs, InvertingNetwork(), options)
    assert type(fixed[1][0]) is ImpactSEG, "the caller's SEG type is kept"
    assert torch.equal(fixed[1][1].cropped_image, segs[1][1].cropped_image), "no face: unchanged"
    assert not torch.equal(fixed[1][0].cropped_image, segs[1][0].cropped_image)
    feather = 5
    pasted = segs_paste(image, fixed, feather=feather)
    changed = ((pasted - image).abs() > 1e-6).any(dim=3)[0]  # blending a crop with itself moves an ulp at most
    rows, cols = changed.nonzero(as_tuple=True)
    x1, y1, x2, y2 = (face_box[0] - feather, face_box[1] - feather, face_box[2] + feather, face_box[3] + feather)
    assert x1 <= cols.min() and cols.max() < x2 and y1 <= rows.min() and rows.max() < y2, "only inside the SEG's mask"
    assert restore_segs(image, ((645, 1204), []), InvertingNetwork(), options) == ((645, 1204), [])


@pytest.mark.parametrize(
    "boxes",
    [
        {"x": 400, "y": 80, "width": 140, "height": 180},  # BOUNDING_BOX
        [{"x": 400, "y": 80, "width": 140, "height": 180}],  # BOUNDING_BOXES
        [[[400, 80, 540, 260]]],  # one list per image
        [400, 80, 540, 260],  # a plain [x1, y1, x2, y2]
    ],
)
def test_boxes_restrict_restoration_to_the_faces_inside_them(boxes):
    weights = TESTDATA / "weights"
    if not weights.exists():
        pytest.skip(f"{weights} is absent")
    image = as_image(np.array(Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB")))
    options = RestoreOptions(detector=DETECTOR, weights_dir=weights, parse_mask=False)
    everything = restore_faces(image, InvertingNetwork(), options)
    inside = restore_faces(image, InvertingNetwork(), options, regions=boxes)
    assert len(everything.faces) == 4 and len(inside.faces) == 1
    assert inside.faces[0].landmarks == everything.faces[1].landmarks, "landmarks from our detector, as without boxes"
    outside = inside.masks[0] == 0
    assert torch.equal(inside.images[0][outside], image[0][outside])
    assert restore_faces(image, InvertingNetwork(), options, regions=[]).faces == [], "no box: no face, no error"


def test_a_face_too_small_for_the_whole_image_is_found_in_its_box():
    weights = TESTDATA / "weights"
    if not weights.exists():
        pytest.skip(f"{weights} is absent")
    photo = Image.open(TESTDATA / "photos" / "group_four.png").convert("RGB").crop((380, 50, 560, 290)).resize((36, 48))
    canvas = np.full((2400, 4000, 3), 90, np.uint8)
    canvas[1000:1048, 3000:3036] = np.array(photo)
    options = RestoreOptions(detector=DETECTOR, weights_dir=weights, parse_mask=False)
    assert restore_faces([canvas], InvertingNetwork(), options).faces == []
    found = restore_faces([canvas], InvertingNetwork(), options, regions=[[2990, 990, 3046, 1058]]).faces
    assert len(found) == 1 and found[0].box[0] >= 2990 and found[0].box[2] <= 3046


def test_bad_boxes_are_named():
    with pytest.raises(ValueError, match="x2 < x1"):
        restore_faces(torch.zeros(1, 8, 8, 3), InvertingNetwork(), RestoreOptions(), regions=[[5, 5, 1, 1]])
    with pytest.raises(ValueError, match="numbers x, y, width, height"):
        restore_faces(torch.zeros(1, 8, 8, 3), InvertingNetwork(), RestoreOptions(), regions={"x": 1})
