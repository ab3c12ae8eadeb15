"""The one image reader (helpers/codec/imageio.py) that compress, metrics and data loading share: the reader cases of
issue 13 (16-bit, 32-bit integer and float TIFFs, grey+alpha, decompression bombs, damaged EXIF)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from codec_samples import run_cli, synthetic_leaf
from PIL import Image

from helpers.codec.container import parse
from helpers.codec.errors import DataError, ResourceError
from helpers.codec.imageio import (
    COLOUR_GRAY,
    COLOUR_GRAY_ALPHA_DROPPED,
    COLOUR_NAMES,
    COLOUR_RGB,
    load_image,
    read_image,
)
from helpers.commands import main
from helpers.data import dataset as data


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_bytes(arr: np.ndarray, bits: int = 8) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    dtype = ">u2" if bits == 16 else "u1"
    raw = b"".join(b"\0" + arr[i].astype(dtype).tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bits, 2 if arr.ndim == 3 else 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def bomb(width: int, height: int) -> bytes:
    """A grey PNG whose header claims ``width`` x ``height`` with (almost) no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


def test_metrics_and_compress_read_16_bit_images_alike(tmp_path, capsys):
    """Both kept the top 8 bits of a 16-bit PNG only in compress; metrics clipped at 255 and scored the codec's
    own correct decoding at 5 dB."""
    grey8 = synthetic_leaf(3, 96)[..., 1]
    (tmp_path / "g16.png").write_bytes(png_bytes(grey8.astype(np.uint16) * 256 + 100, bits=16))
    rgb, colour = load_image(tmp_path / "g16.png")
    assert colour == COLOUR_GRAY and np.array_equal(rgb[..., 0], grey8)
    assert np.array_equal(data.read_image(tmp_path / "g16.png"), rgb)  # data/metrics use the same reader
    assert main(["compress", str(tmp_path / "g16.png"), "-o", str(tmp_path / "g.leaf"), "--level", "7"]) == 0
    assert main(["decompress", str(tmp_path / "g.leaf"), str(tmp_path / "g.png")]) == 0
    capsys.readouterr()
    assert main(["metrics", str(tmp_path / "g16.png"), str(tmp_path / "g.png"), "--no-lpips"]) == 0
    out = capsys.readouterr().out
    assert float(out.split()[1]) > 25, out


def test_32_bit_integer_images_are_refused_clearly(tmp_path):
    """A 32-bit TIFF with values 0-255 was taken as 16-bit and coded as black; its range is undefined."""
    (tmp_path / "i32.tif").write_bytes(_tiff(np.arange(64 * 48, dtype=np.int32).reshape(48, 64) % 256))
    with pytest.raises(DataError, match="32-bit integer images are not supported") as exc:
        load_image(tmp_path / "i32.tif")
    assert str(tmp_path / "i32.tif") in str(exc.value)


def test_float_images_in_0_to_1_are_scaled_and_others_refused(tmp_path):
    ramp = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    (tmp_path / "f.tif").write_bytes(_tiff(ramp))
    rgb, colour = load_image(tmp_path / "f.tif")
    assert colour == COLOUR_GRAY and rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert np.array_equal(rgb[..., 0], np.rint(ramp.astype(np.float64) * 255).astype(np.uint8))
    (tmp_path / "f255.tif").write_bytes(_tiff(ramp * 255))
    with pytest.raises(DataError, match=r"values outside 0\.\.1 \(min 0, max 255\)"):
        load_image(tmp_path / "f255.tif")
    (tmp_path / "nan.tif").write_bytes(_tiff(np.where(ramp > 0.5, np.nan, ramp).astype(np.float32)))
    with pytest.raises(DataError, match="values outside 0..1"):
        load_image(tmp_path / "nan.tif")


def test_grey_with_alpha_is_reported_and_decodes_to_grey(tmp_path, capsys):
    la = np.dstack([synthetic_leaf(1, 64)[..., 1], np.full((64, 64), 128, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    rgb, colour = load_image(tmp_path / "la.png")
    assert colour == COLOUR_GRAY_ALPHA_DROPPED and np.array_equal(rgb[..., 0], la[..., 0])
    assert main(["compress", str(tmp_path / "la.png"), "-o", str(tmp_path / "la.leaf")]) == 0
    assert parse((tmp_path / "la.leaf").read_bytes()).colour == COLOUR_GRAY_ALPHA_DROPPED
    assert main(["info", str(tmp_path / "la.leaf")]) == 0
    assert "64x64 (grayscale (alpha dropped))" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "la.leaf"), str(tmp_path / "la_out.png")]) == 0
    assert Image.open(tmp_path / "la_out.png").mode == "L"


def test_decompression_bombs_are_refused_before_decoding(tmp_path, capsys):
    """A header claiming 400 MP is refused from the header (our limit replaces Pillow's, which metrics did not
    catch); one between Pillow's limit (179 MP) and ours is refused for its compression ratio, in one line."""
    (tmp_path / "ref.png").write_bytes(png_bytes(synthetic_leaf(0, 32)))
    (tmp_path / "bomb.png").write_bytes(bomb(20000, 20000))
    with pytest.raises(ResourceError, match=r"20000x20000 = 400\.0 MP exceeds the limit of 200\.0 MP"):
        read_image(tmp_path / "bomb.png")
    for cmd in (["metrics", tmp_path / "ref.png", tmp_path / "bomb.png", "--no-lpips"],
                ["compress", tmp_path / "bomb.png", "-o", tmp_path / "b.leaf"]):  # fmt: skip
        assert main([str(c) for c in cmd]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "exceeds the limit of 200.0 MP" in lines[0], lines
    (tmp_path / "bomb2.png").write_bytes(bomb(13500, 13500))  # its few bytes cannot hold 182 MP (issue 34)
    with pytest.raises(ResourceError, match="compression ratio of .* beyond any photograph's"):
        read_image(tmp_path / "bomb2.png")
    assert (
        main(["compress", str(tmp_path / "bomb.png"), "-o", str(tmp_path / "b.leaf"), "--max-pixels", "50M"])
        == 2
    )
    assert "exceeds the limit of 50.0 MP (raise it with --max-pixels)" in capsys.readouterr().err


def test_damaged_exif_leaks_no_warning(tmp_path):
    """Pillow warns about EXIF tags pointing past the data; the image itself is fine and compresses silently."""
    ifd = b"II*\x00" + struct.pack("<IHHHII", 8, 1, 0x010F, 2, 100, 4000) + struct.pack("<I", 0)
    Image.fromarray(synthetic_leaf(2, 64)).save(tmp_path / "e.jpg", exif=b"Exif\x00\x00" + ifd)
    proc = run_cli("compress", tmp_path / "e.jpg", "-o", tmp_path / "e.leaf")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert load_image(tmp_path / "e.jpg")[1] == COLOUR_RGB


def test_every_colour_mode_has_a_name():
    assert set(COLOUR_NAMES) == {0, 1, 2, 3} and "alpha dropped" in COLOUR_NAMES[COLOUR_GRAY_ALPHA_DROPPED]
