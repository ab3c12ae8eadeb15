"""Real entropy-coded files: the ``.leaf`` container, image I/O rules, and the learned codec's encode/decode.

Container (all integers little-endian)::

    magic      4 bytes  b"LEAF"
    version    u8       FORMAT_VERSION
    model      u8 name length, name (ASCII), 8-byte weights hash (first bytes of SHA-256 of the weights)
    level      u8       quality level, 1..K
    colour     u8       0 RGB, 1 grayscale (decodes to grayscale), 2 RGB whose alpha channel was dropped
    height     u32, width u32   original size (the network sees it padded to a multiple of 64)
    symbols    u32      CRC-32 of the quantised latents: proves the entropy decoder reproduced them
    z bytes    u32 length + rANS stream of the hyper-latent (factorised prior)
    y bytes    u32 length + rANS stream of the latent (Gaussian conditional)
    checksum   u32      CRC-32 of everything before it

Every bpp reported by this project is ``8 * len(file) / (height * width)`` of this whole file.

Decoding trusts nothing in a file: the checksum catches accidental damage, and because it can be recomputed,
the payload is also checked on its own terms. Both rANS streams must be whole 32-bit words (at least two);
CompressAI's rANS decoder does no bounds checking, so each stream is handed to it followed by zero words
(``_guarded``) and a garbled stream reads zeros instead of running off its buffer. Decoded values beyond
``LATENT_LIMIT`` are refused (CompressAI's rANS *encoder* loops forever on values of 2^27 or more, and garbage
can decode to such values). The decoded symbols must match the symbol CRC, and both streams must be exactly
what the encoder writes for the symbols they decoded to (they are re-encoded and compared; a few percent of
the decode time). A garbled payload therefore ends in a CodecError, never in a crash, a hang or a silently
wrong image. (Header fields such as the level are protected by the checksum only: a deliberately forged header
with a recomputed checksum is out of scope.)

Input rules: PNG/JPEG/TIFF/BMP/WebP read with Pillow; EXIF orientation applied; grayscale coded as RGB and
decoded back to grayscale; alpha is dropped (the codec codes colour only; ``info`` reports it); 16-bit
images are reduced to 8 bits; CMYK and palette images are converted to RGB.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from . import paths
from .errors import CheckpointError, CodecError, DataError
from .model import STRIDE, LeafHyperprior, load_error_detail, single_thread

MAGIC = b"LEAF"
FORMAT_VERSION = 1
SUFFIX = ".leaf"
MAX_PIXELS = 200_000_000  # refuse absurd sizes before allocating anything
COLOUR_RGB, COLOUR_GRAY, COLOUR_ALPHA_DROPPED = 0, 1, 2
COLOUR_NAMES = {COLOUR_RGB: "RGB", COLOUR_GRAY: "grayscale", COLOUR_ALPHA_DROPPED: "RGB (alpha dropped)"}
# |latent symbol| bound: far beyond what g_a/h_a produce from [0, 1] pixels (below ~100), far below the 2^27 at
# which CompressAI's rANS encoder never terminates (its escape-length loop shifts an int32 by 32 bits).
LATENT_LIMIT = 2**20


# ----- the container ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    model_name: str
    weights_hash: bytes
    level: int
    colour: int
    height: int
    width: int
    symbols_crc: int
    z_len: int
    y_len: int
    payload_offset: int

    @property
    def pixels(self) -> int:
        return self.height * self.width


def pack(model_name: str, weights_hash: bytes, level: int, colour: int, height: int, width: int,
         symbols_crc: int, z: bytes, y: bytes) -> bytes:  # fmt: skip
    name = model_name.encode("ascii")
    head = MAGIC + struct.pack("<BB", FORMAT_VERSION, len(name)) + name + weights_hash[:8]
    head += struct.pack("<BBIII", level, colour, height, width, symbols_crc)
    body = head + struct.pack("<I", len(z)) + z + struct.pack("<I", len(y)) + y
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

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def parse(data: bytes) -> Header:
    """Validate the container and return its header; raises CodecError naming what is wrong."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a .leaf file (wrong magic number)")
    r = _Reader(data)
    r.take(len(MAGIC), "magic number")
    (version,) = r.unpack("<B", "format version")
    if version != FORMAT_VERSION:
        newer = "newer than" if version > FORMAT_VERSION else "different from"
        raise CodecError(f"file format version {version} is {newer} this decoder's ({FORMAT_VERSION})")
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
    level, colour, height, width, symbols_crc = r.unpack("<BBIII", "header")
    (z_len,) = r.unpack("<I", "hyper-latent length")
    z_start = r.pos
    r.take(z_len, "hyper-latent stream")
    (y_len,) = r.unpack("<I", "latent length")
    r.take(y_len, "latent stream")
    r.take(4, "checksum")
    if r.pos != total:
        raise CodecError(f"corrupted file: {total - r.pos} unexpected bytes after the checksum")
    try:
        model_name = name.decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("corrupted header: model name is not ASCII") from None
    if colour not in COLOUR_NAMES:
        raise CodecError(f"corrupted header: unknown colour mode {colour}")
    if not (0 < height and 0 < width and height * width <= MAX_PIXELS):
        raise CodecError(f"corrupted header: implausible image size {width}x{height}")
    for what, n in (("hyper-latent", z_len), ("latent", y_len)):
        # rANS streams are whole 32-bit words, at least the two of the final coder state.
        if n < 8 or n % 4:
            raise CodecError(f"corrupted {what} stream: {n} bytes is not a valid rANS stream length")
    return Header(model_name, weights_hash, level, colour, height, width, symbols_crc, z_len, y_len,
                  z_start - 4)  # fmt: skip


def _streams(data: bytes, h: Header) -> tuple[bytes, bytes]:
    z0 = h.payload_offset + 4
    z = data[z0 : z0 + h.z_len]
    y0 = z0 + h.z_len + 4
    return z, data[y0 : y0 + h.y_len]


# ----- images -------------------------------------------------------------------------------------------------
def load_input_image(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an image for coding: uint8 RGB (H, W, 3) and its colour mode (see module docstring)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return image_to_rgb(im)
    except FileNotFoundError:
        raise DataError(f"input image not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"input is a folder, not an image: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def image_to_rgb(im: Image.Image) -> tuple[np.ndarray, int]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        # 16-bit PNGs use the full 0..65535 range; keep the top 8 bits.
        im = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in ("L", "1", "LA"):
        colour = COLOUR_GRAY
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        colour = COLOUR_ALPHA_DROPPED
    else:
        colour = COLOUR_RGB
    rgb = np.asarray(im.convert("RGB"))
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError("empty image")
    return np.ascontiguousarray(rgb), colour


def output_image(rgb: np.ndarray, colour: int) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    return im.convert("L") if colour == COLOUR_GRAY else im


def atomic_write(path: Path, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename; refuse to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise DataError(f"{path} exists; pass --force to overwrite it")
    if path.parent and not path.parent.is_dir():
        raise DataError(f"output folder does not exist: {path.parent}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ----- checkpoints ----------------------------------------------------------------------------------------------
def weights_hash(state_dict: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if torch.is_tensor(t):
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_checkpoint(train_checkpoint: dict, name: str = "leaf-hyperprior") -> dict:
    """A shippable checkpoint: weights with the rANS tables built, config, and the weights hash."""
    from .train import TrainConfig, build_model

    cfg = TrainConfig.from_dict(train_checkpoint["config"])
    model = build_model(cfg)
    model.load_state_dict(train_checkpoint["model"])
    model.update(force=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return {
        "name": name,
        "model": state,
        "config": {"N": cfg.N, "M": cfg.M, "lambdas": list(cfg.lambdas)},
        "step": train_checkpoint.get("step"),
        "weights_sha256": weights_hash(state),
    }


def load_model(checkpoint: str | Path | None = None) -> tuple[LeafHyperprior, dict]:
    path = Path(checkpoint) if checkpoint else paths.SHIPPED_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}") from None
    if not isinstance(ckpt, dict) or not {"name", "model", "config", "weights_sha256"} <= set(ckpt):
        raise CheckpointError(
            f"{path} is not a shipped leaf-codec checkpoint (see helpers.codec.export_checkpoint)"
        )
    if weights_hash(ckpt["model"]) != ckpt["weights_sha256"]:
        raise CheckpointError(f"{path} is damaged: its weights do not match the recorded hash")
    cfg = ckpt["config"]
    try:
        model = LeafHyperprior(cfg["N"], cfg["M"], tuple(cfg["lambdas"]))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path} does not fit the leaf-hyperprior architecture: {load_error_detail(exc)}"
        ) from None
    model.eval()
    return model, ckpt


# ----- the codec ------------------------------------------------------------------------------------------------
BACKENDS = ("torch", "onnx")


def _guarded(stream: bytes, n_symbols: int) -> bytes:
    """``stream`` followed by zero words for CompressAI's rANS decoder, which does not check where its input
    ends: on garbage it went on reading up to 0.44 words per symbol past the end (a Python emulation over
    random, truncated and bit-flipped streams). A symbol reads at most one word, plus escape codes (4-bit
    groups), whose length the stream itself can inflate to ~15 bytes per stream byte; zeros end them."""
    return stream + bytes(8 * n_symbols + 16 * len(stream) + 4096)


def _check_range(values: torch.Tensor, what: str) -> None:
    if values.numel() and not (values.min() > -LATENT_LIMIT and values.max() < LATENT_LIMIT):
        raise CodecError(f"corrupted {what} stream: it decodes to implausible values")


def _one_thread(method):
    """Code one image on one thread throughout. The transforms must (see model.single_thread); the rest is small
    tensor work and single-threaded rANS, which only loses to OpenMP thread wake-ups on a busy machine."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with single_thread():
            return method(*args, **kwargs)

    return wrapper


class LeafCodec:
    """Learned codec with quality levels 1..K (low to high). ``encode``/``decode`` work on uint8 RGB arrays.

    ``backend="onnx"`` decodes with the ONNX Runtime transforms of ``helpers.export`` (same files; pixels within
    one grey level of the PyTorch backend's); encoding always runs in PyTorch."""

    name = "ours"

    def __init__(self, checkpoint: str | Path | None = None, backend: str = "torch"):
        if backend not in BACKENDS:
            raise CodecError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.model, ckpt = load_model(checkpoint)
        self.model_name = ckpt["name"]
        self.hash = bytes.fromhex(ckpt["weights_sha256"])[:8]
        self.levels = list(range(1, self.model.num_levels + 1))
        self.settings = self.levels
        self.backend = backend
        if backend == "onnx":
            from .export import OnnxTransforms

            self.transforms = OnnxTransforms(self.model, ckpt["weights_sha256"])
        else:
            self.transforms = self.model  # hyper_synthesis / synthesise

    @property
    def default_level(self) -> int:
        return self.levels[len(self.levels) // 2]

    def check_level(self, level: int) -> int:
        if level not in self.levels:
            raise CodecError(
                f"unknown quality level {level}; valid levels are {', '.join(map(str, self.levels))}"
            )
        return level

    @_one_thread
    def encode(self, rgb: np.ndarray, level: int | None = None, colour: int = COLOUR_RGB) -> bytes:
        level = self.check_level(self.default_level if level is None else level)
        h, w = rgb.shape[:2]
        if h * w > MAX_PIXELS:
            raise DataError(f"image too large: {w}x{h} exceeds {MAX_PIXELS} pixels")
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
        ph, pw = -h % STRIDE, -w % STRIDE
        # Replicate-padding costs fewer bits than zeros and is cropped away after decoding.
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = self.model.compress(x, level - 1)
        _check_range(out["symbols"], "latent")  # never a file the decoder refuses (real |y| stays below ~100)
        y_strings, z_strings = out["strings"]
        crc = zlib.crc32(out["symbols"].numpy().astype("<i4").tobytes())
        return pack(self.model_name, self.hash, level, colour, h, w, crc, z_strings[0], y_strings[0])

    def check_model(self, header: Header) -> None:
        if header.model_name != self.model_name or header.weights_hash != self.hash:
            raise CodecError(
                f"file was written by model {header.model_name!r} (weights {header.weights_hash.hex()}), "
                f"but the loaded checkpoint is {self.model_name!r} ({self.hash.hex()}); "
                "pass the matching --checkpoint"
            )

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_with_header(data)[0]

    @_one_thread
    def decode_with_header(self, data: bytes) -> tuple[np.ndarray, Header]:
        header = parse(data)
        self.check_model(header)
        self.check_level(header.level)
        z, y = _streams(data, header)
        zh, zw = -(-header.height // STRIDE), -(-header.width // STRIDE)
        try:
            symbols, means = self._decode_latents(z, y, (zh, zw), header.symbols_crc)
        except (RuntimeError, ValueError, OverflowError, IndexError) as exc:
            raise CodecError(f"corrupted latent stream: {exc.__class__.__name__}: {exc}") from None
        except MemoryError:
            raise CodecError(f"not enough memory to decode a {header.width}x{header.height} image") from None
        x_hat = self.transforms.synthesise(symbols, means, header.level - 1)
        x_hat = x_hat[0, :, : header.height, : header.width]
        rgb = x_hat.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return rgb, header

    def _decode_latents(self, z: bytes, y: bytes, z_shape: tuple[int, int], symbols_crc: int):
        """rANS-decode both streams (see the module docstring for the checks) -> y symbols, means."""
        m = self.model
        n_z = m.entropy_bottleneck.channels * z_shape[0] * z_shape[1]
        z_hat = m.entropy_bottleneck.decompress([_guarded(z, n_z)], z_shape)
        _check_range(z_hat, "hyper-latent")
        if m.entropy_bottleneck.compress(z_hat)[0] != z:
            raise CodecError(
                "corrupted hyper-latent stream: it is not what the encoder writes for its symbols"
            )
        means, indexes = m.entropy_parameters(self.transforms.hyper_synthesis(z_hat))
        symbols = m.gaussian_conditional.decompress([_guarded(y, indexes.numel())], indexes).int()
        if zlib.crc32(symbols.numpy().astype("<i4").tobytes()) != symbols_crc:
            raise CodecError("decoding failed: latents differ from the encoder's (symbol checksum mismatch)")
        _check_range(symbols, "latent")
        if m.gaussian_conditional.compress(symbols.float(), indexes)[0] != y:
            raise CodecError("corrupted latent stream: it is not what the encoder writes for its symbols")
        return symbols, means

    # file-level helpers used by the command line
    def compress_file(self, src: Path, dst: Path, level: int | None = None, force: bool = False) -> int:
        if Path(dst).exists() and not force:  # before the work; atomic_write checks again
            raise DataError(f"{dst} exists; pass --force to overwrite it")
        rgb, colour = load_input_image(src)
        data = self.encode(rgb, level, colour)
        atomic_write(dst, data, force)
        return len(data)

    def decompress_file(self, src: Path, dst: Path, force: bool = False) -> Header:
        if Path(dst).exists() and not force:
            raise DataError(f"{dst} exists; pass --force to overwrite it")
        data = read_bitstream(src)
        rgb, header = self.decode_with_header(data)
        atomic_write(dst, png_bytes(output_image(rgb, header.colour)), force)
        return header


def read_bitstream(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a .leaf file") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
