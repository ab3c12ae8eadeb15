"""Image files to ``.leaf`` files and back, one file at a time: what ``compress`` and ``decompress`` do to each
input. ``LeafCodec`` converts bytes <-> pixels; here the image is read (``imageio.load_image``, within the codec's
budgets), a ``.leaf`` file is read and parsed once (``container``), and the output is published atomically
(``fileio.atomic_write``) after being checked before any work (``fileio.check_output``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from helpers.codec.container import Header, bpp, parse, read_file
from helpers.codec.fileio import atomic_write, check_output
from helpers.codec.imageio import DEFAULT_MAX_RATIO, load_image, output_image, save_png
from helpers.codec.leaf_codec import LeafCodec


@dataclass(frozen=True)
class Compressed:
    """What ``compress_file`` wrote: its size in bytes, the level and the image size."""

    size: int
    level: int | float
    height: int
    width: int

    @property
    def bpp(self) -> float:
        return bpp(self.size, self.height, self.width)


def compress_file(codec: LeafCodec, src: Path, dst: Path, level: float | None = None, force: bool = False,
                  max_bytes: int | None = None, target_bpp: float | None = None, notes: list[str] | None = None,
                  max_ratio: float | None = DEFAULT_MAX_RATIO) -> Compressed:  # fmt: skip
    """Code the image file ``src`` into ``dst`` at ``level`` (default: the codec's middle level), or at the level
    that meets ``max_bytes`` or ``target_bpp`` (``LeafCodec.encode_to_rate``). ``notes``, ``max_ratio``: see
    ``imageio.load_image``."""
    check_output(dst, force)  # before the work; atomic_write checks again when it publishes
    to_rate = max_bytes is not None or target_bpp is not None
    rgb, colour = load_image(src, codec.max_pixels, lambda w, h: codec.check_size(w, h, False, 1 + to_rate),
                             notes, max_ratio)  # fmt: skip
    if to_rate:
        data, level = codec.encode_to_rate(rgb, colour, max_bytes, target_bpp)
    else:
        level = codec.default_level if level is None else level
        data = codec.encode(rgb, level, colour)
    atomic_write(dst, data, force)
    return Compressed(len(data), level, *rgb.shape[:2])


def decompress_file(codec: LeafCodec | Callable[[Header], LeafCodec], src: Path, dst: Path,
                    force: bool = False) -> Header:  # fmt: skip
    """Decode the ``.leaf`` file ``src`` into the PNG ``dst``; its header. ``codec`` is a ``LeafCodec``, or a
    function that picks one for the file's header (the command line's: the model that wrote it). The file is
    read and parsed once."""
    check_output(dst, force)
    header = parse(read_file(src))
    if not isinstance(codec, LeafCodec):
        codec = codec(header)
    image = output_image(codec.decode_parsed(header), header.colour)
    atomic_write(dst, lambda f: save_png(image, f), force)
    return header
