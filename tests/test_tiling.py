"""Tiled transforms (helpers/codec/tiling.py): the fixed grids cover every latent once, the tiled analysis equals the
whole-image one, the tiled synthesis differs from it by float rounding only, and decoded images show no seams
along tile borders (issue 9, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codec_samples import leaves, psnr
from PIL import Image

from helpers import paths
from helpers.codec import tiling
from helpers.codec.container import parse
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.models import pad_to_stride, single_thread


@pytest.fixture(scope="module")
def codec():
    return LeafCodec()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A natural photo of 4x2 transform tiles and two coding tiles (1724x536); tiled leaves without photos."""
    path = paths.photos_dir() / "wikipedia" / "010.jpg"
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB"))
    return np.ascontiguousarray(np.tile(leaves(1)[0], (3, 7, 1))[:536, :1724])


@pytest.mark.parametrize("rows, cols, size, halo", [(4, 4, 32, 2), (36, 100, 32, 2), (64, 65, 64, 0)])
def test_the_grid_covers_every_latent_once(rows, cols, size, halo):
    count = np.zeros((rows, cols), int)
    for t in tiling.grid(rows, cols, size, halo):
        count[t.r0 : t.r1, t.c0 : t.c1] += 1
        assert (t.a0, t.b0) == (max(t.r0 - halo, 0), max(t.c0 - halo, 0))
        assert (t.a1, t.b1) == (min(t.r1 + halo, rows), min(t.c1 + halo, cols))
    assert (count == 1).all()


@pytest.mark.parametrize("height, width", [(256, 256), (64, 300), (1024, 512), (1100, 40)])
def test_side_parameters_in_parts_equal_the_whole_tiles(codec, height, width):
    """A one-tile image's hyper-synthesis runs in two halves on the workers; the coder sees the same means and
    scale indexes as from the whole tile, at one worker or two."""
    tiles = tiling.coding_tiles(height, width)
    parts = [tiling.parameter_parts(t, len(tiles)) for t in tiles]
    assert len(parts[0]) == (2 if len(tiles) == 1 and height >= 128 else 1)
    rows, cols = tiling.latent_size(height, width)
    z_hat = torch.randint(
        -3, 4, (1, codec.model.N, rows // tiling.Z_STRIDE, cols // tiling.Z_STRIDE)
    ).double()
    with single_thread(), torch.no_grad():
        whole = [codec.tile_codec.parameters(codec._tile_parameters(z_hat, t)) for t in tiles]
        for n in (1, 2):
            for (means, indexes), (params, ratios) in zip(whole, codec._parameters(z_hat, tiles, 1, None, n)):
                got_means, got_indexes = codec.tile_codec.parameters(params)
                assert torch.equal(got_means, means) and torch.equal(got_indexes, indexes) and ratios is None


def test_tiled_analysis_equals_the_whole_image_one(codec, photo):
    """The halo (32 pixels) covers g_a's receptive field (+-30): every latent sees exactly the same pixels."""
    rgb = np.ascontiguousarray(photo[:600, :1100])
    with single_thread(), torch.no_grad():
        tiled = tiling.analyse(codec.g_a, rgb, codec.model.M, 2)
        x = pad_to_stride(torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255))
        whole = codec.model.g_a(x)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-4


def test_tiled_synthesis_differs_from_the_whole_image_one_by_rounding_only(codec, photo):
    data = codec.encode(photo, 4)
    h = parse(data)
    with single_thread(), torch.no_grad():
        y_hat = codec._decode_latent(h, 1)
        whole = codec.model.synthesis(y_hat, h.level - 1)[0, :, : h.height, : h.width]
    whole = whole.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    tiled = codec.decode(data)
    diff = np.abs(tiled.astype(int) - whole)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def _border_mask(height: int, width: int, period: int, reach: int = 2) -> np.ndarray:
    """Pixels within ``reach`` of a tile border (multiples of ``period`` pixels) inside the image."""
    rows, cols = np.arange(height), np.arange(width)
    near_r = np.abs(((rows + period // 2) % period) - period // 2) < reach
    near_c = np.abs(((cols + period // 2) % period) - period // 2) < reach
    near_r[:reach], near_c[:reach] = False, False  # the image's own edges are not tile borders
    return near_r[:, None] | near_c[None, :]


@pytest.mark.parametrize("level", [1, 4, 7])
def test_no_seams_along_tile_borders(codec, photo, level):
    """PSNR of the pixels along tile borders (transform tiles every 512 pixels, coding tiles every 1024) is no
    worse than elsewhere: tiles see the context they need, so borders are coded like any other pixel."""
    out = codec.decode(codec.encode(photo, level))
    err = (out.astype(np.float64) - photo) ** 2
    border = _border_mask(*photo.shape[:2], tiling.TRANSFORM_TILE * tiling.LATENT_STRIDE)
    assert border.sum() > 5000
    border_psnr = 10 * np.log10(255**2 / err[border].mean())
    interior_psnr = 10 * np.log10(255**2 / err[~border].mean())
    assert border_psnr > interior_psnr - 0.5, (border_psnr, interior_psnr)
    assert psnr(out, photo) > 20
