"""Hardening, round four (issue 34): unbounded reads, closed pipes and full devices, decompression bombs and
damaged JPEGs, FIFOs as inputs, long output names, levels typed back as printed, byte units, and messages. Each
test failed before its fix (a hang is turned into a failure by ``_deadline``)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib

import pytest
from codec_samples import (
    ROOT,
    assert_one_line_error,
    cli_files,
    one_error_line,
    run_in_process,
    synthetic_leaf,
    tmp_leftovers,
)
from PIL import Image

from helpers.codec import cli, container, fileio
from helpers.codec.container import pack, parse
from helpers.codec.fileio import atomic_write, leftover_temporaries
from helpers.codec.imageio import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return cli_files(tmp_path_factory.mktemp("hardening"))


_run, _error = run_in_process, one_error_line


@contextlib.contextmanager
def _deadline(seconds: int):
    """A hang (reading a FIFO, /dev/zero) becomes a failure instead of a stuck test run."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _python(code: str, *args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=ROOT, **kw)


# ----- 1. unbounded reads ---------------------------------------------------------------------------------------
def test_dev_zero_and_a_4_gib_sparse_file_are_refused_at_once(tmp_path, files, capsys):
    sparse = tmp_path / "x.leaf"
    with open(sparse, "wb") as f:
        f.truncate(4 * 2**30)  # sparse: no disk used
    t0 = time.perf_counter()
    with _deadline(60):
        for argv in (["info", "/dev/zero"], ["decompress", "/dev/zero", "-o", tmp_path / "z.png"]):
            assert "not a regular file" in _error(capsys, *argv)
        for argv in (["info", sparse], ["decompress", sparse, "-o", tmp_path / "z.png"]):
            assert "not a .leaf file" in _error(capsys, *argv)
        # A real header with 4 GiB after it: what the header accounts for is read, the rest is not.
        tail = tmp_path / "tail.leaf"
        data = files[1].read_bytes()
        tail.write_bytes(data)
        with open(tail, "r+b") as f:
            f.truncate(4 * 2**30)
        line = _error(capsys, "info", tail)
        assert f"{4 * 2**30 - len(data)} unexpected bytes after the checksum" in line, line
    assert time.perf_counter() - t0 < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tail.leaf", "x.leaf"]


def test_a_stream_length_beyond_the_file_is_refused_without_reading_it(tmp_path, files):
    """The header says 2^34 bytes of latent stream; the file is small: refused as truncated, nothing allocated."""
    h = parse(files[1].read_bytes())
    z = h.streams[0]
    head = pack(h.model_name, h.weights_hash, h.level, h.colour, h.height, h.width, h.symbols_crc, [z])[:-4]
    count_at = len(head) - len(z) - len(container._varint(len(z))) - 1
    assert head[count_at] == 1
    head = head[:count_at] + b"\x02" + head[count_at + 1 :]
    forged = tmp_path / "forged.leaf"
    forged.write_bytes(head + container._varint(2**34))
    with open(forged, "r+b") as f:
        f.truncate(2**30)  # sparse
    tracemalloc.start()
    try:
        with pytest.raises(container.CodecError, match="truncated file: it ends inside the latent stream 1"):
            container.read_file(forged)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    forged.write_bytes(head + container._varint(2**34) + bytes(64))  # small: read, and parse says the same
    with pytest.raises(container.CodecError, match="truncated file: it ends inside the latent stream 1"):
        parse(container.read_file(forged))


# ----- 2. closed pipes and full devices ------------------------------------------------------------------------
def test_info_into_a_closed_pipe_is_quiet_and_into_a_full_device_one_line(files):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "helpers", "info", str(files[1])]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and not err, err
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            cmd, env=env, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120
        )
    assert_one_line_error(proc, "cannot write to standard output", "No space left on device")


def test_a_batch_whose_output_pipe_closes_still_writes_every_file(tmp_path, files):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.png").write_bytes(files[0].read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "helpers",
        "compress",
        *sorted(tmp_path.glob("*.png")),
        "--out-dir",
        tmp_path / "out",
    ]
    proc = subprocess.Popen(
        list(map(str, cmd)), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err and not err.strip(), err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.leaf", "b.leaf", "c.leaf"]


# ----- 3. decompression bombs and damaged JPEGs ----------------------------------------------------------------
def _jpeg(rgb_or_im, **kw) -> bytes:
    im = rgb_or_im if isinstance(rgb_or_im, Image.Image) else Image.fromarray(rgb_or_im)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_a_jpeg_claiming_100_megapixels_in_333_bytes_is_refused(tmp_path, capsys):
    small = bytearray(_jpeg(Image.new("L", (16, 16), 128)))
    sof = small.index(b"\xff\xc0")
    struct.pack_into(">HH", small, sof + 5, 10000, 10000)
    (tmp_path / "bomb.jpg").write_bytes(small)
    t0 = time.perf_counter()
    line = _error(capsys, "compress", tmp_path / "bomb.jpg", "-o", tmp_path / "bomb.leaf")
    assert "10000x10000" in line and "decompression bomb" in line and "--max-ratio" in line, line
    assert time.perf_counter() - t0 < 60 and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.jpg"]


def test_the_ratio_limit_spares_flat_rgb_and_grey_pngs_and_can_be_raised(tmp_path, capsys):
    size = (1100, 1000)  # over RATIO_FLOOR
    Image.new("RGB", size, (80, 120, 40)).save(tmp_path / "rgb.png")
    Image.new("L", size, 100).save(tmp_path / "grey.png")
    Image.new("1", size, 0).save(tmp_path / "bits.png")  # 1-bit flat: ~23000:1, no photo
    assert load_image(tmp_path / "rgb.png")[0].shape == (1000, 1100, 3)
    assert load_image(tmp_path / "grey.png")[0].shape == (1000, 1100, 3)
    assert load_image(tmp_path / "bits.png", max_ratio=10**6)[0].shape == (1000, 1100, 3)
    line = _error(capsys, "compress", tmp_path / "bits.png", "-o", tmp_path / "bits.leaf")
    assert "compression ratio" in line and "raise --max-ratio" in line, line
    assert "--max-ratio must be" in _error(capsys, "compress", tmp_path / "bits.png", "-o", tmp_path / "x.leaf",
                                           "--max-ratio", "inf")  # fmt: skip
    assert not (tmp_path / "bits.leaf").exists() and not (tmp_path / "x.leaf").exists()


def test_a_jpeg_with_zeroed_data_gets_a_note_and_a_cut_one_an_error(tmp_path, capsys):
    good = _jpeg(synthetic_leaf(3, 128), quality=90)
    sos = good.index(b"\xff\xda")
    zeroed = bytearray(good)
    zeroed[sos + 600 : sos + 700] = bytes(100)
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "zeroed.jpg").write_bytes(zeroed)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    code, _, err = _run(capsys, "compress", tmp_path / "zeroed.jpg", "-o", tmp_path / "zeroed.leaf")
    assert (
        code == 0 and "run of 100 zero bytes" in err and "invented" in err and len(err.splitlines()) == 1
    ), err
    code, _, err = _run(capsys, "compress", tmp_path / "good.jpg", "-o", tmp_path / "good.leaf")
    assert code == 0 and not err.strip(), err
    assert "truncated" in _error(capsys, "compress", tmp_path / "cut.jpg", "-o", tmp_path / "cut.leaf")
    assert not (tmp_path / "cut.leaf").exists()


# ----- 4. FIFOs and special files as inputs -------------------------------------------------------------------
def test_fifos_and_devices_are_refused_as_inputs_without_blocking(tmp_path, files, capsys):
    os.mkfifo(tmp_path / "f.png")
    os.mkfifo(tmp_path / "f.leaf")
    with _deadline(60):
        for argv in (["compress", tmp_path / "f.png", "-o", tmp_path / "x.leaf"],
                     ["decompress", tmp_path / "f.leaf", "-o", tmp_path / "x.png"],
                     ["info", tmp_path / "f.leaf"], ["metrics", tmp_path / "f.png", files[0], "--no-lpips"],
                     ["metrics", files[0], "/dev/zero", "--no-lpips"]):  # fmt: skip
            line = _error(capsys, *argv)
            assert "not a regular file" in line and ("FIFO" in line or "device" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.leaf", "f.png"]


# ----- 5. long output names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [242, 250, 255])
def test_an_output_name_of_up_to_255_bytes_can_be_written(tmp_path, files, capsys, length):
    out = tmp_path / ("x" * (length - 5) + ".leaf")
    assert _run(capsys, "compress", files[0], "-o", out)[0] == 0
    assert out.is_file() and not tmp_leftovers(tmp_path)
    long_png = tmp_path / ("é" * ((length - 4) // 2) + ".png")  # two bytes a character
    atomic_write(long_png, b"png")
    assert long_png.read_bytes() == b"png" and not tmp_leftovers(tmp_path)


def test_temporaries_of_long_names_are_still_found_and_kept_apart(tmp_path, monkeypatch):
    a, b = tmp_path / ("a" * 250 + "1"), tmp_path / ("a" * 250 + "2")

    def killed(f):
        raise KeyboardInterrupt  # a write interrupted: the temporary is removed, so plant one by hand

    prefix = fileio._temp_prefix(a)
    assert len(os.fsencode(prefix)) + 8 + len(fileio.TEMP_SUFFIX) <= 255
    assert prefix != fileio._temp_prefix(b)
    (tmp_path / f"{prefix}abcdefgh.tmp").write_bytes(b"")
    assert leftover_temporaries(a) == [tmp_path / f"{prefix}abcdefgh.tmp"] and not leftover_temporaries(b)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(b, killed)
    assert not leftover_temporaries(b)


# ----- 6. a printed level can be typed back --------------------------------------------------------------------
def test_the_level_compress_prints_is_accepted_by_level(tmp_path, files, capsys):
    code, out, _ = _run(capsys, "compress", files[0], "-o", tmp_path / "t.leaf", "--target-bpp", "0.9")
    assert code == 0, out
    printed = out.rsplit("(level ", 1)[1].rstrip(")\n")
    units = parse((tmp_path / "t.leaf").read_bytes()).level_units
    assert units % 256, "the target should need a fractional level"
    assert len(printed.split(".")[1]) <= 4  # as printed, not the exact 1/256 value
    code, out, err = _run(capsys, "compress", files[0], "-o", tmp_path / "l.leaf", "--level", printed)
    assert code == 0, err
    assert parse((tmp_path / "l.leaf").read_bytes()).level_units == units
    assert f"(level {printed})" in out
    assert "unknown quality level 3.3" in _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf",
                                                 "--level", "3.3")  # fmt: skip


# ----- 7. units of --max-bytes and --max-memory -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [("50KiB", 51200), ("50kib", 51200), ("50KB", 50000), ("50kb", 50000), ("50K", 51200), ("50k", 51200),
     ("1MB", 10**6), ("1MiB", 2**20), ("1M", 2**20), ("2GB", 2 * 10**9), ("2G", 2 * 2**30), ("100B", 100),
     ("100", 100), ("1.5K", 1536), (" 3 KiB ", 3072)],
)  # fmt: skip
def test_byte_sizes_take_the_usual_units(text, value):
    assert cli._size(text, 1024, "--max-bytes") == value


@pytest.mark.parametrize("text", ["50XB", "KiB", "50iB", "5 0K", "50KiBB"])
def test_byte_sizes_with_unknown_units_are_refused(text):
    with pytest.raises(cli.LeafCodecError, match="must be a number such as 64M"):
        cli._size(text, 1024, "--max-bytes")


def test_max_bytes_in_kb_is_thousands(tmp_path, files, capsys):
    code, out, err = _run(capsys, "compress", files[0], "-o", tmp_path / "k.leaf", "--max-bytes", "1KB")
    assert code == 0, err
    assert (tmp_path / "k.leaf").stat().st_size <= 1000
    help_text = _run(capsys, "compress", "--help")[1]
    assert "KiB" in help_text and "1000" in help_text


# ----- 8. messages ---------------------------------------------------------------------------------------------
def test_a_stem_clash_names_both_files_and_creates_nothing(tmp_path, files, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "leaf.png").write_bytes(files[0].read_bytes())
    line = _error(
        capsys, "compress", tmp_path / "a/leaf.png", tmp_path / "b/leaf.png", "--out-dir", tmp_path / "o"
    )
    assert str(tmp_path / "a/leaf.png") in line and str(tmp_path / "b/leaf.png") in line, line
    assert not (tmp_path / "o").exists()


def test_out_dir_naming_a_file_and_checkpoint_naming_a_folder(tmp_path, files, capsys):
    (tmp_path / "file").write_bytes(b"x")
    line = _error(capsys, "compress", files[0], "--out-dir", tmp_path / "file")
    assert "is a file, not a folder" in line and "File exists" not in line, line
    line = _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--checkpoint", tmp_path)
    assert "is a folder" in line and "not found" not in line, line
    line = _error(capsys, "decompress", files[1], "-o", tmp_path / "x.png", "--checkpoint", tmp_path)
    assert "is a folder" in line, line


def _forged(data: bytes, **changes) -> bytes:
    h = parse(data)
    f = {"model_name": h.model_name, "weights_hash": h.weights_hash, "level": h.level, "colour": h.colour,
         "height": h.height, "width": h.width, "symbols_crc": h.symbols_crc, "streams": list(h.streams)}  # fmt: skip
    return pack(**{**f, **changes})


def test_a_forged_level_reads_as_a_damaged_file_and_info_warns(tmp_path, files, capsys):
    data = files[1].read_bytes()
    for level, shown_as in ((9, "9"), (0, "0"), (65535 / 256, "255.996")):
        (tmp_path / "f.leaf").write_bytes(_forged(data, level=level))
        line = _error(capsys, "decompress", tmp_path / "f.leaf", "-o", tmp_path / "f.png")
        assert "corrupted header" in line and f"level {shown_as}" in line and "1..7" in line, line
        assert "unknown quality level" not in line and not (tmp_path / "f.png").exists()
    (tmp_path / "f.leaf").write_bytes(_forged(data, level=0))
    code, out, err = _run(capsys, "info", tmp_path / "f.leaf")
    assert code == 0 and "level:     0" in out and err.startswith("warning: level 0 is below 1"), err


def test_counts_of_one_are_singular(tmp_path, files, capsys):
    data = files[1].read_bytes()
    with pytest.raises(container.CodecError, match=r"1 stream for a 64x64 image, which has 1 coding tile$"):
        parse(_forged(data, streams=list(parse(data).streams)[:1]))
    with pytest.raises(container.CodecError, match="1 unexpected byte after the checksum"):
        parse(data + b"\0")
    code, out, _ = _run(capsys, "info", files[1])
    assert "in 1 coding tile)" in out and "tile(s)" not in out, out
    line = _error(capsys, "compress", files[0], "-o", tmp_path / "x.leaf", "--max-bytes", "1")
    assert "the 1 byte asked" in line, line


def test_an_oversized_png_text_chunk_is_worded_for_users(tmp_path, capsys):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    png = png.getvalue()
    body = b"k\0\0" + zlib.compress(b"a" * 2 * 2**20)
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    (tmp_path / "text.png").write_bytes(png[:33] + chunk + png[33:])
    line = _error(capsys, "compress", tmp_path / "text.png", "-o", tmp_path / "x.leaf")
    assert "MAX_TEXT" not in line and "PNG metadata" in line, line


@pytest.mark.parametrize("size", [(1, 1), (256, 1), (1, 256)])
def test_metrics_of_one_pixel_wide_images_give_psnr(tmp_path, capsys, size):
    w, h = size
    Image.fromarray(synthetic_leaf(0, 256)[:h, :w]).save(tmp_path / "a.png")
    Image.fromarray(synthetic_leaf(1, 256)[:h, :w]).save(tmp_path / "b.png")
    code, out, err = _run(capsys, "metrics", tmp_path / "a.png", tmp_path / "b.png")
    assert code == 0 and not err.strip(), err
    lines = dict(ln.split(None, 1) for ln in out.splitlines())
    assert lines["PSNR"].endswith("dB") and float(lines["PSNR"].split()[0]) > 0
    assert "not defined" in lines["MS-SSIM"] and "not defined" in lines["LPIPS"], out


def test_an_input_named_like_an_option_gets_a_hint(tmp_path, files, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-x.jpg").write_bytes(files[0].read_bytes())
    line = _error(capsys, "compress", "-x.jpg", "-o", "x.leaf")
    assert "./-x.jpg" in line, line


def test_an_apng_whose_frame_count_lies_gets_a_true_note(tmp_path, capsys):
    frames = [Image.fromarray(synthetic_leaf(i, 64)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    data = bytearray(buf.getvalue())
    at = data.index(b"acTL")
    struct.pack_into(">I", data, at + 4, 100)
    struct.pack_into(">I", data, at + 12, zlib.crc32(bytes(data[at : at + 12])))
    (tmp_path / "lie.png").write_bytes(data)
    code, _, err = _run(capsys, "compress", tmp_path / "lie.png", "-o", tmp_path / "lie.leaf")
    assert code == 0 and "only the first of 3 frames" in err and "says 100 frames but holds 3" in err, err


def test_a_missing_output_is_reported_before_the_model_loads(files, capsys, monkeypatch):
    from helpers.codec import leaf_codec

    def no_model(*args, **kw):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(leaf_codec.LeafCodec, "__init__", no_model)
    assert "missing output" in _error(capsys, "compress", files[0])
    assert "share the file name stem" in _error(
        capsys, "compress", files[0], files[0], "--out-dir", "/nonexistent"
    )


def test_out_dir_is_not_left_behind_when_the_command_fails(tmp_path, files, capsys):
    out = tmp_path / "new" / "sub"
    assert "unknown quality level" in _error(capsys, "compress", files[0], "--out-dir", out, "--level", "99")
    assert not (tmp_path / "new").exists()
    assert "image not found" in _error(capsys, "compress", tmp_path / "missing.png", "--out-dir", out)
    assert not (tmp_path / "new").exists()
    assert _run(capsys, "compress", files[0], "--out-dir", out)[0] == 0
    assert [p.name for p in out.iterdir()] == ["ref.leaf"]


# ----- 9. info is light ----------------------------------------------------------------------------------------
def test_info_does_not_import_torch(files):
    code = "import sys; from helpers.commands import main; main(['info', sys.argv[1]]); print('torch' in sys.modules)"
    proc = _python(code, files[1], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "False", (proc.stdout, proc.stderr)


def test_what_info_repeats_agrees_with_its_sources():
    """``container.tile_count``, ``cli.DEFAULT_MAX_MEMORY_TEXT`` and ``cli._tune_text`` repeat what modules that
    import PyTorch define."""
    from helpers.codec import budget, tiling
    from helpers.codec.checkpoints import TUNE_OBJECTIVES, TUNES

    for h, w in [(1, 1), (64, 64), (1024, 1024), (1025, 1), (3000, 4000), (1, 200_000)]:
        assert container.tile_count(h, w) == len(tiling.coding_tiles(h, w)), (h, w)
    assert cli._size(cli.DEFAULT_MAX_MEMORY_TEXT, 1024, "--max-memory") == budget.DEFAULT_MAX_MEMORY
    for tune, (name, _) in TUNES.items():
        assert cli._tune_text(name) == TUNE_OBJECTIVES[tune]
    assert cli.TUNE_NAMES == tuple(TUNES) == tuple(TUNE_OBJECTIVES)  # --tune's choices
    assert "not a shipped model" in cli._tune_text("other")
