"""The codec end to end: round trips at every level and size, input formats, determinism across thread counts
(in fresh interpreters), and the command line's forms, refusals and error messages."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from codec_samples import ROOT, assert_one_line_error, leaves, psnr, run_cli, tmp_leftovers
from PIL import Image

from helpers import paths
from helpers.codec import fileio
from helpers.codec.checkpoints import weights_hash
from helpers.codec.container import parse, read_file
from helpers.codec.errors import CheckpointError, CodecError, DataError
from helpers.codec.files import compress_file, decompress_file
from helpers.codec.imageio import COLOUR_ALPHA_DROPPED, COLOUR_GRAY, COLOUR_NAMES, COLOUR_RGB
from helpers.codec.imageio import load_image as load_input_image
from helpers.codec.leaf_codec import LeafCodec
from helpers.commands import main

# Every level of the shipped checkpoint must be at least as good as the one below it.
PSNR_TOLERANCE_DB = 0.0


def _round_trip(codec, rgb, level=3):
    data = codec.encode(rgb, level)
    out = codec.decode(data)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    return data, out


# ----- round trips --------------------------------------------------------------------------------------------
def test_every_level_round_trips_with_rate_and_quality_in_order(codec):
    for rgb in leaves(3, real=True):
        h, w = rgb.shape[:2]
        bpps, psnrs = [], []
        for level in codec.levels:
            data, out = _round_trip(codec, rgb, level)
            assert parse(data).level == level
            bpps.append(8 * len(data) / (h * w))
            psnrs.append(psnr(out, rgb))
        assert all(a < b for a, b in zip(bpps, bpps[1:])), f"bpp must rise with the level: {bpps}"
        assert all(b > a - PSNR_TOLERANCE_DB for a, b in zip(psnrs, psnrs[1:])), f"PSNR vs level: {psnrs}"
        assert psnrs[-1] > psnrs[0] + 0.5, psnrs


@pytest.mark.parametrize(
    "size", [(1, 1), (7, 13), (13, 7), (64, 64), (65, 129)], ids=lambda s: f"{s[1]}x{s[0]}"
)
def test_small_and_odd_sizes(codec, leaf, size):
    h, w = size
    rgb = np.ascontiguousarray(leaf[100 : 100 + h, 60 : 60 + w])
    data, out = _round_trip(codec, rgb)
    assert (parse(data).height, parse(data).width) == (h, w)
    assert np.abs(out.astype(int) - rgb).mean() < 40  # a real image, not noise or black


def test_decoding_a_file_twice_gives_the_same_pixels(codec, leaf):
    data = codec.encode(leaf, 4)
    assert data == codec.encode(leaf, 4)
    assert np.array_equal(codec.decode(data), codec.decode(data))


# ----- input formats ------------------------------------------------------------------------------------------
def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (grey or RGB) written by hand: Pillow cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if arr.ndim == 3 else 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _file_round_trip(codec, src: Path, tmp_path: Path):
    leaf_file, png = tmp_path / "x.leaf", tmp_path / "x.png"
    compress_file(codec, src, leaf_file, level=4)
    header = decompress_file(codec, leaf_file, png)
    return header, Image.open(png)


def test_grayscale_decodes_to_grayscale(codec, leaf, tmp_path):
    grey = Image.fromarray(leaf).convert("L")
    grey.save(tmp_path / "g.png")
    header, out = _file_round_trip(codec, tmp_path / "g.png", tmp_path)
    assert header.colour == COLOUR_GRAY and out.mode == "L" and out.size == grey.size
    assert psnr(np.asarray(out), np.asarray(grey)) > 18


def test_rgba_drops_alpha(codec, leaf, tmp_path):
    alpha = np.random.default_rng(0).integers(0, 256, leaf.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([leaf, alpha]), "RGBA").save(tmp_path / "a.png")
    rgb, colour = load_input_image(tmp_path / "a.png")
    assert colour == COLOUR_ALPHA_DROPPED and np.array_equal(rgb, leaf)  # colour kept as is, alpha ignored
    header, out = _file_round_trip(codec, tmp_path / "a.png", tmp_path)
    assert header.colour == COLOUR_ALPHA_DROPPED and out.mode == "RGB"
    assert "alpha dropped" in COLOUR_NAMES[header.colour]


def test_palette_with_transparency_drops_alpha(tmp_path):
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)).quantize(16)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    assert load_input_image(tmp_path / "p.png")[1] == COLOUR_ALPHA_DROPPED


@pytest.mark.parametrize("channels", [1, 3], ids=["grey16", "rgb48"])
def test_16_bit_png_is_reduced_to_8_bits(codec, tmp_path, channels):
    shape = (40, 56, 3) if channels == 3 else (40, 56)
    arr = np.random.default_rng(2).integers(0, 65536, shape, dtype=np.uint16)
    (tmp_path / "d.png").write_bytes(_png16(arr))
    rgb, colour = load_input_image(tmp_path / "d.png")
    top = (arr >> 8).astype(np.uint8)
    assert np.array_equal(rgb, top if channels == 3 else np.dstack([top] * 3))
    assert colour == (COLOUR_RGB if channels == 3 else COLOUR_GRAY)
    header, out = _file_round_trip(codec, tmp_path / "d.png", tmp_path)
    assert out.mode == ("RGB" if channels == 3 else "L") and out.size == (56, 40)


def test_cmyk_jpeg_is_converted_to_rgb(codec, leaf, tmp_path):
    Image.fromarray(leaf).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb, colour = load_input_image(tmp_path / "c.jpg")
    assert colour == COLOUR_RGB and rgb.shape == leaf.shape and psnr(rgb, leaf) > 25
    header, out = _file_round_trip(codec, tmp_path / "c.jpg", tmp_path)
    assert out.mode == "RGB" and out.size == (leaf.shape[1], leaf.shape[0])


def test_exif_orientation_is_applied(codec, tmp_path):
    # 64 wide x 32 tall: red left half, blue right half. Orientation 6 = "rotate 90 degrees clockwise to view".
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, :32, 0] = 255
    arr[:, 32:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb, _ = load_input_image(tmp_path / "r.jpg")
    assert rgb.shape == (64, 32, 3)  # shown upright: now 32 wide x 64 tall
    assert rgb[:24, :, 0].mean() > 200 and rgb[40:, :, 2].mean() > 200  # the left half turned to the top
    header, out = _file_round_trip(codec, tmp_path / "r.jpg", tmp_path)
    assert (header.width, header.height) == (32, 64) and out.size == (32, 64)


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "truncated_jpeg", "empty"])
def test_unreadable_images_give_clear_errors(tmp_path, leaf, kind):
    path = tmp_path / "bad.png"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("not an image")
    elif kind == "truncated_jpeg":
        buf = io.BytesIO()
        Image.fromarray(leaf).save(buf, format="JPEG")
        path.write_bytes(buf.getvalue()[:200])
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(DataError, match=r"image not found|is a folder|cannot read image") as exc:
        load_input_image(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


# ----- determinism --------------------------------------------------------------------------------------------
_DETERMINISM_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import torch
n = int(sys.argv[1])
torch.set_num_threads(n)
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.imageio import read_image
md5 = lambda b: hashlib.md5(b).hexdigest()
pt, ort = LeafCodec(), LeafCodec(backend="onnx")
out = {"threads": torch.get_num_threads()}
for p in sys.argv[2:]:
    rgb = read_image(p)
    images = [("full", rgb), ("crop", rgb[17:87, 30:130].copy())]
    if p == sys.argv[2]:  # 2x3 transform tiles and 1x2 coding tiles: the tile workers share the work
        images.append(("tiled", np.tile(rgb, (3, 5, 1))[:560, :1100].copy()))
    for name, im in images:
        for level in (1, 6):
            runs = []
            for _ in range(2):
                data = pt.encode(im, level)
                runs.append([md5(data), md5(pt.decode(data).tobytes()), md5(ort.decode(data).tobytes())])
            out[f"{p}:{name}:{level}"] = runs
print(json.dumps(out))
"""


def test_encode_and_decode_do_not_depend_on_the_thread_count(tmp_path):
    """Fresh interpreters with 1 and 2 threads (OpenMP/MKL and torch) must write the same bytes and decode the
    same pixels, with both backends, on repeated runs, also for an image of several tiles (coded by one tile
    worker at 1 thread, two at 2). (oneDNN's float32 convolutions are thread-count dependent; every tile runs
    at one intra-op thread, see helpers.codec.tiling.)"""
    images = []
    for i, rgb in enumerate(leaves(2)):
        images.append(str(tmp_path / f"leaf{i}.png"))
        Image.fromarray(rgb).save(images[-1])
    results = {}
    for n in (1, 2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        proc = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT, str(n), *images], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert results[n].pop("threads") == n
    for key, runs in results[1].items():
        assert runs[0] == runs[1], f"{key}: two runs in one process differ"
        assert runs == results[2][key], f"{key}: 1 thread and 2 threads differ"


# ----- command line -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def leaf_files(tmp_path_factory):
    """Two real leaves as PNG and one compressed .leaf file."""
    folder = tmp_path_factory.mktemp("cli")
    srcs = []
    for i, rgb in enumerate(leaves(2)):
        srcs.append(folder / f"leaf{i}.png")
        Image.fromarray(rgb).save(srcs[-1])
    assert main(["compress", str(srcs[0]), "-o", str(folder / "leaf0.leaf"), "--quality", "2"]) == 0
    return folder, srcs, folder / "leaf0.leaf"


def test_cli_compress_decompress_info_exact_forms(tmp_path, leaf_files, capsys):
    _, (a, b), _ = leaf_files
    one = tmp_path / "one.leaf"
    proc = run_cli("compress", a, "-o", one, "--quality", "5", "--checkpoint", paths.SHIPPED_CHECKPOINT)
    assert proc.returncode == 0, proc.stderr
    assert "bpp" in proc.stdout and parse(one.read_bytes()).level == 5

    proc = run_cli("compress", a, b, "--out-dir", tmp_path / "batch")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["leaf0.leaf", "leaf1.leaf"]

    proc = run_cli("decompress", *sorted((tmp_path / "batch").glob("*.leaf")), "--out-dir", tmp_path / "png")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["leaf0.png", "leaf1.png"]

    proc = run_cli("decompress", one, tmp_path / "ort.png", "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr
    assert main(["decompress", str(one), "-o", str(tmp_path / "pt.png")]) == 0
    ort_px = np.asarray(Image.open(tmp_path / "ort.png"), dtype=int)
    pt_px = np.asarray(Image.open(tmp_path / "pt.png"), dtype=int)
    assert ort_px.shape == (256, 256, 3) and np.abs(ort_px - pt_px).max() <= 1

    capsys.readouterr()
    assert main(["info", str(one)]) == 0
    out = capsys.readouterr().out
    for field in ("256x256 (RGB)", "level:     5", "leaf-hyperprior", "bpp:", "in 1 coding tile)"):
        assert field in out
    assert not tmp_leftovers(tmp_path)


def test_cli_unknown_quality_is_refused_listing_the_levels(tmp_path, leaf_files):
    _, (a, _), _ = leaf_files
    proc = run_cli("compress", a, "-o", tmp_path / "x.leaf", "--quality", "9")
    assert_one_line_error(proc, "unknown quality level 9", "valid levels are 1, 2, 3, 4, 5, 6, 7")
    assert not (tmp_path / "x.leaf").exists()


def _main_error(capsys, argv, *fragments):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_cli_does_not_overwrite_without_force(tmp_path, leaf_files, capsys):
    _, (a, b), leaf_file = leaf_files
    out = tmp_path / "x.leaf"
    assert main(["compress", str(a), "-o", str(out)]) == 0
    before = out.read_bytes()
    _main_error(capsys, ["compress", b, "-o", out], "exists; pass --force")
    assert out.read_bytes() == before
    assert main(["compress", str(b), "-o", str(out), "--force"]) == 0
    assert out.read_bytes() != before

    png = tmp_path / "x.png"
    png.write_bytes(b"keep me")
    _main_error(capsys, ["decompress", leaf_file, "-o", png], "exists; pass --force")
    assert png.read_bytes() == b"keep me"
    assert main(["decompress", str(leaf_file), "-o", str(png), "--force"]) == 0
    assert Image.open(png).size == (256, 256)
    assert not tmp_leftovers(tmp_path)


def test_cli_writes_atomically(tmp_path, leaf_files, capsys, monkeypatch):
    _, (a, _), _ = leaf_files
    out = tmp_path / "x.leaf"
    out.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    _main_error(capsys, ["compress", a, "-o", out, "--force"], "cannot write", "No space left")
    assert out.read_bytes() == b"old" and not tmp_leftovers(tmp_path)
    monkeypatch.undo()
    (tmp_path / "dir.leaf").mkdir()  # the destination is a folder
    _main_error(capsys, ["compress", a, "-o", tmp_path / "dir.leaf", "--force"], "cannot write")
    assert not tmp_leftovers(tmp_path)


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["compress", "{missing}", "-o", "{tmp}/x.leaf"], ["image not found"]),
        (["compress", "{text}", "-o", "{tmp}/x.leaf"], ["cannot read image"]),
        (["compress", "{a}", "-o", "{tmp}/nofolder/x.leaf"], ["output folder does not exist"]),
        (["compress", "{a}", "{a}", "-o", "{tmp}/x.leaf"], ["-o takes one input"]),
        (["compress", "{a}"], ["missing output"]),
        (["compress", "{a}", "-o", "{tmp}/x.leaf", "--out-dir", "{tmp}"], ["either -o OUTPUT or --out-dir"]),
        (["compress", "{a}", "--out-dir", "{text}"], ["is a file, not a folder"]),
        (["compress", "{a}", "-o", "{tmp}/x.leaf", "--quality", "x"], ["invalid float value"]),
        (["compress", "{a}", "-o", "{tmp}/x.leaf", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["decompress", "{missing}", "-o", "{tmp}/x.png"], ["file not found"]),
        (["decompress", "{text}", "-o", "{tmp}/x.png"], ["not a .leaf file"]),
        (["decompress", "{tmp}", "-o", "{tmp}/x.png"], ["is a folder"]),
        (["info", "{text}"], ["not a .leaf file"]),
        (["info", "{truncated}"], ["truncated file"]),
        (["decompress", "{leaf}", "-o", "{tmp}/x.png", "--backend", "tf"], ["invalid choice: 'tf'"]),
    ],
    ids=[
        "missing-image",
        "text-as-image",
        "no-out-folder",
        "o-with-two-inputs",
        "no-output",
        "o-and-out-dir",
        "out-dir-is-a-file",
        "quality-not-int",
        "unknown-option",
        "missing-leaf",
        "text-as-leaf",
        "folder-as-leaf",
        "info-text",
        "info-truncated",
        "unknown-backend",
    ],  # fmt: skip
)
def test_cli_errors_are_one_line(tmp_path, leaf_files, capsys, argv, fragments):
    _, (a, _), leaf_file = leaf_files
    (tmp_path / "t.png").write_text("hello")
    (tmp_path / "cut.leaf").write_bytes(leaf_file.read_bytes()[:30])
    subs = {"missing": tmp_path / "nope.png", "text": tmp_path / "t.png", "tmp": tmp_path, "a": a,
            "leaf": leaf_file, "truncated": tmp_path / "cut.leaf"}  # fmt: skip
    argv = [s.format(**subs) for s in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not (tmp_path / "x.leaf").exists() and not (tmp_path / "x.png").exists()


# ----- checkpoints --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return torch.load(paths.SHIPPED_CHECKPOINT, map_location="cpu", weights_only=True)


def _retrained(shipped, tmp_path, damaged=False, config=None):
    """A copy of the shipped checkpoint with one weight changed (and its hash updated unless ``damaged``)."""
    ck = {**shipped, "model": dict(shipped["model"]), "config": dict(config or shipped["config"])}
    key = "g_s.0.bias"
    ck["model"][key] = ck["model"][key] + 0.01
    if not damaged:
        ck["weights_sha256"] = weights_hash(ck["model"])
    path = tmp_path / "other.pth.tar"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("kind", ["missing", "garbage", "tensor", "damaged", "architecture"])
def test_bad_checkpoints_are_refused_clearly(tmp_path, shipped, capsys, leaf_files, kind):
    _, _, leaf_file = leaf_files
    path = tmp_path / "ck.pth.tar"
    expected = {"missing": "checkpoint not found", "garbage": "cannot read checkpoint",
                "tensor": "is not a shipped leaf-codec checkpoint", "damaged": "is damaged",
                "architecture": "does not fit the leaf-hyperprior architecture"}[kind]  # fmt: skip
    if kind == "garbage":
        path.write_bytes(os.urandom(1000))
    elif kind == "tensor":
        torch.save(torch.randn(3, 3), path)
    elif kind == "damaged":
        path = _retrained(shipped, tmp_path, damaged=True)
    elif kind == "architecture":
        path = _retrained(shipped, tmp_path, config={**shipped["config"], "M": 96})
    with pytest.raises(CheckpointError, match=expected):
        LeafCodec(path)
    _main_error(capsys, ["decompress", leaf_file, "-o", tmp_path / "x.png", "--checkpoint", path], expected)
    assert not (tmp_path / "x.png").exists()


def test_a_file_from_another_model_is_refused(tmp_path, shipped, capsys, leaf_files):
    _, _, leaf_file = leaf_files
    other = _retrained(shipped, tmp_path)
    with pytest.raises(CodecError, match="pass the matching --checkpoint"):
        LeafCodec(other).decode(read_file(leaf_file))
    _main_error(capsys, ["decompress", leaf_file, "-o", tmp_path / "x.png", "--checkpoint", other],
                "file was written by model", "pass the matching --checkpoint")  # fmt: skip
    assert not (tmp_path / "x.png").exists()


def test_cli_batch_errors_never_share_a_line_with_the_progress_bar(tmp_path, leaf_files):
    """The progress bar and error lines share stderr; an error is written as a whole line of its own."""
    _, (a, b), _ = leaf_files
    (tmp_path / "bad.png").write_text("not an image")
    proc = run_cli("compress", a, tmp_path / "bad.png", b, "--out-dir", tmp_path / "out")
    assert proc.returncode == 2
    pieces = [p for p in re.split(r"[\r\n]", proc.stderr) if "error" in p]
    assert len(pieces) == 1 and pieces[0].startswith(f"error: {tmp_path / 'bad.png'}: cannot read image"), (
        pieces
    )
    assert [ln.split(" -> ")[0] for ln in proc.stdout.splitlines()] == [str(a), str(b)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["leaf0.leaf", "leaf1.leaf"]


# ----- tunes: the MSE and the perceptual checkpoint ------------------------------------------------------------
@pytest.fixture
def perceptual_tune(tmp_path, shipped, monkeypatch):
    """A stand-in perceptual checkpoint (other weights, the perceptual model's name) installed as the tune."""
    from helpers.codec import checkpoints

    path = _retrained(shipped, tmp_path)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({**ck, "name": "leaf-hyperprior-perceptual"}, path)
    tunes = {**checkpoints.TUNES, "perceptual": ("leaf-hyperprior-perceptual", path)}
    monkeypatch.setattr(checkpoints, "TUNES", tunes)
    return path


def test_tune_perceptual_writes_its_model_and_decoding_finds_it(
    tmp_path, leaf_files, perceptual_tune, capsys
):
    _, (a, b), _ = leaf_files
    mse, perc = tmp_path / "mse.leaf", tmp_path / "perc.leaf"
    assert main(["compress", str(a), "-o", str(mse), "--quality", "4"]) == 0
    assert main(["compress", str(b), "-o", str(perc), "--quality", "4", "--tune", "perceptual"]) == 0
    assert parse(perc.read_bytes()).model_name == "leaf-hyperprior-perceptual"
    assert parse(mse.read_bytes()).model_name == "leaf-hyperprior"
    capsys.readouterr()
    assert main(["info", str(perc)]) == 0
    assert "LPIPS-tuned" in capsys.readouterr().out
    # One batch, files of both models, no --checkpoint: each decoded by the model that wrote it.
    assert main(["decompress", str(mse), str(perc), "--out-dir", str(tmp_path / "png")]) == 0
    for name, ck in (("mse", paths.SHIPPED_CHECKPOINT), ("perc", perceptual_tune)):
        expected = LeafCodec(ck).decode((tmp_path / f"{name}.leaf").read_bytes())
        assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / f"{name}.png")), expected)
    # The tunes really differ: the MSE model refuses the perceptual model's file.
    with pytest.raises(CodecError, match="pass the matching --checkpoint"):
        LeafCodec().decode(perc.read_bytes())


def test_tune_errors_are_one_line(tmp_path, leaf_files, perceptual_tune, capsys, monkeypatch):
    from helpers.codec import checkpoints

    _, (a, _), _ = leaf_files
    _main_error(capsys, ["compress", a, "-o", tmp_path / "x.leaf", "--tune", "perceptual", "--checkpoint",
                         perceptual_tune], "give --checkpoint or --tune, not both")  # fmt: skip
    monkeypatch.setattr(
        checkpoints, "TUNES", {**checkpoints.TUNES, "perceptual": ("p", tmp_path / "none.pth")}
    )
    _main_error(capsys, ["compress", a, "-o", tmp_path / "x.leaf", "--tune", "perceptual"],
                "the perceptual checkpoint is not installed")  # fmt: skip
    assert not (tmp_path / "x.leaf").exists()


# ----- the high tune: codec v3, shipped beside today's model (issue 35) ----------------------------------------
# The v3 campaign's float16 weights, which outputs/checkpoints/leaf_hyperprior_v3.pth.tar was shipped from.
V3_WEIGHTS = paths.OUTPUTS / "runs" / "bakeoff" / "v3" / "weights_fp16.pt"


def test_tune_high_is_codec_v3_with_ten_levels_and_its_files_decode_without_a_flag(
    tmp_path, leaf_files, capsys
):
    _, (a, b), _ = leaf_files
    v3, mse = tmp_path / "v3.leaf", tmp_path / "mse.leaf"
    assert main(["compress", str(a), "-o", str(v3), "--level", "10", "--tune", "high"]) == 0
    assert main(["compress", str(b), "-o", str(mse), "--level", "7"]) == 0
    assert parse(v3.read_bytes()).model_name == "leaf-hyperprior-v3"
    capsys.readouterr()
    assert main(["info", str(v3)]) == 0
    out = capsys.readouterr().out
    assert "model:     leaf-hyperprior-v3 " in out and "codec v3" in out and "level:     10\n" in out
    # One batch of both models, no flag: each file finds the model that wrote it.
    assert main(["decompress", str(v3), str(mse), "--out-dir", str(tmp_path / "png")]) == 0
    for name, ck in (("v3", paths.V3_CHECKPOINT), ("mse", paths.SHIPPED_CHECKPOINT)):
        expected = LeafCodec(ck).decode((tmp_path / f"{name}.leaf").read_bytes())
        assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / f"{name}.png")), expected)
    # v3's top level is above today's: level 10 exists only there, and it is the better picture.
    rgb = np.asarray(Image.open(a))
    assert psnr(rgb, np.asarray(Image.open(tmp_path / "png" / "v3.png"))) > 30
    _main_error(capsys, ["compress", a, "-o", tmp_path / "x.leaf", "--level", "10"], "level")


def test_the_shipped_v3_checkpoint_is_the_shipping_code_s_export_of_the_committed_weights():
    """outputs/checkpoints/leaf_hyperprior_v3.pth.tar is ``python -m helpers export-checkpoint`` of the v3
    campaign's float16 weights (loaded into the float32 model): the same weights, hence the same hash in files."""
    from helpers.training.shipping import export_checkpoint

    ours = torch.load(paths.V3_CHECKPOINT, map_location="cpu", weights_only=True)
    fresh = export_checkpoint(
        torch.load(V3_WEIGHTS, map_location="cpu", weights_only=False), "leaf-hyperprior-v3"
    )
    assert ours["weights_sha256"] == fresh["weights_sha256"] == weights_hash(ours["model"])
    assert (ours["name"], ours["architecture"], ours["step"]) == ("leaf-hyperprior-v3", "composed", 133_468)
