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
class Region:
    """A region of interest to code an image with (``helpers.codec.roi``): ``source`` is one of
    ``importance.ROI_KINDS`` or a mask image's path; ``background`` the level of weight 0 (None: the default)."""

    source: str | Path
    background: float | None = None

    def weights(self, rgb):
        """The weight map of ``rgb`` (one per latent position), from the image or the user's mask."""
        from helpers.codec import importance

        if isinstance(self.source, str) and self.source in importance.ROI_KINDS:
            return importance.importance_map(rgb, self.source)
        return importance.read_mask(self.source, *rgb.shape[:2])


@dataclass(frozen=True)
class Compressed:
    """What ``compress_file`` wrote: its size in bytes, the level, the image size, and the share of latent
    positions at full weight (None: uniform quality)."""

    size: int
    level: int | float
    height: int
    width: int
    roi_share: float | None = None

    @property
    def bpp(self) -> float:
        return bpp(self.size, self.height, self.width)


def compress_file(codec: LeafCodec, src: Path, dst: Path, level: float | None = None, force: bool = False,
                  max_bytes: int | None = None, target_bpp: float | None = None, notes: list[str] | None = None,
                  max_ratio: float | None = DEFAULT_MAX_RATIO, region: Region | None = None,
                  target_psnr: float | None = None) -> Compressed:  # fmt: skip
    """Code the image file ``src`` into ``dst`` at ``level`` (default: the codec's middle level), or at the level
    that meets ``max_bytes``, ``target_bpp`` or ``target_psnr`` (``LeafCodec.encode_to_rate``), with a
    ``region`` of interest if given. ``notes``, ``max_ratio``: see ``imageio.load_image``."""
    check_output(dst, force)  # before the work; atomic_write checks again when it publishes
    to_rate = max_bytes is not None or target_bpp is not None or target_psnr is not None
    rgb, colour = load_image(src, codec.max_pixels, lambda w, h: codec.check_size(w, h, False, 1 + to_rate),
                             notes, max_ratio)  # fmt: skip
    weights = None if region is None else region.weights(rgb)
    background = None if region is None else region.background
    if to_rate:
        data, level = codec.encode_to_rate(
            rgb, colour, max_bytes, target_bpp, weights, background, target_psnr
        )
    else:
        level = codec.default_level if level is None else level
        data = codec.encode(rgb, level, colour, weights, background)
    atomic_write(dst, data, force)
    share = None if weights is None else float((weights >= 1).mean())
    return Compressed(len(data), level, *rgb.shape[:2], share)


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
