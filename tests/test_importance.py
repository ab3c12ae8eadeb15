"""Importance maps for ROI coding (helpers.codec.importance): leaf and lesion masks, block maps, "auto", users'
mask files. Synthetic images with known answers, and real PlantVillage leaves where the data is there."""

from __future__ import annotations

import time

import numpy as np
import pytest
from codec_samples import leaf_paths, synthetic_leaf
from PIL import Image

from helpers.codec import importance
from helpers.codec.errors import DataError
from helpers.codec.imageio import read_image
from helpers.codec.importance import (
    BLOCK,
    LEAF_WEIGHT,
    ROI_KINDS,
    block_map,
    importance_map,
    leaf_mask,
    lesion_mask,
    map_shape,
    read_mask,
)

GREY, GREEN, BROWN = (128, 126, 132), (62, 128, 48), (112, 78, 42)


def _disc(height: int, width: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _picture(height: int, width: int, regions, background=GREY, seed: int = 0) -> np.ndarray:
    """uint8 RGB: ``background`` with each (mask, colour) of ``regions`` painted in turn, plus a little noise."""
    img = np.empty((height, width, 3), np.float64)
    img[...] = background
    for mask, colour in regions:
        img[mask] = colour
    img += np.random.default_rng(seed).normal(0, 2, img.shape)
    return img.clip(0, 255).round().astype(np.uint8)


def _expected_blocks(mask: np.ndarray) -> np.ndarray:
    """1 on every 16 x 16 block holding any pixel of ``mask``, padded as the map is (nearest block)."""
    return block_map(mask, *map_shape(*mask.shape))


def test_a_green_disc_on_grey_is_leaf_on_exactly_its_blocks():
    disc = _disc(256, 256, (120, 136), 70)
    img = _picture(256, 256, [(disc, GREEN)])
    assert (leaf_mask(img) == disc).mean() > 0.995
    leaf = importance_map(img, "leaf")
    assert leaf.dtype == np.float32 and leaf.shape == (16, 16)
    np.testing.assert_array_equal(leaf, _expected_blocks(disc))
    # Healthy: "auto" is the leaf map, and "lesion" marks no block as a lesion.
    np.testing.assert_array_equal(importance_map(img, "auto"), leaf)
    np.testing.assert_array_equal(importance_map(img, "lesion"), LEAF_WEIGHT * leaf)


def test_brown_spots_inside_the_leaf_are_lesion_blocks():
    disc = _disc(256, 256, (128, 128), 70)
    centres = [(104, 104), (136, 136), (152, 104), (104, 152), (168, 152)]  # each inside one 16 x 16 block
    spots = np.zeros_like(disc)
    for c in centres:
        spots |= _disc(256, 256, c, 6)
    img = _picture(256, 256, [(disc, GREEN), (spots, BROWN)])
    leaf = leaf_mask(img)
    assert leaf[spots].all(), "lesions inside the leaf are leaf"
    lesion = lesion_mask(img, leaf)
    assert not (lesion & ~leaf).any()
    assert lesion[spots].mean() > 0.8 and lesion[disc & ~spots].mean() < 0.01
    expected = LEAF_WEIGHT * _expected_blocks(disc)
    for r, c in centres:
        expected[r // BLOCK, c // BLOCK] = 1
    np.testing.assert_allclose(importance_map(img, "lesion"), expected)
    np.testing.assert_allclose(importance_map(img, "auto"), expected)
    np.testing.assert_array_equal(importance_map(img, "leaf"), _expected_blocks(disc))


def test_a_brown_margin_is_leaf_on_a_plain_backdrop_but_soil_is_not_in_a_field():
    # A leaf whose right part is necrotic, on grey fabric: all of it is leaf, the brown part a lesion.
    disc = _disc(256, 256, (128, 128), 90)
    brown = disc & (np.mgrid[:256, :256][1] > 150)
    lab = _picture(256, 256, [(disc, GREEN), (brown, BROWN)])
    assert leaf_mask(lab)[disc].mean() > 0.99
    assert lesion_mask(lab, leaf_mask(lab))[brown].mean() > 0.8
    # The same green next to brown soil under a blue sky (not a plain backdrop): the soil stays out.
    rows = np.mgrid[:256, :256][0]
    sky, soil = rows < 80, rows >= 180
    bush = _disc(256, 256, (150, 100), 60) & ~sky
    regions = [(sky, (110, 150, 215)), (soil, (140, 105, 70)), (bush, GREEN)]
    field = _picture(256, 256, regions, background=(150, 150, 150))
    found = leaf_mask(field)
    assert found[bush].mean() > 0.99 and found[soil & ~bush].mean() < 0.01 and found[sky].mean() == 0


def test_in_a_scene_tinted_clouds_and_sea_are_not_vegetation_and_only_small_holes_are_filled():
    rows, cols = np.mgrid[:256, :256]
    clouds, sea = rows < 70, rows >= 190  # under a yellow-green cast: saturation ~0.22
    trees = ~clouds & ~sea
    house = (rows >= 100) & (rows < 170) & (cols >= 90) & (cols < 170)  # 7 % of the image, enclosed by trees
    gap = (rows >= 120) & (rows < 126) & (cols >= 30) & (cols < 36)  # a dark gap between the leaves
    img = _picture(256, 256, [(clouds, (190, 205, 160)), (sea, (62, 82, 70)), (trees, (70, 120, 40)),
                              (house, (170, 60, 50)), (gap, (30, 30, 30))])  # fmt: skip
    found = leaf_mask(img)
    assert not found[(rows < 68) | (rows >= 192)].any()  # (the outline may move by a pixel)
    assert found[trees & ~house].all() and not found[house].any()


def test_an_image_without_green_is_coded_uniformly_by_auto():
    rows, cols = np.mgrid[:200, :300]
    img = _picture(200, 300, [(rows < 90, (90, 130, 210)), ((rows > 120) & (cols < 150), (180, 40, 40)),
                              ((rows > 120) & (cols >= 150), (150, 120, 80))])  # fmt: skip
    assert not leaf_mask(img).any()
    np.testing.assert_array_equal(importance_map(img, "auto"), np.ones(map_shape(200, 300), np.float32))
    assert not importance_map(img, "leaf").any() and not importance_map(img, "lesion").any()
    # A speck of green (under MIN_LEAF_SHARE of the image) does not make it a leaf photo either.
    speck = _picture(200, 300, [(_disc(200, 300, (100, 150), 4), GREEN)])
    assert (importance_map(speck, "auto") == 1).all()


@pytest.mark.parametrize("height, width", [(257, 130), (64, 64), (1, 1), (17, 1000), (700, 1100)])
def test_every_kind_has_the_codecs_latent_shape(height, width):
    disc = _disc(height, width, (height // 2, width // 2), min(height, width) / 3)
    img = _picture(height, width, [(disc, GREEN)])
    shape = (-(-height // 64) * 4, -(-width // 64) * 4)
    assert map_shape(height, width) == shape
    for kind in ROI_KINDS:
        m = importance_map(img, kind)
        assert m.shape == shape and m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1, kind


def test_blocks_in_the_padding_take_the_nearest_blocks_value():
    # 100 x 70 pixels: blocks 0..6 x 0..4 hold pixels, the map is 8 x 8.
    mask = np.zeros((100, 70), bool)
    mask[99, 0] = True  # one pixel in the last (partial) block row, first column
    mask[40, 69] = True  # one pixel in the last (partial) block column
    m = block_map(mask, 8, 8)
    assert m.shape == (8, 8)
    assert m[6, 0] == 1 and m[7, 0] == 1  # its padding neighbour below
    assert (m[2, 4:] == 1).all()  # and those to its right
    assert m.sum() == 2 + 4  # nothing else (the corner blocks (7, 4..7) copy block (6, 4): empty)
    with pytest.raises(ValueError):
        block_map(mask, 6, 8)  # fewer rows than the mask has blocks


def test_block_map_takes_the_largest_value_so_a_sliver_of_leaf_counts():
    mask = np.zeros((32, 48), np.float32)
    mask[15, 15] = 1.0  # a single pixel in block (0, 0)
    mask[16:32, 32:48] = 0.25  # a soft mask over block (1, 2)
    m = block_map(mask, 4, 4)
    assert m[0, 0] == 1 and m[1, 2] == 0.25 and m[0, 1] == 0 and m[1, 3] == 0.25  # column 3: padding


def test_a_large_image_is_mapped_from_its_reduced_work_image_to_the_same_blocks():
    """1536 x 1024 pixels are decided on a work image reduced 4x; a leaf on the block grid keeps exactly its blocks."""
    square = np.zeros((1024, 1536), bool)
    square[256:768, 512:1024] = True
    img = _picture(1024, 1536, [(square, GREEN)])
    np.testing.assert_array_equal(importance_map(img, "leaf"), _expected_blocks(square))


def test_the_synthetic_test_leaf_is_found():
    img = synthetic_leaf(3, 256)
    leaf = leaf_mask(img)
    # The card's background is (0.55, 0.55, 0.5) x 255, with noise of 0.02 x 255.
    truth = np.abs(img.astype(int) - (140, 140, 128)).sum(-1) > 40
    assert (leaf == truth).mean() > 0.97
    assert importance.auto_kind(leaf, lesion_mask(img, leaf)) == "leaf"


def test_twelve_megapixels_take_well_under_a_second():
    big = np.asarray(Image.fromarray(synthetic_leaf(1, 256)).resize((4000, 3000), Image.BILINEAR))
    importance_map(big[:64, :64], "auto")  # warm up
    start = time.perf_counter()
    m = importance_map(big, "auto")
    assert time.perf_counter() - start < 1.5  # measured ~0.1 s on one core
    assert m.shape == (188, 252) and 0.2 < (m > 0).mean() < 0.8


def test_unknown_kinds_and_bad_images_are_refused():
    img = _picture(32, 32, [])
    with pytest.raises(ValueError, match="unknown"):
        importance_map(img, "leaves")
    with pytest.raises(ValueError):
        importance_map(img.astype(np.float32), "leaf")
    with pytest.raises(ValueError):
        lesion_mask(img, np.zeros((16, 16), bool))


def test_read_mask_gives_the_block_map_of_the_luminance(tmp_path):
    pixels = np.zeros((48, 40), np.uint8)
    pixels[0:10, 0:10] = 255
    pixels[20, 35] = 128
    Image.fromarray(pixels, "L").save(tmp_path / "grey.png")
    m = read_mask(tmp_path / "grey.png", 48, 40)
    assert m.dtype == np.float32 and m.shape == (4, 4)
    np.testing.assert_allclose(m, block_map(pixels / 255, 4, 4), atol=1e-6)
    # RGB(A): luminance, alpha ignored (a transparent white pixel is white).
    rgba = np.zeros((48, 40, 4), np.uint8)
    rgba[..., :3][pixels == 255] = (255, 255, 255)
    rgba[20, 35] = (0, 255, 0, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    m = read_mask(tmp_path / "rgba.png", 48, 40)
    assert m[0, 0] == 1 and m[1, 2] == pytest.approx(150 / 255, abs=1 / 255) and m[2, 2] == 0


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_read_mask_refuses_another_size_or_an_unreadable_file_in_one_line(tmp_path):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError) as exc:
        read_mask(tmp_path / "small.png", 48, 64)
    text = _one_line(exc)
    assert "40x30" in text and "64x48" in text and "small.png" in text
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError) as exc:
        read_mask(tmp_path / "junk.png", 48, 64)
    assert _one_line(exc).startswith("ROI mask") and "junk.png" in str(exc.value)
    with pytest.raises(DataError) as exc:
        read_mask(tmp_path / "missing.png", 48, 64)
    assert "missing.png" in _one_line(exc)


def test_real_leaves_are_found_and_healthy_ones_are_coded_as_leaves():
    """PlantVillage test leaves spread over the classes (skipped without the data): a leaf in the middle of the
    backdrop, not the backdrop; healthy leaves with (almost) no lesions, which "auto" codes as leaves; diseased
    ones with more."""
    healthy, diseased = [], []
    for path in leaf_paths(12):
        img = read_image(path)
        leaf, lesion = importance.masks(img)
        ring = np.ones(leaf.shape, bool)
        ring[8:-8, 8:-8] = False
        assert 0.1 < leaf.mean() < 0.8 and leaf[ring].mean() < 0.1, path.name
        share = lesion.sum() / leaf.sum()
        (healthy if "healthy" in path.parent.name else diseased).append(share)
        if "healthy" in path.parent.name:
            assert share < importance.AUTO_LESION_SHARE, path.name
            assert importance.auto_kind(leaf, lesion) == "leaf", path.name
        m = importance_map(img, "auto")
        assert m.shape == (16, 16) and (m == 0).any() and (m > 0).any()
    assert healthy and diseased and np.mean(diseased) > 3 * np.mean(healthy) + 0.01
