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

import pytest
from codec_samples import leaves, tmp_leftovers

from helpers.codec import LATENT_LIMIT, MAGIC, LeafCodec, pack, parse
from helpers.errors import CodecError
from helpers.model import STRIDE

SEED = 20240611
CASE_SECONDS = 10.0  # a case taking longer fails the test
HANG_SECONDS = 120  # the watchdog ends the process (a hang in C code cannot be interrupted otherwise)
CLEAR = re.compile(
    r"not a \.leaf file|truncated|corrupted|checksum|format version|written by model|unknown quality level"
)


# ----- files and their layout ---------------------------------------------------------------------------------
def fields(data: bytes) -> dict:
    """The container's fields, to rebuild a file with some of them changed (and a valid checksum)."""
    h = parse(data)
    z0 = h.payload_offset + 4
    y0 = z0 + h.z_len + 4
    return {"model_name": h.model_name, "weights_hash": h.weights_hash, "level": h.level, "colour": h.colour,
            "height": h.height, "width": h.width, "symbols_crc": h.symbols_crc,
            "z": data[z0 : z0 + h.z_len], "y": data[y0 : y0 + h.y_len]}  # fmt: skip


def repack(data: bytes, **changes) -> bytes:
    return pack(**{**fields(data), **changes})


def recrc(body: bytes) -> bytes:
    """Replace the trailing checksum with a valid one for the (mutated) bytes before it."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def boundaries(data: bytes) -> list[int]:
    """Offsets where the container's sections start (magic, version, name, ..., y stream, checksum)."""
    h = parse(data)
    nl = data[5]
    p0 = 14 + nl
    z0 = h.payload_offset + 4
    y0 = z0 + h.z_len + 4
    return [0, 4, 5, 6, 6 + nl, p0, p0 + 1, p0 + 2, p0 + 6, p0 + 10, p0 + 14, z0, z0 + h.z_len, y0,
            y0 + h.y_len, len(data) - 4]  # fmt: skip


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
        yield "random after version", MAGIC + b"\x01" + _rand(rng, rng.randint(0, 600))
    for i in range(4):
        yield "wrong magic", data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :]
    yield "wrong magic", b"\x89PNG\r\n\x1a\n" + data[8:]
    for version in (0, 2, 3, 17, 255):
        yield "other version", recrc(data[:4] + bytes([version]) + data[5:])
    for _ in range(10 * scale):
        yield "other model (valid checksum)", repack(data, weights_hash=_rand(rng, 8))
    yield "other model (valid checksum)", repack(data, model_name="leaf-hyperprior-v2")
    yield "other model (valid checksum)", repack(data, model_name="")
    for level in (0, levels + 1, 255):
        yield "level (valid checksum)", repack(data, level=level)
    for colour in (3, 255):
        yield "colour (valid checksum)", repack(data, colour=colour)
    for h, w in ((0, f["width"]), (f["height"], 0), (2**32 - 1, 1), (20000, 20000), (f["height"] + 64, f["width"]),
                 (f["height"], f["width"] + 200), (f["height"] * 5, f["width"] * 3)):  # fmt: skip
        yield "size (valid checksum)", repack(data, height=h, width=w)
    for _ in range(5 * scale):
        yield "symbol CRC (valid checksum)", repack(data, symbols_crc=rng.getrandbits(32))
    for _ in range(5 * scale):  # lengths that are not whole rANS words
        z = f["z"] + _rand(rng, rng.randint(1, 3))
        yield "stream length (valid checksum)", repack(data, z=z) if rng.random() < 0.5 else repack(data, y=z)
    for _ in range(150 * scale):
        which = rng.choice(("z", "y"))
        yield (
            f"{which} stream garbled (valid checksum)",
            repack(data, **{which: _garble_stream(rng, f[which])}),
        )
    yield "streams swapped (valid checksum)", repack(data, z=f["y"], y=f["z"])
    yield "streams empty (valid checksum)", repack(data, z=b"", y=b"")


# ----- running a campaign -------------------------------------------------------------------------------------
def expect_refusal(codec: LeafCodec, data: bytes, folder: Path, label: str) -> str:
    src, dst = folder / "case.leaf", folder / "case.png"
    src.write_bytes(data)
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    t0 = time.perf_counter()
    try:
        codec.decompress_file(src, dst)
    except CodecError as exc:
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


@pytest.fixture(scope="module")
def small_files(codec):
    return _bases(codec, 64, (1, codec.levels[-1]))


def test_the_unmutated_files_decode(codec, small_files, tmp_path):
    for data in small_files.values():
        (tmp_path / "ok.leaf").write_bytes(data)
        codec.decompress_file(tmp_path / "ok.leaf", tmp_path / "ok.png", force=True)
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
        f = fields(data)
        for _ in range(60):
            which = rng.choice(("z", "y"))
            mutated = repack(data, **{which: _garble_stream(rng, f[which])})
            if mutated != data:
                expect_refusal(ort, mutated, tmp_path, f"onnx, {name}, {which} #{n}")
                n += 1
    assert n >= 100


# ----- named cases: the message says what is wrong ------------------------------------------------------------
def _refusal(codec, data, tmp_path):
    return expect_refusal(codec, data, tmp_path, "named case")


def test_named_damage_gets_a_specific_message(codec, small_files, tmp_path):
    data = next(iter(small_files.values()))
    f = fields(data)
    cases = [
        (b"", "not a .leaf file"),
        (b"GIF89a" + data[6:], "not a .leaf file"),
        (data[:20], "truncated file"),
        (data[:-1], "truncated file"),
        (_flip(random.Random(0), data, 1), "checksum mismatch"),
        (data + b"\0", "checksum mismatch"),
        (recrc(data + b"\0\0\0\0"), "unexpected bytes after the checksum"),
        (recrc(data[:4] + b"\x02" + data[5:]), "newer than this decoder"),
        (repack(data, weights_hash=bytes(8)), "pass the matching --checkpoint"),
        (repack(data, level=9), "unknown quality level 9"),
        (repack(data, colour=7), "unknown colour mode"),
        (repack(data, height=0), "implausible image size"),
        (repack(data, z=f["z"][:-1]), "not a valid rANS stream length"),
        (repack(data, symbols_crc=f["symbols_crc"] ^ 1), "symbol checksum mismatch"),
        (repack(data, z=b"\xff" * 4096), "corrupted hyper-latent stream"),
        (repack(data, y=b"\xff" * 4096), "symbol checksum mismatch"),
        (repack(data, y=f["y"][:-4] + bytes([f["y"][-4] ^ 1]) + f["y"][-3:]), "latent"),
    ]
    for mutated, expected in cases:
        msg = _refusal(codec, mutated, tmp_path)
        assert expected in msg, (expected, msg)


def test_a_stream_that_decodes_to_huge_values_is_refused_quickly(codec, small_files, tmp_path):
    """Escape codes let a stream decode to values near 2^31; CompressAI's rANS encoder (used to check that a
    stream is canonical) would loop forever on them, so the decoder must refuse them first. Random garbage
    rarely reaches an escape code (it depends on the model's tails), so the streams are written on purpose:
    one hyper-latent and one latent value beyond the limit, everything else as the encoder wrote it."""
    model = codec.model
    data = next(iter(small_files.values()))
    f = fields(data)
    z_shape = (-(-f["height"] // STRIDE), -(-f["width"] // STRIDE))
    z_hat = model.entropy_bottleneck.decompress([f["z"]], z_shape)
    huge_z = z_hat.clone()
    huge_z.view(-1)[0] = 2 * LATENT_LIMIT
    mutated = repack(data, z=model.entropy_bottleneck.compress(huge_z)[0])
    assert "corrupted hyper-latent stream: it decodes to implausible values" in _refusal(
        codec, mutated, tmp_path
    )

    _, indexes = model.entropy_parameters(model.hyper_synthesis(z_hat))
    symbols = model.gaussian_conditional.decompress([f["y"]], indexes).int()
    symbols.view(-1)[-1] = -2 * LATENT_LIMIT
    y = model.gaussian_conditional.compress(symbols.float(), indexes)[0]
    crc = zlib.crc32(symbols.numpy().astype("<i4").tobytes())
    mutated = repack(data, y=y, symbols_crc=crc)
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
