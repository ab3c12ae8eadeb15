"""The visual section's measurements: edge fidelity, matched-rate selection, the leaf mask and crop, and the
bit-allocation map against the real file's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codec_samples import leaves, synthetic_leaf
from PIL import Image, ImageFilter

from helpers.codec.container import parse
from helpers.codec.leaf_codec import LeafCodec
from helpers.measures.metrics import edge_fidelity, hf_fidelity, sobel_magnitude
from helpers.study import evaluate, visual_measures
from helpers.study.baselines import Codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blur(img: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


# ----- edge fidelity ----------------------------------------------------------------------------------------
def test_identical_images_have_perfect_edge_fidelity():
    img = synthetic_leaf(0)
    assert edge_fidelity(img, img) == {"edge_corr": 1.0, "edge_f1": 1.0, "edge_precision": 1.0,
                                       "edge_recall": 1.0}  # fmt: skip


def test_blur_loses_edges_and_more_blur_loses_more():
    img = synthetic_leaf(1)
    light, heavy = edge_fidelity(img, _blur(img, 1)), edge_fidelity(img, _blur(img, 2))
    assert heavy["edge_f1"] < light["edge_f1"] < 0.95
    assert heavy["edge_corr"] < light["edge_corr"] < 0.99
    # Blur weakens edges below the threshold: recall is what falls, not precision.
    assert heavy["edge_recall"] < 0.5 < heavy["edge_precision"]


def test_high_frequency_error_tells_smoothing_from_invented_detail():
    img = synthetic_leaf(2)
    assert hf_fidelity(img, img) == {"hf_error": 0.0, "hf_energy": 1.0, "hf_recovered": 1.0}
    smooth = hf_fidelity(img, _blur(img, 3))
    assert smooth["hf_energy"] < 0.2 and 0.8 < smooth["hf_error"] <= 1.05  # the band is lost: error ~1
    # Detail that is not in the original (noise on the smoothed image) scores worse than losing the band, and
    # light blur, which keeps most of the original's own detail, scores better.
    rng = np.random.default_rng(0)
    invented = np.clip(_blur(img, 3) + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    assert hf_fidelity(img, invented)["hf_error"] > 1.2 > smooth["hf_error"]
    # The invented part is not in step with the original: it adds energy, not recovered detail.
    assert hf_fidelity(img, invented)["hf_recovered"] < smooth["hf_recovered"] + 0.05 < 0.2
    assert hf_fidelity(img, _blur(img, 0.6))["hf_error"] < 0.5 * smooth["hf_error"]
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert np.isnan(hf_fidelity(flat, flat)["hf_error"])


def test_one_pixel_shift_is_within_the_tolerance_but_not_without_it():
    img = synthetic_leaf(2)
    shifted = np.roll(img, 1, axis=1)
    assert edge_fidelity(img, shifted)["edge_f1"] > 0.95
    assert edge_fidelity(img, shifted, tolerance=0)["edge_f1"] < 0.9


def test_sobel_magnitude_of_a_step():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 100
    mag = sobel_magnitude(img)
    assert mag[:, :3].max() == 0 and mag[:, 5:].max() == 0
    assert np.allclose(mag[:, 3:5], 4 * 100)  # Sobel's [1, 2, 1] x [-1, 0, 1] on a step of 100 grey levels


# ----- matched rates ------------------------------------------------------------------------------------------
def _sized_codec(sizes: dict) -> Codec:
    """A fake codec whose file at setting s has ``sizes[s]`` bytes and decodes to a grey image."""
    return Codec(
        "fake", tuple(sizes), lambda img, s: bytes(sizes[s]), lambda data: np.full((16, 16, 3), 128, np.uint8)
    )


def test_match_bitrate_picks_the_nearest_rate_of_each_codec():
    img = np.zeros((16, 16, 3), np.uint8)  # 256 pixels: bpp = bytes / 32
    codec = _sized_codec({"a": 8, "b": 16, "c": 40, "d": 64})  # 0.25, 0.5, 1.25, 2 bpp
    other = Codec("other", (1,), lambda img, s: bytes(32), codec.decode)  # 1 bpp
    ((_, _, coded),) = evaluate.coded_images([codec, other], [img], progress=False)
    got = visual_measures.match_bitrate(coded, 1.0)
    assert list(got) == ["fake", "other"]
    assert got["fake"].setting == "c" and got["fake"].bpp == 1.25 and len(got["fake"].data) == 40
    assert visual_measures.match_bitrate(coded, 0.3)["fake"].setting == "a"
    # Out of reach within the tolerance: left out rather than compared at another rate.
    assert visual_measures.match_bitrate(coded, 0.1, tolerance=0.3) == {}
    assert visual_measures.match_bitrate(coded, 0.3, tolerance=0.3)["fake"].setting == "a"
    assert list(visual_measures.match_bitrate(coded, 2.2, tolerance=0.3)) == ["fake"]


def test_nearest_rate_is_measured_on_a_log_scale():
    assert visual_measures.nearest_rate([0.1, 0.35], 0.2) == 1  # x1.75 is nearer than /2
    assert visual_measures.nearest_rate([0.1, 0.4], 0.2) == 0  # /2 and x2 tie: the lower rate


def test_visual_sweep_rows_and_error_histogram(tmp_path):
    img = synthetic_leaf(3, size=32)
    path = tmp_path / "leaf.png"
    Image.fromarray(img).save(path)
    codecs = [evaluate.learned_codec(_FakeLeaf()), *_quantisers()]
    out = visual_measures.visual_sweep(
        [path], codecs, targets=(1.0,), tolerance=None, lpips=False, progress=False
    )
    assert len(out["per_setting"]) == sum(len(c.settings) for c in codecs)
    m = out["matched"]
    assert list(m.codec) == [c.name for c in codecs] and (m.target_bpp == 1.0).all()
    for c in codecs:
        assert out["error_hist"][1.0, c.name].sum() == img.size  # every RGB sample counted once


class _FakeLeaf:
    """Stands in for LeafCodec in ``learned_codec``: level k writes k/8 bytes per sample."""

    levels = [1, 2, 3]

    def encode(self, img, level):
        return bytes(img.size * level // 8)

    def decode(self, data):
        return np.zeros((32, 32, 3), np.uint8)


def _quantisers():
    return [Codec(f"q{k}", (1, 2), lambda img, s, k=k: bytes(img.size * s // (4 * k)),
                  lambda data: np.zeros((32, 32, 3), np.uint8)) for k in (1, 2)]  # fmt: skip


# ----- leaf mask and crop ---------------------------------------------------------------------------------
def test_leaf_mask_finds_the_synthetic_leaf():
    img = synthetic_leaf(4)
    grey = np.all(img.astype(int) - img.mean(-1, keepdims=True) < 12, -1)  # the background is grey
    mask = visual_measures.leaf_mask(img)
    truth = ~grey
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.85, iou


def test_pick_crop_lands_on_the_texture_inside_the_leaf():
    rng = np.random.default_rng(0)
    img = np.full((128, 128, 3), (130, 130, 125), np.uint8)  # grey background
    img[16:112, 16:112] = (50, 120, 40)  # a square 'leaf' whose outline is a strong edge
    img[60:84, 40:64] += rng.integers(0, 40, (24, 24, 3), dtype=np.uint8)  # a textured 'lesion'
    r, c = visual_measures.pick_crop(img, 32, visual_measures.leaf_mask(img))
    assert r <= 60 and r + 32 >= 84 and c <= 40 and c + 32 >= 64, (r, c)


# ----- bit allocation ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def codec():
    return LeafCodec()


def test_bits_map_adds_up_to_the_real_file(codec):
    img = leaves(1)[0][:256, :256]
    level = codec.default_level  # mid-range: the ~55-byte container is a few percent of the file
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255)
    bits = visual_measures.bits_map(codec.model, x, level - 1)
    assert bits.shape == (16, 16) and (bits > 0).all()
    data = codec.encode(img, level)
    header = parse(data)
    streams = 8 * (header.z_len + header.y_len)
    # The two rANS streams carry the coder's final state and word padding on top of -log2 p.
    assert abs(float(bits.sum()) - streams) < 0.03 * streams, (float(bits.sum()), streams)
    assert abs(float(bits.sum()) - 8 * len(data)) < 0.05 * 8 * len(data)  # the container adds ~55 bytes
    y_only = visual_measures.bits_map(codec.model, x, level - 1, include_z=False)
    assert abs(float(y_only.sum()) - 8 * header.y_len) < 0.03 * 8 * header.y_len
    # Per pixel, the same bits: 256x256 needs no padding.
    per_pixel = visual_measures.bit_allocation(codec, img, level)
    assert per_pixel.shape == img.shape[:2] and np.isclose(per_pixel.sum(), float(bits.sum()))


def test_bit_share():
    bits = np.ones((4, 4))
    bits[:2] = 3
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    share = visual_measures.bit_share(bits, mask)
    assert share == {"leaf_area": 0.5, "leaf_bits": 0.75, "bpp_leaf": 3.0, "bpp_background": 1.0}
