"""The project's one image reader (compress, metrics, data loading) and the decoder's PNG writer.

``load_image(path)`` decodes a file with Pillow to uint8 RGB (H, W, 3) and says what it was (``COLOUR_*``), so
that the codec can decode back to the same kind of image. Rules, the same for every caller:

* EXIF orientation is applied (the pixels are shown upright); Pillow's warnings about damaged EXIF are
  silenced (the image itself is fine).
* Grayscale (``L``, ``1``) is coded as RGB and reported as grayscale; an alpha channel is dropped (the codec
  codes colour only) and reported (``RGBA``, ``LA`` at 8 or 16 bits, ``PA``, palettes with transparency).
* Animations and multi-page files (GIF, WebP, APNG, TIFF): the first frame is read; ``load_image`` says so in
  the caller's ``notes`` ("only the first of N frames is coded"), which ``compress`` prints.
* 16-bit samples (``I;16`` grey; Pillow already reduces 48-bit RGB PNGs the same way) keep their top 8 bits.
* 32-bit integer images are refused: their value range is not defined by the format (a 32-bit TIFF may hold
  0-255, 0-65535 or anything else), and guessing it silently is how a picture turns black.
* Floating-point images (``F``) are read as 0..1 (the usual convention) and scaled to 0..255; values outside
  0..1 (or NaN) are refused for the same reason.
* CMYK, YCbCr and palettes are converted to RGB by Pillow.
* Size: the pixel count is checked against ``max_pixels`` from the file's header, *before* the pixels are
  decoded (Pillow's own decompression-bomb limit is replaced by this one, which the user can raise).
* Compression ratio: an image of over ``RATIO_FLOOR`` pixels whose file is more than ``max_ratio`` times
  smaller than its 24-bit RGB pixels is refused before decoding (``DEFAULT_MAX_RATIO``, which the user can
  raise): photos compress 2:1 to 40:1 (PlantVillage's JPEGs at most 38:1, Kodak's PNGs 1.5:1), and neither a
  Huffman-coded JPEG (at least one bit per 8x8 block: ~1500:1 for a flat grey one) nor a flat RGB or grey PNG
  (deflate's 1032:1; measured 852:1 and 3071:1) goes beyond 5000:1. What does is a header that claims far more
  pixels than the file holds (the decoder would invent them: a decompression bomb), or a flat palette,
  1-bit or lossless-WebP image, which no camera makes.
* Damage: a truncated file is refused (Pillow's own check). Pillow does not report libjpeg's warnings about
  corrupt JPEG data, so a run of ``ZERO_RUN`` or more zero bytes in the entropy-coded data of a JPEG that is not
  flat (ratio under ``FLAT_RATIO``:1; photos have runs of at most 7) gets a note: zeroed sectors are the common
  damage, and the decoder fills them with invented pixels.
* Only regular files are read (``fileio.open_input``): a FIFO or a device is refused before it is opened.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from helpers.codec.errors import DataError, ResourceError, shown
from helpers.codec.fileio import open_input
from helpers.codec.stage_timer import stage

COLOUR_RGB, COLOUR_GRAY, COLOUR_ALPHA_DROPPED, COLOUR_GRAY_ALPHA_DROPPED = 0, 1, 2, 3
COLOUR_NAMES = {COLOUR_RGB: "RGB", COLOUR_GRAY: "grayscale", COLOUR_ALPHA_DROPPED: "RGB (alpha dropped)",
                COLOUR_GRAY_ALPHA_DROPPED: "grayscale (alpha dropped)"}  # fmt: skip
GRAY_COLOURS = (COLOUR_GRAY, COLOUR_GRAY_ALPHA_DROPPED)
DEFAULT_MAX_PIXELS = 200_000_000  # far above a camera's 12-108 MP; the memory budget is the real limit
DEFAULT_MAX_RATIO = 5000  # 24-bit RGB bytes per file byte (module docstring)
RATIO_FLOOR = 1_000_000  # pixels: smaller images cost little whatever their ratio
ZERO_RUN, FLAT_RATIO = 16, 150
_ZEROS = re.compile(rb"\x00{%d,}" % ZERO_RUN)

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
# What Pillow raises on damaged files, besides OSError (struct.error: short EXIF/TIFF fields).
_DAMAGED = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
)
_pillow_limit = threading.Lock()


@stage("read image")
def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               check_size: Callable[[int, int], None] | None = None,
               notes: list[str] | None = None, max_ratio: float | None = DEFAULT_MAX_RATIO) -> tuple[np.ndarray, int]:  # fmt: skip
    """uint8 RGB (H, W, 3), possibly read-only, and its ``COLOUR_*`` mode; DataError/ResourceError otherwise.
    ``check_size(width, height)`` may refuse the image (e.g. a memory budget) before its pixels are decoded.
    What the user should know about the reading (an animation's other frames dropped, signs of damage) is
    appended to ``notes``. ``max_ratio``: see the module docstring (None: no limit)."""
    path = Path(path)
    try:
        f = open_input(path, "an image")
    except FileNotFoundError:
        raise DataError(f"image not found: {shown(path)}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {shown(path)}: {exc.strerror or exc}") from None
    try:
        with f, _quiet_pillow(), _open(f) as im:
            check_pixels(im.width, im.height, max_pixels, f"image {shown(path)}")
            _check_ratio(im, os.fstat(f.fileno()).st_size, max_ratio, path)
            if check_size is not None:
                check_size(im.width, im.height)
            if notes is not None:
                notes.extend(_reading_notes(im, f))
            # Before exif_transpose, which may load the pixels (and forget the file's own sample layout).
            rawmode = im.tile[0].args if im.tile and isinstance(im.tile[0].args, str) else None
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an upright image
            return image_to_rgb(im, rawmode)
    except MemoryError:
        raise ResourceError(f"not enough memory to read image {shown(path)}") from None
    except (DataError, *_DAMAGED) as exc:
        raise DataError(f"cannot read image {shown(path)}: {_damage(exc)}") from None


def _damage(exc: BaseException) -> str:
    """Pillow's message, without its internal names."""
    text = str(exc)
    if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text:
        return (
            "its PNG metadata (a compressed text or colour-profile chunk) is larger than the reader accepts "
            "(1 MB each, 64 MB in all); save the image without it"
        )
    return text


def _check_ratio(im: Image.Image, file_bytes: int, max_ratio: float | None, path: Path) -> None:
    raw = 3 * im.width * im.height
    if max_ratio is None or im.width * im.height <= RATIO_FLOOR or raw <= max_ratio * max(file_bytes, 1):
        return
    raise ResourceError(
        f"image {shown(path)} claims {im.width}x{im.height} pixels in {file_bytes} bytes, a compression ratio "
        f"of {raw / max(file_bytes, 1):,.0f}:1, beyond any photograph's (the limit is {max_ratio:g}:1): a "
        "damaged file or a decompression bomb; if it is a flat synthetic image, raise --max-ratio"
    )


def _reading_notes(im: Image.Image, f) -> list[str]:
    """What ``load_image`` says about a file it reads: frames it drops, signs of damage."""
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        held = _apng_frames(f.fileno()) if im.format == "PNG" else frames
        lie = "" if held == frames else f" (the file says {frames} frames but holds {held})"
        notes.append(f"only the first of {held} frames is coded{lie}")
    if im.format == "JPEG":
        run = _longest_zero_run(f.fileno())
        if run >= ZERO_RUN and 3 * im.width * im.height < FLAT_RATIO * os.fstat(f.fileno()).st_size:
            notes.append(
                f"its JPEG data hold a run of {run} zero bytes, as a damaged file does (photos: at most 7); "
                "the decoder may have invented pixels there: check the image"
            )
    return notes


def _apng_frames(fd: int) -> int:
    """The frames an APNG holds: its frame-control chunks, counted by walking the chunks (``os.pread``: the
    file position Pillow reads from is not moved)."""
    pos, count, size = 8, 0, os.fstat(fd).st_size
    while pos + 8 <= size:
        length, tag = struct.unpack(">I4s", os.pread(fd, 8, pos))
        count += tag == b"fcTL"
        if tag == b"IEND":
            break
        pos += 12 + length
    return count


def _longest_zero_run(fd: int) -> int:
    """The longest run of zero bytes after a JPEG's first start-of-scan marker."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    start = data.find(b"\xff\xda")
    if start < 0:
        return 0
    return max((m.end() - m.start() for m in _ZEROS.finditer(data, start)), default=0)


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``load_image`` for callers that only want the (writable) RGB pixels: metrics, data loading."""
    rgb, _ = load_image(path, max_pixels)
    return rgb if rgb.flags.writeable else rgb.copy()


def check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        size, limit = pixel_counts(width * height, max_pixels)
        raise ResourceError(
            f"{what} is too large: {width}x{height} = {size} exceeds the limit of {limit} (raise it with "
            "--max-pixels)"
        )


def pixel_counts(*counts: int) -> list[str]:
    """``400.0 MP``; exact counts (``4,096 pixels``) for small images and limits, or where one decimal would
    make two different counts look equal (1.04 and 1.0 MP)."""
    texts = [f"{n / 1e6:.1f} MP" for n in counts]
    if min(counts) >= 10**6 and len(set(texts)) == len(set(counts)):
        return texts
    return [f"{int(n):,} pixels" for n in counts]


@contextlib.contextmanager
def _quiet_pillow():
    """Pillow's warnings about damaged metadata (corrupt EXIF, truncated tags) stay off the user's terminal;
    the image itself is fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def _open(f) -> Image.Image:
    """``Image.open`` with Pillow's decompression-bomb check off: ``check_pixels`` and ``_check_ratio`` replace
    it (with limits the user can raise). The check reads a module global, hence the lock."""
    with _pillow_limit:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(f)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def image_to_rgb(im: Image.Image, rawmode: str | None = None) -> tuple[np.ndarray, int]:
    """Pillow image -> uint8 RGB and its colour mode (rules in the module docstring). ``rawmode``: the file's
    own sample layout where Pillow widens it (a 16-bit grey + alpha PNG opens as RGBA, raw mode ``LA;16B``)."""
    mode = "LA" if im.mode == "RGBA" and rawmode is not None and rawmode.startswith("LA;16") else im.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        im, mode = _sixteen_bit_to_l(im), "L"
    elif mode == "F":
        im, mode = _float_to_l(im), "L"
    if mode in ("L", "1"):
        colour = COLOUR_GRAY
    elif mode in ("LA", "La"):
        colour = COLOUR_GRAY_ALPHA_DROPPED
    elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        colour = COLOUR_ALPHA_DROPPED
    else:
        colour = COLOUR_RGB
    rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))  # convert() would copy an RGB image
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError("empty image")
    return rgb, colour


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    bits = getattr(im, "tag_v2", {}).get(258, (16,)) if im.mode == "I" else (16,)
    if max(bits) > 16:
        raise DataError(
            f"{max(bits)}-bit integer images are not supported (their value range is not defined); "
            "convert to 8 or 16 bits per channel"
        )
    arr = np.asarray(im, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DataError("16-bit image with values outside 0..65535")
    return Image.fromarray((arr >> 8).astype(np.uint8), "L")  # the top 8 bits


def _float_to_l(im: Image.Image) -> Image.Image:
    arr = np.asarray(im, dtype=np.float64)
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
        lo, hi = (np.nanmin(arr), np.nanmax(arr)) if np.isfinite(arr).any() else (np.nan, np.nan)
        raise DataError(
            f"floating-point image with values outside 0..1 (min {lo:g}, max {hi:g}); "
            "its scale is ambiguous: convert it to 8 or 16 bits per channel"
        )
    return Image.fromarray(np.rint(arr * 255).astype(np.uint8), "L")


def output_image(rgb: np.ndarray, colour: int) -> Image.Image:
    """What the decoder writes: RGB, or grayscale for grayscale sources."""
    im = Image.fromarray(rgb, "RGB")
    return im.convert("L") if colour in GRAY_COLOURS else im


# zlib level of the PNGs decoding writes: level 3 wrote a 12 MP decode in a third of the time of Pillow's default 6,
# for 0.5 % more bytes (level 1: a quarter of the time, 5 % more); at 12 MP the default took as long as decoding.
PNG_COMPRESS_LEVEL = 3


def save_png(im: Image.Image, f) -> None:
    im.save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    save_png(im, buf)
    return buf.getvalue()
