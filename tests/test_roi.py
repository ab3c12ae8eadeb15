"""Region-of-interest coding (``helpers.codec.roi``, format versions 3 and 4): a quality level per latent position.

What must hold: the region keeps its quality while the file shrinks; uniform files stay version 2, byte for byte;
a damaged map is one line of error; the background level is honoured and checked; the rate search meets its
target with a region; a context model refuses clearly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

from helpers.codec import map_coding, roi, tiling
from helpers.codec.container import RoiMap, deflated, pack, parse
from helpers.codec.errors import CodecError
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.models import LevelGain


def _left_half(rgb: np.ndarray) -> np.ndarray:
    """Weights 1 on the left half of the latent grid, 0 on the right."""
    rows, cols = tiling.latent_size(*rgb.shape[:2])
    w = np.zeros((rows, cols), np.float32)
    w[:, : cols // 2] = 1
    return w


def _psnr(a, b, cols: slice) -> float:
    d = a[:, cols].astype(np.float64) - b[:, cols].astype(np.float64)
    return 10 * np.log10(255**2 / np.mean(d**2))


def test_the_region_keeps_its_quality_and_the_rest_gives_up_bits(codec, leaf):
    uniform = codec.encode(leaf, 6)
    region = codec.encode(leaf, 6, roi_weights=_left_half(leaf), background=1)
    low = codec.encode(leaf, 1)
    assert parse(uniform).roi is None and parse(region).roi is not None
    assert len(low) < len(region) < 0.8 * len(uniform)
    a, b, c = codec.decode(uniform), codec.decode(region), codec.decode(low)
    half = leaf.shape[1] // 2
    left, right = slice(0, half - 16), slice(half + 16, None)  # away from the boundary's blocks
    assert _psnr(leaf, b, left) > _psnr(leaf, a, left) - 0.3
    assert _psnr(leaf, b, right) < _psnr(leaf, a, right) - 1.0
    assert _psnr(leaf, b, right) > _psnr(leaf, c, right) - 1.0  # the background is about level 1's


def test_a_uniform_map_writes_the_version_2_file(codec, leaf):
    """All weights 1, or a background at the level: the same bytes as without a region."""
    ones = np.ones(tiling.latent_size(*leaf.shape[:2]), np.float32)
    plain = codec.encode(leaf, 4)
    assert plain[4] == 2
    assert codec.encode(leaf, 4, roi_weights=ones) == plain
    assert codec.encode(leaf, 4, roi_weights=_left_half(leaf), background=4) == plain
    assert codec.encode(leaf, 2, roi_weights=_left_half(leaf), background=5) == codec.encode(
        leaf, 2
    )  # clamped


def test_the_header_records_the_background_and_the_map(codec, leaf):
    w = _left_half(leaf)
    data = codec.encode(leaf, 5, roi_weights=w, background=1.5)
    h = parse(data)
    assert data[4] == 4  # the format version
    assert h.roi.background == 1.5 and h.level == 5
    assert np.array_equal(h.roi.weights(*w.shape), roi.quantised(w))
    assert len(h.roi.coded) < 40  # a two-valued 16 x 16 map codes in a few dozen bytes


@pytest.mark.parametrize("size", [(70, 100), (130, 257)])
def test_odd_sizes_round_trip(codec, leaf, size):
    rgb = np.ascontiguousarray(np.resize(leaf, (*size, 3)))
    out = codec.decode(codec.encode(rgb, 5, roi_weights=_left_half(rgb)))
    assert out.shape == rgb.shape


def test_fractional_weights_fall_between_the_levels(codec, leaf):
    rows, cols = tiling.latent_size(*leaf.shape[:2])
    sizes = [
        len(codec.encode(leaf, 6, roi_weights=np.full((rows, cols), v), background=1)) for v in (0, 0.5, 1)
    ]
    assert sizes[0] < sizes[1] < sizes[2]


def test_the_rate_search_meets_its_limit_with_a_region(codec, leaf):
    w = _left_half(leaf)
    full = len(codec.encode(leaf, 7, roi_weights=w))
    limit = full * 2 // 3
    data, level = codec.encode_to_rate(leaf, max_bytes=limit, roi_weights=w)
    assert len(data) <= limit and 1 <= level < 7
    assert parse(data).roi is not None or level <= roi.DEFAULT_BACKGROUND


def _forged(data: bytes, offset_in_map: int, value: int) -> bytes:
    """``data`` with one byte of its ROI map changed and the checksum recomputed (a damaged map that the
    checksum does not catch: a faulty writer)."""
    h = parse(data)
    start = data.index(h.roi.coded)
    body = bytearray(data[:-4])
    body[start + offset_in_map] = value
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def test_a_damaged_map_is_one_clear_error(codec, leaf):
    data = codec.encode(leaf, 5, roi_weights=_left_half(leaf))
    cut = bytearray(data)
    cut[data.index(parse(data).roi.coded) + 3] ^= 0xFF
    with pytest.raises(CodecError, match="checksum mismatch"):
        codec.decode(bytes(cut))
    with pytest.raises(CodecError, match="corrupted ROI map"):
        codec.decode(_forged(data, 3, data[data.index(parse(data).roi.coded) + 3] ^ 0xFF))


def test_a_map_of_the_wrong_size_is_refused(codec, leaf):
    data = codec.encode(leaf, 5, roi_weights=_left_half(leaf))
    h = parse(data)
    weights = h.roi.weights(*tiling.latent_size(*leaf.shape[:2]))
    for version, longer in [(3, deflated(weights.tobytes() + b"\0")),
                            (4, map_coding.encode(np.vstack([weights, weights[:1] // 2])))]:  # fmt: skip
        forged = RoiMap(h.roi.background_units, longer, version)
        with pytest.raises(CodecError, match="does not hold 16x16 weights"):
            parse(pack(h.model_name, h.weights_hash, h.level, h.colour, h.height, h.width, h.symbols_crc,
                       h.streams, forged))  # fmt: skip


def test_a_version_3_file_decodes_as_its_version_4_twin(codec, leaf):
    """The same latent with its map DEFLATE-coded (version 3, as the previous encoder wrote it) decodes to the
    same pixels."""
    data = codec.encode(leaf, 5, roi_weights=_left_half(leaf))
    h = parse(data)
    weights = h.roi.weights(*tiling.latent_size(*leaf.shape[:2]))
    v3 = pack(h.model_name, h.weights_hash, h.level, h.colour, h.height, h.width, h.symbols_crc, h.streams,
              RoiMap(h.roi.background_units, deflated(weights.tobytes()), 3))  # fmt: skip
    assert v3[4] == 3 and len(v3) > len(data)
    assert np.array_equal(codec.decode(v3), codec.decode(data))


def test_bad_maps_and_background_levels_are_refused(codec, leaf):
    with pytest.raises(CodecError, match="one per 16x16 block"):
        codec.encode(leaf, 5, roi_weights=np.ones((3, 3)))
    with pytest.raises(CodecError, match=r"in \[0, 1\]"):
        codec.encode(leaf, 5, roi_weights=_left_half(leaf) * 2)
    with pytest.raises(CodecError, match="background level"):
        codec.encode(leaf, 5, roi_weights=_left_half(leaf), background=-1)
    with pytest.raises(CodecError, match="1/256"):
        codec.encode(leaf, 5, roi_weights=_left_half(leaf), background=1.001)


def test_a_background_below_level_1_costs_fewer_bits_still(codec, leaf):
    w = _left_half(leaf)
    at_1 = codec.encode(leaf, 6, roi_weights=w, background=1)
    at_0 = codec.encode(leaf, 6, roi_weights=w, background=0)
    assert len(at_0) < len(at_1)
    assert codec.decode(at_0).shape == leaf.shape


def test_spatial_gains_at_trained_levels_are_the_trained_vectors():
    gain = LevelGain(torch.randn(4, 8))
    index = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    g = gain.spatial(index)
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(g[0, :, r, c], gain.log[k].exp())
    half = gain.spatial(torch.full((1, 1, 1), 0.5))[0, :, 0, 0]
    assert torch.allclose(half, gain.vector(0.5)[0, :, 0, 0])
    below = gain.spatial(torch.full((1, 1, 1), -1.0), log=True)[0, :, 0, 0]
    assert torch.allclose(below, 2 * gain.log[0] - gain.log[1])


def test_a_context_model_refuses_a_region_clearly(leaf):
    codec = LeafCodec()
    codec.tile_codec = type("Ctx", (), {"supports_roi": False})()
    with pytest.raises(CodecError, match="context entropy model"):
        codec.encode(leaf, 5, roi_weights=_left_half(leaf))


# ----- the command line -------------------------------------------------------------------------------------------
def _png(tmp_path, rgb, name="leaf.png"):
    from PIL import Image

    path = tmp_path / name
    Image.fromarray(rgb).save(path)
    return path


def test_cli_roi_leaf_round_trips_and_info_shows_the_map(tmp_path, leaf):
    from codec_samples import run_cli

    src = _png(tmp_path, leaf)
    out = run_cli("compress", src, "-o", tmp_path / "a.leaf", "--level", "6", "--roi", "leaf")
    assert out.returncode == 0, out.stderr
    assert "region of interest" in out.stdout
    info = run_cli("info", tmp_path / "a.leaf")
    assert info.returncode == 0 and "roi:" in info.stdout and "background level 1" in info.stdout, info.stdout
    dec = run_cli("decompress", tmp_path / "a.leaf", tmp_path / "a.png")
    assert dec.returncode == 0 and "level 6 (region of interest; background level 1)" in dec.stdout, (
        dec.stderr
    )
    plain = run_cli("compress", src, "-o", tmp_path / "b.leaf", "--level", "6")
    assert (tmp_path / "a.leaf").stat().st_size < (tmp_path / "b.leaf").stat().st_size
    assert "roi:" not in run_cli("info", tmp_path / "b.leaf").stdout and plain.returncode == 0


def test_cli_roi_mask_file_and_max_bytes(tmp_path, leaf):
    from codec_samples import run_cli
    from PIL import Image

    src = _png(tmp_path, leaf)
    mask = np.zeros(leaf.shape[:2], np.uint8)
    mask[:, : leaf.shape[1] // 2] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = run_cli("compress", src, "-o", tmp_path / "m.leaf", "--roi", tmp_path / "mask.png", "--max-bytes", "1500",
                  "--background-level", "0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = (tmp_path / "m.leaf").read_bytes()
    assert len(data) <= 1500
    h = parse(data)
    if h.roi is not None:
        assert h.roi.background == 0
        assert np.array_equal(h.roi.weights(16, 16)[:, :8], np.full((16, 8), 255, np.uint8))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--roi", "nowhere.png"], "--roi"),
        (["--background-level", "1"], "--background-level needs --roi"),
        (["--roi", "leaf", "--background-level", "-1"], "--background-level"),
        (["--roi", "MASK"], "is 10x10 pixels but the image is 256x256"),
    ],
)
def test_cli_roi_errors_are_one_line(tmp_path, leaf, argv, fragment):
    from codec_samples import assert_one_line_error, run_cli
    from PIL import Image

    src = _png(tmp_path, leaf)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    argv = [str(tmp_path / "small.png") if a == "MASK" else a for a in argv]
    assert_one_line_error(run_cli("compress", src, "-o", tmp_path / "x.leaf", *argv), fragment)
    assert not (tmp_path / "x.leaf").exists()
