"""Fuzzing the decoder with damaged .leaf files.

Every mutation of a valid file (bit flips anywhere, truncation at every byte offset, inserted/deleted/random
bytes, wrong magic, other versions, another model's hash or garbled rANS streams with the checksum recomputed,
header fields with the checksum recomputed) must end in ``CodecError`` with a one-line message, within a time
bound, and write no output file. A crash of the interpreter or a hang fails the run loudly (a per-case
faulthandler watchdog dumps the stack and exits).

The default run does ~2,000 cases on 64x64 files in well under a minute; ``pytest -m fuzz_long`` (``make fuzz``)
runs a larger campaign with 256x256 files too. Both use fixed seeds.

Not covered by design: a *forged* header (valid checksum) that changes the level, the colour mode or the size
within the same 64-pixel grid decodes, because those fields are protected by the checksum only.
"""

from __future__ import annotations

import faulthandler
import random
import re
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from codec_samples import leaves, tmp_leftovers
from compressai.entropy_models import GaussianConditional

from helpers.codec.container import FORMAT_VERSION, MAGIC, RoiMap, deflated, pack, parse
from helpers.codec.errors import CodecError, ResourceError
from helpers.codec.files import decompress_file
from helpers.codec.latent_coding import LATENT_LIMIT
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.models import STRIDE

SEED = 20240611
CASE_SECONDS = 10.0  # a case taking longer fails the test
HANG_SECONDS = 120  # the watchdog ends the process (a hang in C code cannot be interrupted otherwise)
CLEAR = re.compile(
    r"not a \.leaf file|truncated|corrupted|checksum|format version|written by model|unknown quality level"
    r"|too large: .* exceeds the limit|within the memory budget: it needs about .*, the budget is"
)


# ----- files and their layout ---------------------------------------------------------------------------------
def fields(data: bytes) -> dict:
    """The container's fields, to rebuild a file with some of them changed (and a valid checksum)."""
    h = parse(data)
    return {"model_name": h.model_name, "weights_hash": h.weights_hash, "level": h.level, "colour": h.colour,
            "height": h.height, "width": h.width, "symbols_crc": h.symbols_crc, "streams": list(h.streams),
            "roi": h.roi}  # fmt: skip


def repack(data: bytes, **changes) -> bytes:
    return pack(**{**fields(data), **changes})


def with_stream(data: bytes, i: int, stream: bytes) -> bytes:
    streams = fields(data)["streams"]
    streams[i] = stream
    return repack(data, streams=streams)


def recrc(body: bytes) -> bytes:
    """Replace the trailing checksum with a valid one for the (mutated) bytes before it."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def _varint_len(n: int) -> int:
    return max(1, -(-n.bit_length() // 7))


def boundaries(data: bytes) -> list[int]:
    """Offsets where the container's sections start (magic, version, name, ..., each stream, checksum)."""
    h = parse(data)
    nl = data[5]
    p0 = 14 + nl  # level
    out = [0, 4, 5, 6, 6 + nl, p0, p0 + 2, p0 + 3, p0 + 7, p0 + 11, p0 + 15]
    pos = p0 + 15 + _varint_len(len(h.streams))
    for s in h.streams:
        out += [pos, pos + _varint_len(len(s))]
        pos += _varint_len(len(s)) + len(s)
    return out + [len(data) - 4]


def _rand(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _flip(rng: random.Random, data: bytes, bits: int) -> bytes:
    b = bytearray(data)
    for pos in rng.sample(range(8 * len(b)), min(bits, 8 * len(b))):
        b[pos // 8] ^= 1 << (pos % 8)
    return bytes(b)


def _garble_stream(rng: random.Random, s: bytes) -> bytes:
    """A different stream of whole 32-bit words (so the container still parses)."""
    kind = rng.randrange(9)
    if kind == 0:
        return _flip(rng, s, rng.choice((1, 1, 2, 3)))
    if kind == 1:
        i = rng.randrange(len(s))
        return s[:i] + bytes([rng.getrandbits(8)]) + s[i + 1 :]
    if kind == 2:
        return _rand(rng, len(s))
    if kind == 3:
        return _rand(rng, 4 * rng.randint(2, max(2, len(s) // 2)))
    if kind == 4:
        return s[: 4 * rng.randint(2, max(2, len(s) // 4 - 1))]  # a cut stream, lengths kept consistent
    if kind == 5:
        return s + _rand(rng, 4 * rng.randint(1, 16))
    if kind == 6:
        return b"\xff" * len(s)  # maximal escape codes in rANS
    if kind == 7:
        return bytes(len(s))
    i = 4 * rng.randrange(len(s) // 4)
    return s[:i] + s[i + 4 :] + s[i : i + 4]  # a word moved to the end


def mutations(data: bytes, rng: random.Random, levels: int, scale: int = 1, every_offset: bool = True):
    """(family, mutated bytes) pairs for a file of a model with ``levels`` quality levels; bytes equal to
    ``data`` are never produced."""
    f = fields(data)
    n = len(data)
    cuts = range(n) if every_offset else sorted({max(0, b + d) for b in boundaries(data) for d in (-1, 0, 1)})
    for i in cuts:
        yield "truncated", data[:i]
    for _ in range(300 * scale):
        yield "bit flips", _flip(rng, data, rng.choice((1, 1, 1, 2, 3, 8)))
    for _ in range(60 * scale):
        i = rng.randrange(n)
        yield "byte overwritten", data[:i] + bytes([(data[i] + rng.randint(1, 255)) % 256]) + data[i + 1 :]
    for _ in range(40 * scale):
        i = rng.randrange(n + 1)
        yield "bytes inserted", data[:i] + _rand(rng, rng.randint(1, 16)) + data[i:]
    for _ in range(40 * scale):
        i = rng.randrange(n)
        yield "bytes deleted", data[:i] + data[i + rng.randint(1, 16) :]
    for _ in range(20 * scale):
        yield "bytes appended", data + _rand(rng, rng.randint(1, 64))
    for _ in range(60 * scale):
        yield "random bytes", _rand(rng, rng.randint(0, 3000))
    for _ in range(40 * scale):
        yield "random after magic", MAGIC + _rand(rng, rng.randint(0, 600))
    for _ in range(40 * scale):
        yield "random after version", MAGIC + bytes([FORMAT_VERSION]) + _rand(rng, rng.randint(0, 600))
    for i in range(4):
        yield "wrong magic", data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :]
    yield "wrong magic", b"\x89PNG\r\n\x1a\n" + data[8:]
    for version in (0, 1, FORMAT_VERSION + 1, 17, 255):
        yield "other version", recrc(data[:4] + bytes([version]) + data[5:])
    for _ in range(10 * scale):
        yield "other model (valid checksum)", repack(data, weights_hash=_rand(rng, 8))
    yield "other model (valid checksum)", repack(data, model_name="leaf-hyperprior-v2")
    yield "other model (valid checksum)", repack(data, model_name="")
    for level in (0, 0.5, levels + 0.25, levels + 1, 255, 65535 / 256):
        yield "level (valid checksum)", repack(data, level=level)
    for colour in (4, 255):
        yield "colour (valid checksum)", repack(data, colour=colour)
    yield from forged_sizes(data, quick=scale == 1)
    for _ in range(5 * scale):
        yield "symbol CRC (valid checksum)", repack(data, symbols_crc=rng.getrandbits(32))
    streams = f["streams"]
    yield "stream count (valid checksum)", repack(data, streams=streams + streams[-1:])
    yield "stream count (valid checksum)", repack(data, streams=streams[:-1])
    for _ in range(5 * scale):  # lengths that are not whole rANS words
        i = rng.randrange(len(streams))
        yield (
            "stream length (valid checksum)",
            with_stream(data, i, streams[i] + _rand(rng, rng.randint(1, 3))),
        )
    for _ in range(150 * scale):
        i = rng.randrange(len(streams))
        which = "z" if i == 0 else "y"
        yield (
            f"{which} stream garbled (valid checksum)",
            with_stream(data, i, _garble_stream(rng, streams[i])),
        )
    yield "streams swapped (valid checksum)", repack(data, streams=streams[::-1])
    yield "streams empty (valid checksum)", repack(data, streams=[b""] * len(streams))


def forged_sizes(data: bytes, quick: bool):
    """Headers (valid checksum) claiming another size: with the stream count left as it is (refused when the
    parser counts the size's tiles), and with as many streams as the size needs (refused by the pixel limit, the
    memory budget or, within both, the streams themselves), without ever allocating for the claimed size."""
    f = fields(data)
    h, w = f["height"], f["width"]
    for hw in ((0, w), (h, 0), (2**32 - 1, 1), (20000, 20000), (h + 64, w), (h, w + 200), (h * 5, w * 3)):
        yield "size (valid checksum)", repack(data, height=hw[0], width=hw[1])
    sizes = [(14000, 14000), (8000, 8000), (100_000, 10_000)] + ([] if quick else [(1, 200_000_000)])
    for fh, fw in sizes:
        count = 1 + -(-fh // 1024) * -(-fw // 1024)  # coding tiles of 64 latents (1024 pixels)
        streams = f["streams"][:1] + [bytes(8)] * (count - 1)
        yield (
            "size with its stream count (valid checksum)",
            repack(data, height=fh, width=fw, streams=streams),
        )


# ----- running a campaign -------------------------------------------------------------------------------------
def expect_refusal(codec: LeafCodec, data: bytes, folder: Path, label: str) -> str:
    src, dst = folder / "case.leaf", folder / "case.png"
    src.write_bytes(data)
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    t0 = time.perf_counter()
    try:
        decompress_file(codec, src, dst)
    except (CodecError, ResourceError) as exc:
        msg = str(exc)
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure we look for
        pytest.fail(f"{label}: {type(exc).__name__} instead of CodecError: {exc}")
    else:
        pytest.fail(f"{label}: a damaged file decoded without error")
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - t0
    assert elapsed < CASE_SECONDS, f"{label}: took {elapsed:.1f} s"
    assert msg and "\n" not in msg and CLEAR.search(msg), f"{label}: unclear message {msg!r}"
    assert not dst.exists(), f"{label}: wrote an output file"
    return msg


def campaign(codec, bases: dict, folder: Path, seed: int, scale: int = 1, every_offset=True) -> Counter:
    rng = random.Random(seed)
    counts = Counter()
    for name, data in bases.items():
        for family, mutated in mutations(data, rng, len(codec.levels), scale, every_offset):
            if mutated == data:
                continue
            expect_refusal(codec, mutated, folder, f"{name}, {family} #{counts[family]}")
            counts[family] += 1
    assert not tmp_leftovers(folder) and not (folder / "case.png").exists()
    return counts


@pytest.fixture(scope="module")
def codec():
    return LeafCodec()


def _bases(codec, size: int, levels) -> dict:
    rgb = leaves(1)[0]
    if size < rgb.shape[0]:
        rgb = rgb[96 : 96 + size, 96 : 96 + size].copy()
    return {f"{size}x{size} level {q}": codec.encode(rgb, q) for q in levels}


def _left_half(rows: int, cols: int) -> np.ndarray:
    w = np.zeros((rows, cols))
    w[:, : cols // 2] = 1
    return w


@pytest.fixture(scope="module")
def small_files(codec):
    """64x64 files at the lowest and highest level, a 64x1088 one (two coding tiles, two latent streams) and a
    region-of-interest file (format version 4: the map inside the checksum)."""
    wide = np.ascontiguousarray(np.tile(leaves(1)[0], (1, 5, 1))[96:160, :1088])
    roi = codec.encode(wide, codec.levels[-1], roi_weights=_left_half(4, 68))
    assert roi[4] == 4
    return {**_bases(codec, 64, (1, codec.levels[-1])), "64x1088 level 1": codec.encode(wide, 1),
            "64x1088 ROI": roi}  # fmt: skip


def test_the_unmutated_files_decode(codec, small_files, tmp_path):
    for data in small_files.values():
        (tmp_path / "ok.leaf").write_bytes(data)
        decompress_file(codec, tmp_path / "ok.leaf", tmp_path / "ok.png", force=True)
        assert (tmp_path / "ok.png").is_file()


def test_fuzz_decoder(codec, small_files, tmp_path):
    t0 = time.perf_counter()
    counts = campaign(codec, small_files, tmp_path, SEED)
    total, elapsed = sum(counts.values()), time.perf_counter() - t0
    print(f"\n{total} damaged files refused in {elapsed:.1f} s: {dict(counts)}")
    assert total >= 1500
    garbled = sum(v for k, v in counts.items() if "garbled" in k)
    assert garbled >= 250  # the rANS decoder itself was exercised, not only the checksum


def test_fuzz_onnx_backend_payloads(small_files, tmp_path):
    """The ONNX Runtime decoder shares the entropy decoding; garbled streams must fail the same way."""
    ort = LeafCodec(backend="onnx")
    rng = random.Random(SEED + 1)
    n = 0
    for name, data in small_files.items():
        streams = fields(data)["streams"]
        for _ in range(60):
            i = rng.randrange(len(streams))
            mutated = with_stream(data, i, _garble_stream(rng, streams[i]))
            if mutated != data:
                expect_refusal(ort, mutated, tmp_path, f"onnx, {name}, stream {i} #{n}")
                n += 1
    assert n >= 100


# ----- named cases: the message says what is wrong ------------------------------------------------------------
def _refusal(codec, data, tmp_path):
    return expect_refusal(codec, data, tmp_path, "named case")


def test_named_damage_gets_a_specific_message(codec, small_files, tmp_path):
    data = next(iter(small_files.values()))
    f = fields(data)
    z, y = f["streams"]
    cases = [
        (b"", "not a .leaf file"),
        (b"GIF89a" + data[6:], "not a .leaf file"),
        (data[:20], "truncated file"),
        (data[:-1], "truncated file"),
        (_flip(random.Random(0), data, 1), "checksum mismatch"),
        (data + b"\0", "checksum mismatch"),
        (recrc(data + b"\0\0\0\0"), "unexpected bytes after the checksum"),
        (recrc(data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]), "newer than this decoder"),
        (recrc(data[:4] + b"\x01" + data[5:]), "re-encode the image"),
        (repack(data, weights_hash=bytes(8)), "pass the matching --checkpoint"),
        (repack(data, level=9), "level 9 is outside the model's levels 1..7"),
        (repack(data, level=0.5), "level 0.5 is outside the model's levels 1..7"),
        (repack(data, colour=7), "unknown colour mode"),
        (repack(data, height=0), "implausible image size"),
        (repack(data, height=5000), "2 streams for a 64x5000 image, which has 5 coding tiles"),
        (repack(data, streams=[z, y, y]), "3 streams for a 64x64 image, which has 2"),
        (repack(data, streams=[z[:-1], y]), "not a valid rANS stream length"),
        (repack(data, symbols_crc=f["symbols_crc"] ^ 1), "symbol checksum mismatch"),
        (repack(data, streams=[b"\xff" * 4096, y]), "corrupted hyper-latent stream"),
        (repack(data, streams=[z, b"\xff" * 4096]), "corrupted latent stream 1"),
        (repack(data, streams=[z, y[:-4] + bytes([y[-4] ^ 1]) + y[-3:]]), "latent"),
        (repack(data, height=100_000, width=10_000, streams=[z] + [bytes(8)] * 980), "exceeds the limit of"),
    ]
    for mutated, expected in cases:
        msg = _refusal(codec, mutated, tmp_path)
        assert expected in msg, (expected, msg)


def test_named_damage_to_a_region_of_interest(codec, small_files, tmp_path):
    data = small_files["64x1088 ROI"]
    roi = parse(data).roi
    cases = [
        (repack(data, roi=RoiMap(roi.background_units, b"garbage")), "corrupted ROI map"),
        (
            repack(data, roi=RoiMap(roi.background_units, b"garbage", 3)),
            "corrupted ROI map: not a valid DEFLATE stream",
        ),
        (
            repack(data, roi=RoiMap(roi.background_units, deflated(bytes(10)), 3)),
            "does not hold 4x68 weights",
        ),
        (repack(data, roi=RoiMap(roi.background_units, roi.coded + b"x")), "does not hold 4x68 weights"),
        (repack(data, roi=RoiMap(roi.background_units, roi.coded[:2])), "palette is cut short"),
        (repack(data, roi=RoiMap(8 * 256, roi.coded)), "background level 8 above the level 7"),
        (repack(data, roi=None)[:-4] + b"", "truncated"),
    ]
    for mutated, expected in cases:
        msg = _refusal(codec, mutated, tmp_path)
        assert expected in msg, (expected, msg)
    # A forged map that inflates far beyond the image is refused without inflating it.
    bomb = deflated(bytes(50_000_000))
    assert "does not hold 4x68 weights" in _refusal(codec, repack(data, roi=RoiMap(0, bomb, 3)), tmp_path)


def test_a_stream_that_decodes_to_huge_values_is_refused_quickly(codec, small_files, tmp_path):
    """Escape codes let a stream decode to values near 2^31; CompressAI's rANS encoder (used to check that a
    stream is canonical) would loop forever on them, so the decoder must refuse them first. Random garbage
    rarely reaches an escape code (it depends on the model's tails), so the streams are written on purpose:
    one hyper-latent and one latent value beyond the limit, everything else as the encoder wrote it."""
    model = codec.model
    data = next(iter(small_files.values()))
    f = fields(data)
    z, y = f["streams"]
    z_shape = (-(-f["height"] // STRIDE), -(-f["width"] // STRIDE))
    z_hat = model.entropy_bottleneck.decompress([z], z_shape)
    huge_z = z_hat.clone()
    huge_z.view(-1)[0] = 2 * LATENT_LIMIT
    mutated = repack(data, streams=[model.entropy_bottleneck.compress(huge_z)[0], y])
    assert "corrupted hyper-latent stream: it decodes to implausible values" in _refusal(
        codec, mutated, tmp_path
    )

    _, indexes = model.tile_codec.parameters(model.hyper_synthesis(z_hat))
    gc = model.tile_codec.gc
    symbols = gc.decompress([y], indexes).int()
    symbols.view(-1)[-1] = -2 * LATENT_LIMIT
    y = GaussianConditional.compress(gc, symbols.float(), indexes)[0]  # CompressAI's, past the codec's bound
    crc = zlib.crc32(symbols.numpy().astype("<i4").tobytes())
    mutated = repack(data, streams=[z, y], symbols_crc=crc)
    assert "corrupted latent stream: it decodes to implausible values" in _refusal(codec, mutated, tmp_path)


# ----- the long campaign (make fuzz) --------------------------------------------------------------------------
@pytest.mark.fuzz_long
@pytest.mark.slow
def test_fuzz_decoder_long(codec, small_files, tmp_path):
    bases = {**small_files, **_bases(codec, 256, (1, codec.levels[-1]))}
    t0 = time.perf_counter()
    counts = campaign(codec, bases, tmp_path, SEED + 100, scale=20)
    total, elapsed = sum(counts.values()), time.perf_counter() - t0
    print(f"\n{total} damaged files refused in {elapsed:.1f} s: {dict(counts)}")
    assert total >= 60000
