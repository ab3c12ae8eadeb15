"""The ``.leaf`` container: ``pack`` and ``parse``, which validates everything it can without a model.

Container, format versions 2, 3 and 4 (integers little-endian; ``varint`` = unsigned LEB128, shortest form)::

    magic      4 bytes  b"LEAF"
    version    u8       FORMAT_VERSION
    model      u8 name length, name (ASCII), 8-byte weights hash (first bytes of SHA-256 of the weights): the
               shipped checkpoint that decodes the file, whose architecture it records
    level      u16      quality level x 256: 256 = level 1 ... 256 K = level K; values in between are fractional
                        levels, whose gains are interpolated log-linearly between the trained ones
    colour     u8       0 RGB, 1 grayscale, 2 RGB whose alpha was dropped, 3 grayscale whose alpha was dropped
    height     u32, width u32   original size (the network sees it padded to a multiple of 64)
    symbols    u32      CRC-32 of the latent symbols, coding tile by coding tile: int32 little-endian, C order, for
                        the Gaussian hyperprior; the dequantised float32 latent for a context model, whose
                        symbols are internal to its passes (``helpers.codec.latent_coding``)
    roi        versions 3 and 4 only: a region-of-interest file (``helpers.codec.roi``), whose quality varies per latent
               position (16 x 16 pixels). u16 background level x 256 (the level of weight 0; ``level`` above
               is that of weight 255, and the background's is at most it; 0 = one step below level 1), then a
               varint length and the weight map, one u8 weight per latent position of the padded image, row by
               row: version 4 codes it with ``helpers.codec.map_coding`` (palette and context-adaptive
               arithmetic code), version 3 with raw DEFLATE (RFC 1951); the file's checksum covers it
    streams    varint count, then per stream a varint length and the bytes: stream 0 is the hyper-latent
               (factorised prior), then the latent streams of the coding tiles in raster order
               (``tiling.coding_tiles``): one per tile for the Gaussian hyperprior, one per pass for an entropy
               model that codes a tile in several (channel groups, checkerboard halves). The container allows
               any whole number per tile up to ``MAX_STREAMS_PER_TILE``; the model's tile codec checks its own.
    checksum   u32      CRC-32 of everything before it

Every bpp reported by this project is ``8 * len(file) / (height * width)`` of this whole file. Files without a
region of interest are written as version 2, byte for byte what earlier encoders wrote; version 3 adds only the
``roi`` field, and version 4 (what this encoder writes for a region of interest) codes its map about 2.5 times
smaller; version-3 files still decode. Version 1 (one latent stream for the whole image, untiled) is refused with a message saying so.

``read_file(path)`` reads a file header first: what does not start with the magic number is refused after four
bytes, and no more is read than the header's stream lengths say (plus ``SLACK`` bytes of what follows, for the
message), so neither /dev/zero nor a 4 GiB file of zeros is read into memory.

What the decoder checks beyond the container is in ``helpers.codec.leaf_codec``.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from helpers.codec import map_coding
from helpers.codec.errors import CodecError, DataError, plural, shown
from helpers.codec.imageio import COLOUR_NAMES, DEFAULT_MAX_PIXELS

MAGIC = b"LEAF"
FORMAT_VERSION = 4  # the newest version this decoder reads and the encoder writes for an ROI file
# 2: uniform quality; 3: 2 plus a region-of-interest map, DEFLATE-coded; 4: the map context-coded (``map_coding``)
VERSIONS = (2, 3, 4)
SUFFIX = ".leaf"
LEVEL_UNITS = 256  # the level is stored in 1/256 steps
MAX_STREAMS_PER_TILE = 64  # room for channel-conditional / checkerboard entropy models (a stream per slice)
_HEAD = struct.Struct("<HBIII")  # level, colour, height, width, symbols CRC
SLACK = 64 * 1024  # bytes read beyond where the header says a file ends, for the message about them
_SMALL = 4096  # fields the walk of ``read_file`` reads; longer streams are skipped


# ----- the container ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoiMap:
    """A region-of-interest file's map: the background level (x 256; the level of weight 0) and the coded
    weights (one u8 per latent position; ``weights`` gives them back, checked by ``parse``): context-coded in
    version 4 (``helpers.codec.map_coding``), raw DEFLATE in version 3."""

    background_units: int
    coded: bytes
    version: int = 4

    @property
    def background(self) -> int | float:
        q, r = divmod(self.background_units, LEVEL_UNITS)
        return q if r == 0 else self.background_units / LEVEL_UNITS

    def weights(self, rows: int, cols: int) -> np.ndarray:
        """The u8 weights (rows, cols); CodecError if the map does not decode to exactly that many."""
        if self.version != 3:
            return map_coding.decode(self.coded, rows, cols)
        d = zlib.decompressobj(-15)  # raw DEFLATE: no zlib header or Adler-32, the file's CRC covers the map
        try:
            out = d.decompress(self.coded, rows * cols + 1)  # bounded: a forged map cannot inflate further
        except zlib.error:
            raise CodecError("corrupted ROI map: not a valid DEFLATE stream") from None
        if len(out) != rows * cols or not d.eof or d.unused_data:
            raise CodecError(f"corrupted ROI map: it does not hold {rows}x{cols} weights")
        return np.frombuffer(out, np.uint8).reshape(rows, cols)


@dataclass(frozen=True)
class Header:
    model_name: str
    weights_hash: bytes
    level_units: int  # level x LEVEL_UNITS
    colour: int
    height: int
    width: int
    symbols_crc: int
    streams: tuple[bytes, ...]  # hyper-latent, then one latent stream per coding tile
    roi: RoiMap | None = None  # versions 3 and 4: the region of interest

    @property
    def level(self) -> int | float:
        """1-based level; an int for trained levels, a float (1/256 steps) between them."""
        q, r = divmod(self.level_units, LEVEL_UNITS)
        return q if r == 0 else self.level_units / LEVEL_UNITS

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def z_len(self) -> int:
        return len(self.streams[0])

    @property
    def y_len(self) -> int:
        return sum(len(s) for s in self.streams[1:])


def deflated(raw: bytes) -> bytes:
    """``raw`` as a version-3 ROI map is stored: raw DEFLATE at zlib's level 9 (``RoiMap.weights`` inflates it)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` bytes holding a ``height`` x ``width`` image."""
    return 8.0 * num_bytes / (height * width)


def level_units(level: float) -> int:
    return int(round(level * LEVEL_UNITS))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pack(model_name: str, weights_hash: bytes, level: float, colour: int, height: int, width: int,
         symbols_crc: int, streams, roi: RoiMap | None = None) -> bytes:  # fmt: skip
    """The file's bytes: version 2 without a region of interest, the map's version (3 or 4) with one (module
    docstring)."""
    name = model_name.encode("ascii")
    head = MAGIC + struct.pack("<BB", 2 if roi is None else roi.version, len(name)) + name + weights_hash[:8]
    head += _HEAD.pack(level_units(level), colour, height, width, symbols_crc)
    if roi is not None:
        head += struct.pack("<H", roi.background_units) + _varint(len(roi.coded)) + roi.coded
    body = head + _varint(len(streams)) + b"".join(_varint(len(s)) + bytes(s) for s in streams)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecError(
                f"truncated file: it ends inside the {what} ({plural(len(self.data), 'byte')} in all)"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str | struct.Struct, what: str):
        fmt = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return fmt.unpack(self.take(fmt.size, what))

    def varint(self, what: str) -> int:
        n = 0
        for i in range(5):  # 35 bits: every u32
            (b,) = self.take(1, what)
            n |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise CodecError(f"corrupted file: over-long {what}")
                return n
        raise CodecError(f"corrupted file: {what} is not a valid number")


def parse(data: bytes) -> Header:
    """Validate the container and return its header; raises CodecError naming what is wrong."""
    r = _Reader(bytes(data))
    version = _check_start(r)
    data = r.data
    if len(data) < r.pos + 4 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        # Distinguish a cut file from a damaged one where we can.
        try:
            _parse_fields(r, len(data), version, check_map=False)
        except CodecError as exc:
            raise CodecError(f"{exc}; checksum mismatch") from None
        raise CodecError("corrupted file: checksum mismatch")
    return _parse_fields(r, len(data), version)


def _parse_roi(r: _Reader, version: int, units: int, height: int, width: int, check_map: bool) -> RoiMap:
    (background,) = r.unpack("<H", "ROI header")
    if background > units:
        raise CodecError(f"corrupted header: background level {background / LEVEL_UNITS:g} above the level "
                         f"{units / LEVEL_UNITS:g}")  # fmt: skip
    roi = RoiMap(background, r.take(r.varint("ROI map length"), "ROI map"), version)
    if check_map:
        roi.weights(*latent_grid(height, width))
    return roi


def _parse_fields(r: _Reader, total: int, version: int, check_map: bool = True) -> Header:
    (name_len,) = r.unpack("<B", "header")
    name = r.take(name_len, "header")
    weights_hash = r.take(8, "header")
    units, colour, height, width, symbols_crc = r.unpack(_HEAD, "header")
    try:
        model_name = name.decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("corrupted header: model name is not ASCII") from None
    if colour not in COLOUR_NAMES:
        raise CodecError(f"corrupted header: unknown colour mode {colour}")
    if not (0 < height and 0 < width):
        raise CodecError(f"corrupted header: implausible image size {width}x{height}")
    # The map is checked here unless the file is damaged anyway, only being walked, or of a size beyond the
    # default pixel limit (decoding a map takes time in proportion: the decoder checks its limit first).
    check_map = check_map and not isinstance(r, _FileWalk) and height * width <= DEFAULT_MAX_PIXELS
    roi = None if version == 2 else _parse_roi(r, version, units, height, width, check_map)
    tiles = tile_count(height, width)
    count = r.varint("stream count")
    # Checked before any stream is read, so a forged size cannot make us allocate: a whole number of streams per
    # coding tile (the model's tile codec checks its own number).
    if not (count > tiles and (count - 1) % tiles == 0 and (count - 1) // tiles <= MAX_STREAMS_PER_TILE):
        raise CodecError(
            f"corrupted header: {plural(count, 'stream')} for a {width}x{height} image, which has "
            f"{plural(tiles, 'coding tile')}"
        )
    streams = []
    for i in range(count):
        what = "hyper-latent stream" if i == 0 else f"latent stream {i}"
        n = r.varint(f"{what} length")
        streams.append(r.take(n, what))
        # rANS streams are whole 32-bit words, at least the two of the final coder state.
        if n < 8 or n % 4:
            raise CodecError(f"corrupted {what}: {n} bytes is not a valid rANS stream length")
    r.take(4, "checksum")
    if r.pos != total:
        raise CodecError(f"corrupted file: {plural(total - r.pos, 'unexpected byte')} after the checksum")
    return Header(model_name, weights_hash, units, colour, height, width, symbols_crc, tuple(streams), roi)


# The grid of coding tiles is fixed by the format: ``tiling``'s constants, repeated here so that reading a header
# needs no PyTorch (``info``); tests/test_hardening.py checks that the two agree.
_PADDING, _LATENT_STRIDE, _CODING_TILE = 64, 16, 64  # tiling: models.STRIDE, LATENT_STRIDE, CODING_TILE


def latent_grid(height: int, width: int) -> tuple[int, int]:
    """Latent rows and columns of a ``height`` x ``width`` image (``tiling.latent_size``)."""
    return -(-height // _PADDING) * _PADDING // _LATENT_STRIDE, -(
        -width // _PADDING
    ) * _PADDING // _LATENT_STRIDE


def tile_count(height: int, width: int) -> int:
    """The coding tiles of a ``height`` x ``width`` image (``tiling.coding_tiles``)."""
    rows, cols = latent_grid(height, width)
    return -(-rows // _CODING_TILE) * -(-cols // _CODING_TILE)


# ----- reading a file, header first -----------------------------------------------------------------------------
class _FileWalk(_Reader):
    """``_Reader`` over an open file of ``size`` bytes that reads fields but skips (seeks over) long streams: it
    follows the structure without holding it."""

    def __init__(self, f, size: int):
        super().__init__(b"")
        self.f, self.size = f, size

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.size:
            raise CodecError(
                f"truncated file: it ends inside the {what} ({plural(self.size, 'byte')} in all)"
            )
        if n > _SMALL:
            self.f.seek(n, 1)
            out = b""
        else:
            out = self.f.read(n)
        self.pos += n
        return out


def _check_start(r: _Reader) -> int:
    """The magic number and the format version (returned): what every reader checks first."""
    try:
        magic = r.take(len(MAGIC), "magic number")
    except CodecError:
        magic = b""
    if magic != MAGIC:
        raise CodecError("not a .leaf file (wrong magic number)")
    (version,) = r.unpack("<B", "format version")
    if version not in VERSIONS:
        newer = "newer than" if version > FORMAT_VERSION else "older than"
        hint = "; re-encode the image with this version" if version < FORMAT_VERSION else ""
        raise CodecError(f"file format version {version} is {newer} this decoder's ({', '.join(map(str, VERSIONS))})"
                         f"{hint}")  # fmt: skip
    return version


def read_file(path) -> bytes:
    """The bytes of the ``.leaf`` file at ``path``, read header first (module docstring); what ``parse`` would
    refuse may come back for ``parse`` to word, but never more than the header accounts for plus ``SLACK``."""
    from helpers.codec.fileio import open_input

    try:
        with open_input(path, "a .leaf file") as f:
            size = os.fstat(f.fileno()).st_size
            walk = _FileWalk(f, size)
            version = _check_start(walk)  # refused after five bytes
            try:
                _parse_fields(walk, size, version)
            except CodecError:
                if size > walk.pos + SLACK:
                    raise  # refused on what was read; the rest is not worth reading
            f.seek(0)
            return f.read(size)
    except FileNotFoundError:
        raise DataError(f"file not found: {shown(path)}") from None
    except MemoryError:
        raise DataError(f"not enough memory to read {shown(path)}") from None
    except OSError as exc:
        raise DataError(f"cannot read {shown(path)}: {exc.strerror or exc}") from None
