"""Command-line defects found by trying ``python -m helpers`` the way a user would: limits of inf/NaN/below one,
LPIPS on tiny images, odd file names, 16-bit grey+alpha PNGs, trailing slashes, writing over one's own input,
animations, unreachable rate targets and the digits of small limits. Each test failed before its fix."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from codec_samples import cli_files, one_error_line, run_in_process, synthetic_leaf, tmp_leftovers
from PIL import Image, features

from helpers.codec.errors import CodecError, DataError, ResourceError
from helpers.codec.imageio import COLOUR_GRAY_ALPHA_DROPPED, check_pixels, load_image
from helpers.codec.leaf_codec import LeafCodec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return cli_files(tmp_path_factory.mktemp("defects"))


_run, _error = run_in_process, one_error_line


def _notes(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("note: ")]


# ----- 1. infinite and NaN limits -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command, option, value",
    [("compress", "--max-memory", "inf"), ("compress", "--max-bytes", "inf"), ("compress", "--max-pixels", "inf"),
     ("decompress", "--max-pixels", "1e400"), ("decompress", "--max-memory", "nan"),
     ("compress", "--max-bytes", "nanK"), ("compress", "--max-memory", "1e400G")],
)  # fmt: skip
def test_infinite_and_nan_limits_are_one_line_errors(tmp_path, files, capsys, command, option, value):
    src = files[0] if command == "compress" else files[1]
    out = tmp_path / ("x.leaf" if command == "compress" else "x.png")
    line = _error(capsys, command, src, "-o", out, option, value)
    assert option in line and repr(value) in line and "finite" in line, line
    assert not out.exists() and not list(tmp_path.iterdir())


# ----- 2. LPIPS on images too small for AlexNet ---------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 16, 30])
def test_metrics_of_tiny_images_say_lpips_is_not_defined(tmp_path, capsys, size):
    Image.fromarray(synthetic_leaf(0, size)).save(tmp_path / "a.png")
    Image.fromarray(synthetic_leaf(1, size)).save(tmp_path / "b.png")
    code, out, err = _run(capsys, "metrics", tmp_path / "a.png", tmp_path / "b.png")
    assert code == 0 and not err.strip(), err
    assert "PSNR" in out and "MS-SSIM" in out
    lpips_line = next(ln for ln in out.splitlines() if ln.startswith("LPIPS"))
    assert "not defined" in lpips_line and "31x31" in lpips_line and f"{size}x{size}" in lpips_line


def test_lpips_of_tiny_images_is_a_clean_error_in_the_library():
    from helpers.measures import metrics

    a, b = synthetic_leaf(0, 16), synthetic_leaf(1, 16)
    assert np.isnan(metrics.compare_images(a, b)["lpips"])
    with pytest.raises(DataError, match="LPIPS is not defined"):
        metrics.lpips_distance(a, b)


# ----- 3. file names with newlines ------------------------------------------------------------------------------
def test_names_with_newlines_are_escaped_so_every_message_is_one_line(tmp_path, files, capsys):
    odd = tmp_path / "a\nb.png"
    odd.write_bytes(files[0].read_bytes())
    line = _error(capsys, "compress", odd, "-o", tmp_path / "no\nfolder" / "x.leaf")
    assert "a\\nb.png" in line and "no\\nfolder" in line, line
    line = _error(capsys, "compress", tmp_path / "missing\n.png", "-o", tmp_path / "x.leaf")
    assert "image not found" in line and "missing\\n.png" in line, line
    (tmp_path / "text\n.png").write_text("not an image")
    line = _error(capsys, "compress", tmp_path / "text\n.png", "--out-dir", tmp_path / "batch")
    assert "cannot read image" in line and "text\\n.png" in line, line
    (tmp_path / ".o\nk.leaf.abc123.tmp").write_bytes(b"")  # a leftover temporary: its note names it
    code, out, err = _run(capsys, "compress", odd, "-o", tmp_path / "o\nk.leaf")
    assert code == 0 and len(out.splitlines()) == 1 and "a\\nb.png" in out and "o\\nk.leaf" in out, out
    assert len(err.splitlines()) == 1 and err.startswith("note: ") and "o\\nk.leaf" in err, err
    assert (tmp_path / "o\nk.leaf").is_file()


# ----- 4. 16-bit grey + alpha -----------------------------------------------------------------------------------
def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_la16(grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """A 16-bit grey+alpha PNG (colour type 4), written by hand: Pillow cannot write one."""
    h, w = grey.shape
    pixels = np.dstack([grey, alpha]).astype(">u2")
    raw = b"".join(b"\0" + pixels[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def test_16_bit_grey_alpha_png_stays_grey(tmp_path, capsys):
    grey8 = synthetic_leaf(2, 64)[..., 1]
    path = tmp_path / "la16.png"
    path.write_bytes(_png_la16(grey8.astype(np.uint16) * 257, np.full((64, 64), 40000, np.uint16)))
    rgb, colour = load_image(path)
    assert colour == COLOUR_GRAY_ALPHA_DROPPED
    assert all(np.array_equal(rgb[..., c], grey8) for c in range(3))
    assert _run(capsys, "compress", path, "-o", tmp_path / "la.leaf")[0] == 0
    code, out, _ = _run(capsys, "info", tmp_path / "la.leaf")
    assert code == 0 and "64x64 (grayscale (alpha dropped))" in out, out
    assert _run(capsys, "decompress", tmp_path / "la.leaf", tmp_path / "la_out.png")[0] == 0
    assert Image.open(tmp_path / "la_out.png").mode == "L"


# ----- 5. byte limits below one byte ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0.5", "1e-9", "0", "-3"])
def test_max_bytes_below_one_byte_is_refused_by_name(tmp_path, files, capsys, value):
    line = _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--max-bytes", value)
    assert "--max-bytes must be at least 1 byte" in line and repr(value) in line and "None" not in line, line
    assert not (tmp_path / "x.leaf").exists()


def test_encode_to_rate_names_the_limit_it_refuses():
    codec = LeafCodec()
    with pytest.raises(CodecError, match="byte limit must be at least 1, not 0"):
        codec.encode_to_rate(synthetic_leaf(0, 64), max_bytes=0)
    with pytest.raises(CodecError, match="target rate must be a positive finite number, not inf"):
        codec.encode_to_rate(synthetic_leaf(0, 64), target_bpp=float("inf"))


# ----- 6. an output path ending with a slash --------------------------------------------------------------------
def test_output_ending_with_a_slash_is_a_folder(tmp_path, files, capsys):
    src, leaf = files
    line = _error(capsys, "compress", src, "-o", f"{tmp_path / 'out'}/")
    assert f"no such folder: {tmp_path / 'out'}/" in line, line
    (tmp_path / "file").write_bytes(b"x")
    line = _error(capsys, "decompress", leaf, "-o", f"{tmp_path / 'file'}/")
    assert f"not a folder: {tmp_path / 'file'}/" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    (tmp_path / "dir").mkdir()
    assert _run(capsys, "compress", src, "-o", f"{tmp_path / 'dir'}/")[0] == 0
    assert _run(capsys, "decompress", leaf, "-o", f"{tmp_path / 'dir'}/")[0] == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["ref.leaf", "ref.png"]


# ----- 7. writing over one's own input --------------------------------------------------------------------------
def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path, files, capsys):
    src, leaf = files
    png, coded = tmp_path / "in.png", tmp_path / "in.leaf"
    png.write_bytes(src.read_bytes())
    coded.write_bytes(leaf.read_bytes())
    os.link(png, tmp_path / "hard.png")
    (tmp_path / "pic.leaf").write_bytes(src.read_bytes())  # an image under a .leaf name
    (tmp_path / "sub").mkdir()
    for argv in (["compress", png, "-o", png], ["compress", png, "-o", tmp_path / "sub" / ".." / "in.png"],
                 ["compress", png, "-o", tmp_path / "hard.png"], ["decompress", coded, "-o", coded],
                 ["compress", png, tmp_path / "pic.leaf", "--out-dir", tmp_path],
                 ["decompress", leaf, png, "--out-dir", tmp_path]):  # fmt: skip
        line = _error(capsys, *argv, "--force")
        assert "is an input" in line and "refusing to write over it" in line, (argv, line)
    assert png.read_bytes() == src.read_bytes() and coded.read_bytes() == leaf.read_bytes()
    assert (tmp_path / "pic.leaf").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.png", "in.leaf", "in.png", "pic.leaf", "sub"]
    assert not list((tmp_path / "sub").iterdir())


def test_batch_refuses_an_output_that_is_another_input(tmp_path, files, capsys):
    """A hard link of one input under another name in --out-dir: the first input's output would replace it."""
    src, _ = files
    (tmp_path / "out").mkdir()
    (tmp_path / "a.png").write_bytes(src.read_bytes())
    (tmp_path / "b.png").write_bytes(src.read_bytes())
    os.link(tmp_path / "b.png", tmp_path / "out" / "a.leaf")
    line = _error(
        capsys, "compress", tmp_path / "a.png", tmp_path / "b.png", "--out-dir", tmp_path / "out", "--force"
    )
    assert f"{tmp_path / 'out' / 'a.leaf'} is an input" in line, line
    assert (tmp_path / "b.png").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.leaf"]


# ----- 8. animations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animated_images_note_that_only_the_first_frame_is_coded(tmp_path, capsys, fmt):
    if fmt == "webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    frames = [Image.fromarray(synthetic_leaf(i, 64)) for i in range(3)]
    frames[0].save(tmp_path / f"anim.{fmt}", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / f"still.{fmt}")
    code, out, err = _run(capsys, "compress", tmp_path / f"anim.{fmt}", "-o", tmp_path / "anim.leaf")
    assert code == 0 and (tmp_path / "anim.leaf").is_file(), err
    assert _notes(err) == [f"note: {tmp_path / f'anim.{fmt}'}: only the first of 3 frames is coded"], err
    code, out, err = _run(capsys, "compress", tmp_path / f"still.{fmt}", "-o", tmp_path / "still.leaf")
    assert code == 0 and not err.strip(), err


# ----- 9. rate targets out of reach -----------------------------------------------------------------------------
@pytest.mark.parametrize("target, level", [("100", "level 7"), ("0.0001", "level 1")])
def test_an_unreachable_target_bpp_is_noted(tmp_path, files, capsys, target, level):
    code, out, err = _run(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--target-bpp", target)
    assert code == 0 and (tmp_path / "x.leaf").is_file(), err
    notes = _notes(err)
    assert len(notes) == 1 and len(err.splitlines()) == 1, err
    assert f"--target-bpp {target} is out of reach" in notes[0] and level in notes[0] and "bpp" in notes[0]
    n = (tmp_path / "x.leaf").stat().st_size
    assert f"{8 * n / 64**2:.4f} bpp" in notes[0], notes[0]


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_a_non_finite_target_bpp_is_refused(tmp_path, files, capsys, value):
    line = _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--target-bpp", value)
    assert "--target-bpp must be a positive finite number" in line and value in line, line
    assert not (tmp_path / "x.leaf").exists()


# ----- 10. digits of small limits -------------------------------------------------------------------------------
def test_small_pixel_limits_show_pixel_counts(tmp_path, files, capsys):
    line = _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--max-pixels", "1000")
    assert "64x64 = 4,096 pixels exceeds the limit of 1,000 pixels" in line and "0.0 MP" not in line, line
    line = _error(capsys, "decompress", files[1], "-o", tmp_path / "x.png", "--max-memory", "1K")
    assert "(4,096 pixels)" in line and "the budget is 1 KB" in line and "0 MB" not in line, line
    with pytest.raises(ResourceError, match=r"= 1,040,000 pixels exceeds the limit of 1,000,000 pixels"):
        check_pixels(1040, 1000, 1_000_000, "image")  # 1.0 MP vs 1.0 MP says nothing
    with pytest.raises(ResourceError, match=r"= 400\.0 MP exceeds the limit of 200\.0 MP"):
        check_pixels(20000, 20000, 200_000_000, "image")
    assert not tmp_leftovers(tmp_path) and not list(tmp_path.iterdir())
