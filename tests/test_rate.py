"""Rate targeting (helpers/codec/level_search.py, LeafCodec.encode_to_rate, compress --target-bpp / --max-bytes): fractional
levels between the trained ones, recorded in the file, decoded by both backends (issue 9, item 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from codec_samples import leaves, psnr
from PIL import Image

from helpers.codec import level_search as rate
from helpers.codec.container import parse
from helpers.codec.errors import CodecError
from helpers.codec.leaf_codec import LeafCodec
from helpers.commands import main


@pytest.fixture(scope="module")
def codec():
    return LeafCodec()


def _counted(sizes):
    calls = []

    def size_at(u):
        calls.append(u)
        return sizes(u)

    return size_at, calls


@pytest.mark.parametrize("limit", [1000, 1234.5, 5000, 77777])
def test_the_search_finds_the_largest_level_within_the_limit(limit):
    sizes = lambda u: int(100 * math.exp(u / 200) + 40 * math.sin(u / 7))  # noqa: E731 - nearly exponential
    size_at, calls = _counted(sizes)
    u, above = rate.largest_within(size_at, 256, 1792, limit)
    truth = max(v for v in range(256, 1793) if sizes(v) <= limit)
    assert sizes(u) <= limit and sizes(truth) <= sizes(u) * (1 + rate.CLOSE_ENOUGH)
    assert above is None or sizes(above) > limit
    assert len(calls) <= 24  # never much worse than bisection on 1536 steps (11)


def test_the_search_on_a_flat_stretch_and_at_the_ends():
    size_at, _ = _counted(lambda u: 1000 if u < 900 else 5000)
    assert rate.largest_within(size_at, 256, 1792, 2000)[0] == 899
    assert rate.largest_within(lambda u: 10, 256, 1792, 2000) == (1792, None)
    with pytest.raises(CodecError, match=r"the smallest file \(10 bytes\) is above the 5 bytes asked"):
        rate.largest_within(lambda u: 10, 256, 1792, 5)
    assert rate.nearest(lambda u: 10, 256, 1792, 5) == 256
    assert rate.nearest(lambda u: u, 256, 1792, 1000.4) == 1000


def test_target_bpp_lands_within_10_percent_on_average(codec):
    """Three rates across the range on four test leaves: the mean relative error of the real file's bpp."""
    errors = []
    for rgb in leaves(4):
        h, w = rgb.shape[:2]
        for target in (0.1, 0.3, 0.6):
            data, level = codec.encode_to_rate(rgb, target_bpp=target)
            assert parse(data).level == level
            errors.append(abs(8 * len(data) / (h * w) / target - 1))
    print(f"\nmean |bpp / target - 1| = {np.mean(errors):.4f} over {len(errors)} files")
    assert np.mean(errors) < 0.10, errors


def test_max_bytes_is_never_exceeded_and_nearly_reached(codec):
    for rgb in leaves(3):
        low, high = len(codec.encode(rgb, 1)), len(codec.encode(rgb, codec.levels[-1]))
        for limit in np.geomspace(low * 1.2, high * 0.8, 3).astype(int):
            data, level = codec.encode_to_rate(rgb, max_bytes=int(limit))
            assert len(data) <= limit and len(data) >= 0.9 * limit, (limit, len(data), level)
    with pytest.raises(CodecError, match="cannot meet --max-bytes 100"):
        codec.encode_to_rate(leaves(1)[0], max_bytes=100)


def test_fractional_levels_sit_between_their_neighbours_and_decode_with_both_backends(codec):
    rgb = leaves(1)[0]
    ort = LeafCodec(backend="onnx")
    files = {q: codec.encode(rgb, q) for q in (3, 3.5, 4)}
    assert len(files[3]) < len(files[3.5]) < len(files[4])
    assert parse(files[3.5]).level == 3.5 and parse(files[3.5]).level_units == 3.5 * 256
    out = codec.decode(files[3.5])
    assert psnr(codec.decode(files[3]), rgb) <= psnr(out, rgb) + 0.05
    assert psnr(out, rgb) <= psnr(codec.decode(files[4]), rgb) + 0.05
    assert np.abs(ort.decode(files[3.5]).astype(int) - out).max() <= 1
    with pytest.raises(CodecError, match="unknown quality level 3.3"):
        codec.encode(rgb, 3.3)  # not on the file's 1/256 grid


def test_cli_target_bpp_and_max_bytes(tmp_path, capsys):
    Image.fromarray(leaves(1)[0]).save(tmp_path / "a.png")
    assert (
        main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "t.leaf"), "--target-bpp", "0.3"])
        == 0
    )
    h = parse((tmp_path / "t.leaf").read_bytes())
    assert abs(8 * (tmp_path / "t.leaf").stat().st_size / h.pixels / 0.3 - 1) < 0.15
    assert (
        main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "m.leaf"), "--max-bytes", "2K"]) == 0
    )
    assert (tmp_path / "m.leaf").stat().st_size <= 2048
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m.leaf")]) == 0
    info = capsys.readouterr().out
    level = parse((tmp_path / "m.leaf").read_bytes()).level
    assert isinstance(level, float) and "(between trained levels)" in info
    with pytest.raises(SystemExit):
        main(
            [
                "compress",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / "x.leaf"),
                "--level",
                "2",
                "--max-bytes",
                "9",
            ]
        )
    assert "not allowed with argument" in capsys.readouterr().err


# ----- --target-psnr: the lowest level whose decoding reaches a PSNR -----------------------------------------------
def test_target_psnr_reaches_the_target_with_little_to_spare(codec):
    rgb = leaves(1)[0]
    lowest, top = (psnr(rgb, codec.decode(codec.encode(rgb, q))) for q in (codec.levels[0], codec.levels[-1]))
    for target in (lowest + 0.3 * (top - lowest), lowest + 0.8 * (top - lowest)):
        data, level = codec.encode_to_rate(rgb, target_psnr=target)
        got = psnr(rgb, codec.decode(data))
        assert target <= got < target + 0.1, (target, got, level)
        assert parse(data).level == level
    assert codec.encode_to_rate(rgb, target_psnr=lowest - 1)[1] == codec.levels[0]
    assert codec.encode_to_rate(rgb, target_psnr=top + 5)[1] == codec.levels[-1]


def test_target_psnr_with_a_region_measures_the_region(codec):
    from helpers.codec import roi, tiling

    rgb = leaves(1)[0]
    weights = np.zeros(tiling.latent_size(*rgb.shape[:2]))
    weights[:, : weights.shape[1] // 2] = 1
    target = psnr(rgb, codec.decode(codec.encode(rgb, 4)))
    data, _ = codec.encode_to_rate(rgb, target_psnr=target, roi_weights=weights)
    mask = roi.full_weight_pixels(roi.quantised(weights), *rgb.shape[:2])
    out = codec.decode(data)
    region = 10 * np.log10(255**2 / np.mean((out[mask].astype(float) - rgb[mask]) ** 2))
    whole = psnr(rgb, out)
    assert region >= target > whole  # the region reached it, the whole image (with its background) did not


def test_target_psnr_is_checked_and_exclusive(codec, tmp_path, capsys):
    with pytest.raises(CodecError, match="one of a byte limit, a target rate or a target PSNR"):
        codec.encode_to_rate(leaves(1)[0], target_psnr=30, max_bytes=1000)
    with pytest.raises(CodecError, match="target PSNR must be a positive finite number"):
        codec.encode_to_rate(leaves(1)[0], target_psnr=float("nan"))
    Image.fromarray(leaves(1)[0]).save(tmp_path / "a.png")
    assert (
        main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.leaf"), "--target-psnr", "-3"])
        == 2
    )
    assert "--target-psnr must be a positive finite number" in capsys.readouterr().err
