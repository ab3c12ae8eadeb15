"""The ``.leaf`` file: container, guards, symbol checksum, and ``encode(image) -> bytes`` / ``decode(bytes) ->
image`` side by side. The model (``helpers.model``) supplies transforms and entropy parameters only; the
transforms run on tiles (``helpers.tiling``), in memory bounded by the tile (``helpers.budget``).

Container, format version 2 (integers little-endian; ``varint`` = unsigned LEB128, shortest form)::

    magic      4 bytes  b"LEAF"
    version    u8       FORMAT_VERSION
    model      u8 name length, name (ASCII), 8-byte weights hash (first bytes of SHA-256 of the weights)
    level      u16      quality level x 256: 256 = level 1 ... 256 K = level K; values in between are fractional
                        levels, whose gains are interpolated log-linearly between the trained ones
    colour     u8       0 RGB, 1 grayscale, 2 RGB whose alpha was dropped, 3 grayscale whose alpha was dropped
    height     u32, width u32   original size (the network sees it padded to a multiple of 64)
    symbols    u32      CRC-32 of the latent symbols, coding tile by coding tile (int32 little-endian, C order)
    streams    varint count, then per stream a varint length and the bytes: stream 0 is the hyper-latent
               (factorised prior), then the latent streams of the coding tiles in raster order
               (``tiling.coding_tiles``): one per tile for this codec's Gaussian conditional. The container
               allows any whole number per tile (up to ``MAX_STREAMS_PER_TILE``), for an entropy model that
               codes a tile in several passes (channel slices, checkerboard halves); each codec checks its own.
    checksum   u32      CRC-32 of everything before it

Every bpp reported by this project is ``8 * len(file) / (height * width)`` of this whole file. Version 1 (one
latent stream for the whole image, untiled) is refused with a message saying so.

Decoding trusts nothing in a file: the checksum catches accidental damage, and because it can be recomputed,
the payload is also checked on its own terms. The stream count must be the one the image size implies, and
every rANS stream must be whole 32-bit words (at least two); CompressAI's rANS decoder does no bounds checking,
so each stream is handed to it followed by zero words (``_guarded``) and a garbled stream reads zeros instead of
running off its buffer. Decoded values beyond ``LATENT_LIMIT`` are refused (CompressAI's rANS *encoder* loops
forever on values of 2^27 or more, and garbage can decode to such values). Every stream must be exactly what the
encoder writes for the symbols it decoded to (re-encoded and compared; a few percent of the decode time), and
the symbols must match the symbol CRC. Before anything is allocated, the image size is checked against the pixel
limit and the estimated memory against the memory budget. A garbled payload therefore ends in a CodecError and
a too-large image in a ResourceError, never in a crash, a hang, a silently wrong image or a memory blow-up.
(Header fields such as the level are protected by the checksum only: a deliberately forged header with a
recomputed checksum is out of scope, except that it can never make the decoder exceed its budgets.)
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import budget, rate, tiling
from .checkpoints import export_checkpoint, load_model  # noqa: F401 (notebooks import them from here)
from .errors import CodecError, DataError, ResourceError, shown
from .fileio import atomic_write, check_output
from .imageio import COLOUR_NAMES, COLOUR_RGB, DEFAULT_MAX_PIXELS, check_pixels, load_image, output_image
from .model import single_thread

MAGIC = b"LEAF"
FORMAT_VERSION = 2
SUFFIX = ".leaf"
LEVEL_UNITS = 256  # the level is stored in 1/256 steps
# |latent symbol| bound: far beyond what g_a/h_a produce from [0, 1] pixels (below ~100), far below the 2^27 at
# which CompressAI's rANS encoder never terminates (its escape-length loop shifts an int32 by 32 bits).
LATENT_LIMIT = 2**20
MAX_STREAMS_PER_TILE = 64  # room for channel-conditional / checkerboard entropy models (a stream per slice)
_HEAD = struct.Struct("<HBIII")  # level, colour, height, width, symbols CRC


# ----- the container ------------------------------------------------------------------------------------------
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
         symbols_crc: int, streams) -> bytes:  # fmt: skip
    name = model_name.encode("ascii")
    head = MAGIC + struct.pack("<BB", FORMAT_VERSION, len(name)) + name + weights_hash[:8]
    head += _HEAD.pack(level_units(level), colour, height, width, symbols_crc)
    body = head + _varint(len(streams)) + b"".join(_varint(len(s)) + bytes(s) for s in streams)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecError(f"truncated file: it ends inside the {what} ({len(self.data)} bytes in all)")
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
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a .leaf file (wrong magic number)")
    r = _Reader(data)
    r.take(len(MAGIC), "magic number")
    (version,) = r.unpack("<B", "format version")
    if version != FORMAT_VERSION:
        newer = "newer than" if version > FORMAT_VERSION else "different from"
        hint = "; re-encode the image with this version" if version < FORMAT_VERSION else ""
        raise CodecError(f"file format version {version} is {newer} this decoder's ({FORMAT_VERSION}){hint}")
    if len(data) < r.pos + 4 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        # Distinguish a cut file from a damaged one where we can.
        try:
            _parse_fields(r, len(data))
        except CodecError as exc:
            raise CodecError(f"{exc}; checksum mismatch") from None
        raise CodecError("corrupted file: checksum mismatch")
    return _parse_fields(r, len(data))


def _parse_fields(r: _Reader, total: int) -> Header:
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
    expected = 1 + _tile_count(height, width)
    count = r.varint("stream count")
    if count != expected:  # checked before any stream is read: a forged size cannot make us allocate
        raise CodecError(
            f"corrupted header: {count} streams for a {width}x{height} image, which has {expected}"
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
        raise CodecError(f"corrupted file: {total - r.pos} unexpected bytes after the checksum")
    return Header(model_name, weights_hash, units, colour, height, width, symbols_crc, tuple(streams))


def _tile_count(height: int, width: int) -> int:
    rows, cols = tiling.latent_size(height, width)
    return -(-rows // tiling.CODING_TILE) * -(-cols // tiling.CODING_TILE)


# ----- guards -------------------------------------------------------------------------------------------------
def _guarded(stream: bytes, n_symbols: int) -> bytes:
    """``stream`` followed by zero words for CompressAI's rANS decoder, which does not check where its input
    ends: on garbage it went on reading up to 0.44 words per symbol past the end (a Python emulation over
    random, truncated and bit-flipped streams). A symbol reads at most one word, plus escape codes (4-bit
    groups), whose length the stream itself can inflate to ~15 bytes per stream byte; zeros end them."""
    return stream + bytes(8 * n_symbols + 16 * len(stream) + 4096)


def _check_range(values: torch.Tensor, what: str) -> None:
    if values.numel() and not (values.min() > -LATENT_LIMIT and values.max() < LATENT_LIMIT):
        raise CodecError(f"corrupted {what} stream: it decodes to implausible values")


def _checked_stream(stream: bytes, decode, encode, values: str, name: str) -> torch.Tensor:
    """Decode one rANS stream and prove it: every value within LATENT_LIMIT, and the stream exactly what the encoder
    writes for those values. Anything else is a CodecError naming the stream (an allocation failure stays one)."""
    try:
        decoded = decode(stream)
        _check_range(decoded, values)
        canonical = encode(decoded) == stream
    except (RuntimeError, ValueError, OverflowError, IndexError) as exc:
        if _is_allocation_failure(exc):
            raise
        raise CodecError(f"corrupted {name}: {exc.__class__.__name__}: {exc}") from None
    if not canonical:
        raise CodecError(f"corrupted {name}: it is not what the encoder writes for its symbols")
    return decoded


def _symbols_bytes(symbols: torch.Tensor) -> bytes:
    return symbols.numpy().astype("<i4").tobytes()


def _is_allocation_failure(exc: BaseException) -> bool:
    """MemoryError, or PyTorch's RuntimeError for a failed allocation ("DefaultCPUAllocator: can't allocate")."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "alloc" in str(exc).lower())


@contextlib.contextmanager
def _allocation(verb: str, height: int, width: int):
    """A failed allocation ends in a one-line ResourceError (a batch goes on with the next file)."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not _is_allocation_failure(exc):
            raise
        raise ResourceError(
            f"not enough memory to {verb} a {width}x{height} image (the --max-memory budget is above what "
            "this machine has; lower it to be refused before trying)"
        ) from None


# ----- the codec ------------------------------------------------------------------------------------------------
BACKENDS = ("torch", "onnx")


class LeafCodec:
    """Learned codec with quality levels 1..K (low to high). ``encode(rgb, level, colour) -> bytes`` and
    ``decode(bytes) -> rgb`` work on uint8 RGB arrays; ``level`` may be fractional (a 1/256 step between levels).

    ``backend="onnx"`` runs the synthesis ``g_s`` in ONNX Runtime (``helpers.export``; same files, pixels within
    one grey level of the PyTorch backend's); everything else, and encoding, runs in PyTorch. ``max_pixels`` and
    ``max_memory`` (bytes, see ``helpers.budget``) refuse images beyond them before anything is allocated."""

    name = "ours"
    streams_per_tile = 1  # the mean-scale hyperprior codes each coding tile's latent in one stream

    def __init__(self, checkpoint: str | Path | None = None, backend: str = "torch",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, max_memory: int | None = budget.DEFAULT_MAX_MEMORY):  # fmt: skip
        if backend not in BACKENDS:
            raise CodecError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.model, ckpt = load_model(checkpoint)
        self.model_name = ckpt["name"]
        self.hash = bytes.fromhex(ckpt["weights_sha256"])[:8]
        self.levels = list(range(1, self.model.num_levels + 1))
        _ = self.model.h_s64  # built now, not by two tile workers at once
        self.backend = backend
        self.max_pixels, self.max_memory = max_pixels, max_memory
        if backend == "onnx":
            from .export import OnnxSynthesis

            self.g_s = OnnxSynthesis(self.model, ckpt["weights_sha256"])
        else:
            self.g_s = self.model.g_s

    @property
    def default_level(self) -> int:
        return self.levels[len(self.levels) // 2]

    def check_level(self, level: float) -> float:
        """A trained level 1..K, or a fractional level between them on the file's 1/256 grid."""
        ok = isinstance(level, int | float | np.integer | np.floating) and np.isfinite(level)
        if (
            not ok
            or level_units(level) != level * LEVEL_UNITS
            or not self.levels[0] <= level <= self.levels[-1]
        ):
            raise CodecError(
                f"unknown quality level {level}; valid levels are {', '.join(map(str, self.levels))} "
                f"(or a multiple of 1/{LEVEL_UNITS} between {self.levels[0]} and {self.levels[-1]})"
            )
        return int(level) if float(level).is_integer() else float(level)

    def check_size(self, width: int, height: int, decode: bool, latents: int = 1) -> None:
        """ResourceError before any allocation if the image exceeds the pixel limit or the memory budget
        (``latents``: float32 latents held at once; 2 while several levels are tried)."""
        verb = "decode" if decode else "encode"
        check_pixels(width, height, self.max_pixels, f"a {width}x{height} image")
        need = budget.estimate(height, width, self.model.M, self.model.N, tiling.workers(), decode, latents)
        budget.check(height, width, need, self.max_memory, verb)

    # ----- encoding -----------------------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, level: float | None = None, colour: int = COLOUR_RGB) -> bytes:
        """A ``.leaf`` file of uint8 RGB ``rgb`` (H, W, 3) at ``level`` (default: the middle level)."""
        level = self.check_level(self.default_level if level is None else level)
        return self.encode_levels(rgb, [level], colour)[0]

    def encode_levels(self, rgb: np.ndarray, levels, colour: int = COLOUR_RGB) -> list[bytes]:
        """One file per level; the analysis transform (most of the encoding time) runs once for all of them."""
        rgb, levels = self._checked_image(rgb, colour), [self.check_level(q) for q in levels]
        h, w = rgb.shape[:2]
        self.check_size(w, h, decode=False, latents=1 + (len(levels) > 1))
        n = tiling.workers()
        with _allocation("encode", h, w), single_thread(), torch.no_grad():
            y = tiling.analyse(self.model.g_a, rgb, self.model.M, n)
            files = []
            for i, q in enumerate(levels):
                # The last level scales y in place: one latent less at the peak (128 MB for 64 MP).
                y_q = (
                    y.mul_(self.model.gain.vector(q - 1))
                    if i == len(levels) - 1
                    else self.model.gain(y, q - 1)
                )
                files.append(self._encode_latent(y_q, q, colour, h, w, n))
                del y_q
            return files

    def encode_to_rate(self, rgb: np.ndarray, colour: int = COLOUR_RGB, max_bytes: int | None = None,
                       target_bpp: float | None = None) -> tuple[bytes, int | float]:  # fmt: skip
        """(file, level) at the largest level whose file has at most ``max_bytes``, or whose rate is nearest
        ``target_bpp``; the level may be fractional (1/256 steps, recorded in the file). See ``helpers.rate``."""
        if (max_bytes is None) == (target_bpp is None):
            raise CodecError("give either a byte limit or a target rate")
        if max_bytes is not None and not max_bytes >= 1:
            raise CodecError(f"the byte limit must be at least 1, not {max_bytes}")
        if target_bpp is not None and not (np.isfinite(target_bpp) and target_bpp > 0):
            raise CodecError(f"the target rate must be a positive finite number, not {target_bpp}")
        rgb = self._checked_image(rgb, colour)
        h, w = rgb.shape[:2]
        self.check_size(w, h, decode=False, latents=2)
        n, files = tiling.workers(), {}
        with _allocation("encode", h, w), single_thread(), torch.no_grad():
            y = tiling.analyse(self.model.g_a, rgb, self.model.M, n)

            def size_at(units: int) -> int:
                if units not in files:
                    level = units / LEVEL_UNITS
                    files[units] = self._encode_latent(self.model.gain(y, level - 1), level, colour, h, w, n)
                return len(files[units])

            lo, hi = LEVEL_UNITS * self.levels[0], LEVEL_UNITS * self.levels[-1]
            if target_bpp is not None:
                units = rate.nearest(size_at, lo, hi, target_bpp * h * w / 8)
            else:
                try:
                    units, _ = rate.largest_within(size_at, lo, hi, max_bytes)
                except CodecError as exc:
                    raise CodecError(
                        f"cannot meet --max-bytes {max_bytes} for a {w}x{h} image: {exc}"
                    ) from None
        return files[units], self.check_level(units / LEVEL_UNITS)

    def _checked_image(self, rgb: np.ndarray, colour: int) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise DataError(f"expected a uint8 RGB image (H, W, 3), not {rgb.dtype} {rgb.shape}")
        if colour not in COLOUR_NAMES:
            raise DataError(f"unknown colour mode {colour}")
        return rgb

    def _encode_latent(self, y: torch.Tensor, level: float, colour: int, h: int, w: int, n: int) -> bytes:
        """The file of the latent ``y`` already scaled by the gain of ``level``."""
        m = self.model
        z = m.h_a(y)
        z_stream = m.entropy_bottleneck.compress(z)[0]
        z_hat = m.entropy_bottleneck.decompress([z_stream], z.shape[-2:])

        def code(t: tiling.Tile) -> tuple[bytes, bytes]:
            means, indexes = self._tile_parameters(z_hat, t)
            symbols = torch.round(y[..., t.r0 : t.r1, t.c0 : t.c1].double() - means).int()
            _check_range(symbols, "latent")  # never a file the decoder refuses (real |y| stays below ~100)
            return m.gaussian_conditional.compress(symbols.float(), indexes)[0], _symbols_bytes(symbols)

        streams, crc = [z_stream], 0
        for stream, symbols in tiling.map_ordered(code, tiling.coding_tiles(h, w), n):
            streams.append(stream)
            crc = zlib.crc32(symbols, crc)
        return pack(self.model_name, self.hash, level, colour, h, w, crc, streams)

    def _tile_parameters(self, z_hat: torch.Tensor, t: tiling.Tile):
        """Means and scale indexes of one coding tile: the float64 hyper-synthesis of its hyper-latent window."""
        zw = tiling.z_window(t, *z_hat.shape[-2:])
        params = self.model.hyper_synthesis(z_hat[..., zw.a0 : zw.a1, zw.b0 : zw.b1])
        return self.model.entropy_parameters(params[(..., *zw.crop(tiling.Z_STRIDE))])

    # ----- decoding -----------------------------------------------------------------------------------------
    def check_model(self, header: Header) -> None:
        if header.model_name != self.model_name or header.weights_hash != self.hash:
            raise CodecError(
                f"file was written by model {header.model_name!r} (weights {header.weights_hash.hex()}), "
                f"but the loaded checkpoint is {self.model_name!r} ({self.hash.hex()}); "
                "pass the matching --checkpoint"
            )

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_with_header(data)[0]

    def decode_with_header(self, data: bytes) -> tuple[np.ndarray, Header]:
        header = parse(data)
        self.check_model(header)
        self.check_level(header.level)
        expected = 1 + self.streams_per_tile * _tile_count(header.height, header.width)
        if len(header.streams) != expected:
            raise CodecError(
                f"corrupted header: {len(header.streams)} streams for a {header.width}x{header.height} image, "
                f"which has {expected}"
            )
        h, w = header.height, header.width
        self.check_size(w, h, decode=True)
        n = tiling.workers()
        with _allocation("decode", h, w), single_thread(), torch.no_grad():
            y_hat = self._decode_latent(header)
            index = header.level - 1
            rgb = tiling.synthesise(
                lambda y: self.g_s(self.model.inv_gain(y, index)).clamp_(0, 1), y_hat, h, w, n
            )
        return rgb, header

    def _decode_latent(self, header: Header) -> torch.Tensor:
        """rANS-decode every stream (see the module docstring for the checks) -> the dequantised latent."""
        m = self.model
        rows, cols = tiling.latent_size(header.height, header.width)
        y_hat = torch.empty(1, m.M, rows, cols)  # first: if memory is short, fail before any work
        z_shape = (rows // tiling.Z_STRIDE, cols // tiling.Z_STRIDE)
        eb, n_z = m.entropy_bottleneck, m.N * z_shape[0] * z_shape[1]
        z_hat = _checked_stream(header.streams[0], lambda z: eb.decompress([_guarded(z, n_z)], z_shape),
                                lambda v: eb.compress(v)[0], "hyper-latent", "hyper-latent stream")  # fmt: skip
        crc = 0
        for i, t in enumerate(tiling.coding_tiles(header.height, header.width)):
            symbols, means = self._decode_tile(header.streams[1 + i], z_hat, t, i + 1)
            crc = zlib.crc32(_symbols_bytes(symbols), crc)
            y_hat[..., t.r0 : t.r1, t.c0 : t.c1] = (symbols.double() + means).float()
        if crc != header.symbols_crc:
            raise CodecError("decoding failed: latents differ from the encoder's (symbol checksum mismatch)")
        return y_hat

    def _decode_tile(self, stream: bytes, z_hat: torch.Tensor, t: tiling.Tile, i: int):
        gc = self.model.gaussian_conditional
        means, indexes = self._tile_parameters(z_hat, t)
        symbols = _checked_stream(stream, lambda y: gc.decompress([_guarded(y, indexes.numel())], indexes).int(),
                                  lambda v: gc.compress(v.float(), indexes)[0], "latent", f"latent stream {i}")  # fmt: skip
        return symbols, means

    # ----- files (the command line) ---------------------------------------------------------------------------
    def compress_file(self, src: Path, dst: Path, level: float | None = None, force: bool = False,
                      max_bytes: int | None = None, target_bpp: float | None = None,
                      notes: list[str] | None = None) -> tuple[int, int | float]:  # fmt: skip
        """Code the image file ``src`` into ``dst`` at ``level``, or at the level that meets ``max_bytes`` or
        ``target_bpp`` (``encode_to_rate``): (bytes written, level). ``notes``: see ``imageio.load_image``."""
        check_output(dst, force)  # before the work; atomic_write checks again when it publishes
        latents = 1 if max_bytes is None and target_bpp is None else 2
        rgb, colour = load_image(
            src, self.max_pixels, lambda w, h: self.check_size(w, h, False, latents), notes
        )
        if latents == 1:
            level = self.check_level(self.default_level if level is None else level)
            data = self.encode(rgb, level, colour)
        else:
            data, level = self.encode_to_rate(rgb, colour, max_bytes, target_bpp)
        atomic_write(dst, data, force)
        return len(data), level

    def decompress_file(self, src: Path, dst: Path, force: bool = False) -> Header:
        check_output(dst, force)
        rgb, header = self.decode_with_header(read_bitstream(src))
        im = output_image(rgb, header.colour)
        del rgb
        atomic_write(dst, lambda f: im.save(f, format="PNG"), force)
        return header


def read_bitstream(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {shown(path)}") from None
    except IsADirectoryError:
        raise DataError(f"{shown(path)} is a folder, not a .leaf file") from None
    except OSError as exc:
        raise DataError(f"cannot read {shown(path)}: {exc.strerror}") from None
