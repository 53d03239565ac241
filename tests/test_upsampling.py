"""The upsampler: Real-ESRGAN's way of running a super-resolution network (tiles, pads, rounding),
out-of-memory tile halving, and loading files by their keys."""

from __future__ import annotations

import pytest
import torch

from codeformer_nodes.models.errors import UnsupportedModelError
from codeformer_nodes.pipeline.upsampling import TiledUpsampler, load_upsampler


class Doubling(torch.nn.Module):
    """A local x2 network: each output pixel depends on a 3x3 neighbourhood of the input."""

    def __init__(self, fail_above: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.fail_above, self.sizes = fail_above, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if self.fail_above is not None and max(x.shape[-2:]) > self.fail_above:
            raise torch.OutOfMemoryError("stand-in: tile too large")
        return torch.nn.functional.interpolate(torch.sigmoid(self.conv(x)), scale_factor=2, mode="nearest")


def test_tiles_with_context_give_the_whole_image_result():
    # seeded: on some random images a convolution of another shape rounds one level the other way
    image = torch.rand(1, 97, 131, 3, generator=torch.Generator().manual_seed(0))
    whole = TiledUpsampler(Doubling(), 2, tile=0)(image)
    tiled = TiledUpsampler(Doubling(), 2, tile=40, tile_pad=4)(image)
    assert whole.shape == (1, 194, 262, 3)
    assert torch.equal(tiled, whole), "a tile's context covers the network's reach"
    assert torch.equal(whole * 255, (whole * 255).round()), "8-bit levels, as RealESRGANer returns"


def test_out_of_memory_halves_the_tile_and_gives_the_same_pixels():
    image = torch.rand(1, 120, 120, 3)
    network = Doubling(fail_above=100)
    result = TiledUpsampler(network, 2, tile=400, tile_pad=8)(image)
    assert torch.equal(result, TiledUpsampler(Doubling(), 2, tile=0)(image))
    assert max(max(size) for size in network.sizes[1:]) <= 100, "after the failure, smaller tiles"
    with pytest.raises(torch.OutOfMemoryError):
        TiledUpsampler(Doubling(fail_above=8), 2, tile=64)(image)


def test_odd_sizes_are_padded_for_x2_networks_and_cropped_back():
    network = Doubling()
    result = TiledUpsampler(network, 2, tile=0)(torch.rand(1, 31, 45, 3))
    assert network.sizes == [(32, 46)] and result.shape == (1, 62, 90, 3)


def test_files_load_by_their_keys_and_others_are_refused(tmp_path, recipe_checkpoint):
    pytest.importorskip("spandrel")
    from spandrel.architectures.ESRGAN import ESRGAN

    path = tmp_path / "any_name.pth"
    torch.save({"params_ema": ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()}, path)
    upsampler = load_upsampler(path, tile=64)
    assert upsampler.scale == 2 and upsampler(torch.rand(1, 20, 30, 3)).shape == (1, 40, 60, 3)
    with pytest.raises(UnsupportedModelError, match="no upsampler"):
        load_upsampler(recipe_checkpoint)
