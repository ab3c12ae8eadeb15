"""Classical codecs (JPEG, JPEG 2000, WebP, AVIF) behind one small interface, ``Codec``.

Every codec turns a uint8 RGB image into the bytes of a complete, standard file and back; the rate counted
is that whole file, headers included. ``Codec.settings`` are listed from lowest to highest rate. Mean bpp
over 10 test-split 256x256 leaves, lowest to highest setting: JPEG 0.36-3.6 (its floor is ~0.22 bpp even at
quality 1), JPEG 2000 0.051-2.4, WebP 0.093-3.3, AVIF 0.089-1.66 (both variants; quality 0 is its floor).

PlantVillage files are themselves baseline JPEGs (libjpeg quality 75, 4:2:0). JPEG at quality >= 70 thus
re-quantises on almost the source's grid and jumps to ~40 dB PSNR: a re-encoding effect, not coding gain.

* JPEG: Pillow/libjpeg, 4:2:0 chroma subsampling, standard Huffman tables (Pillow's defaults).
* JPEG 2000: glymur/OpenJPEG, raw codestream (.j2k; the .jp2 box wrapper would add ~30 bytes of
  metadata), irreversible 9/7 wavelet with colour transform (the lossy profile), rate set by compression
  ratio. Needs the OpenJPEG shared library (Debian: ``apt-get install libopenjp2-7``).
* WebP: Pillow/libwebp lossy, ``method=6`` (slowest, best compression).
* AVIF: Pillow's AVIF plugin (libavif + libaom), one thread so timings compare with the codecs above, in two
  variants (``AVIF_VARIANTS``). ``avif``, the study's headline anchor: 4:4:4 (no chroma subsampling) at
  ``speed=4``, the strongest setting that stays practical (~5x the encode time of speed 6; speed 0 saved ~2%
  BD-rate over speed 6 on two leaves for ~50x the time). ``avif_fast``: 4:2:0 at ``speed=6``, libavif's
  default, what an application gets without tuning.

Our codec plugs into ``evaluate.evaluate`` through ``evaluate.learned_codec``, which builds a ``Codec``.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.codec.errors import LeafCodecError

JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
JPEG2000_RATIOS = (480, 300, 200, 150, 100, 75, 50, 35, 25, 15, 10)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (0, 10, 20, 30, 40, 50, 60, 70)
# name -> (chroma subsampling, libaom speed): the headline AVIF is libaom at its strongest reasonable setting;
# "avif_fast" is libavif's default speed with 4:2:0, what an application gets without tuning.
AVIF_VARIANTS = {"avif": ("4:4:4", 4), "avif_fast": ("4:2:0", 6)}


@dataclass(frozen=True)
class Codec:
    """An image codec at a list of operating points (``settings``, lowest rate first)."""

    name: str
    settings: tuple
    encode: Callable[[np.ndarray, object], bytes]  # (uint8 RGB image, setting) -> whole file
    decode: Callable[[bytes], np.ndarray]  # whole file -> uint8 RGB image


def _pil_encode(fmt: str, **options) -> Callable[[np.ndarray, object], bytes]:
    def encode(img: np.ndarray, quality) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, quality=quality, **options)
        return buf.getvalue()

    return encode


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _glymur():
    import glymur

    if glymur.version.openjpeg_version in ("", "0.0.0"):
        raise LeafCodecError("JPEG 2000 needs the OpenJPEG library, which glymur cannot find "
                             "(Debian/Ubuntu: apt-get install libopenjp2-7; conda: conda install openjpeg)")  # fmt: skip
    return glymur


def _jpeg2000_encode(img: np.ndarray, ratio) -> bytes:
    glymur = _glymur()
    with tempfile.TemporaryDirectory() as tmp:  # OpenJPEG writes to files only
        path = Path(tmp) / "image.j2k"
        glymur.Jp2k(str(path), data=img, cratios=[ratio], irreversible=True)
        return path.read_bytes()


def _jpeg2000_decode(data: bytes) -> np.ndarray:
    glymur = _glymur()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.j2k"
        path.write_bytes(data)
        return np.ascontiguousarray(glymur.Jp2k(str(path))[:])


def _avif_has_aom() -> bool:
    from PIL import AvifImagePlugin

    return bool(AvifImagePlugin._avif.encoder_codec_available("aom"))


def classical_codecs() -> list[Codec]:
    """JPEG, JPEG 2000, WebP and both AVIF variants with the study's settings (see module docstring)."""
    from PIL import features

    codecs = [
        Codec("jpeg", JPEG_QUALITIES, _pil_encode("JPEG", subsampling="4:2:0"), _pil_decode),
        Codec("jpeg2000", JPEG2000_RATIOS, _jpeg2000_encode, _jpeg2000_decode),
        Codec("webp", WEBP_QUALITIES, _pil_encode("WEBP", method=6), _pil_decode),
    ]
    if not features.check("avif") or not _avif_has_aom():
        raise LeafCodecError("this Pillow has no AVIF encoder with libaom; install Pillow >= 11.3 from PyPI "
                             "(its wheels include libavif with libaom)")  # fmt: skip
    for name, (subsampling, speed) in AVIF_VARIANTS.items():
        avif = _pil_encode("AVIF", codec="aom", speed=speed, subsampling=subsampling, max_threads=1)
        codecs.append(Codec(name, AVIF_QUALITIES, avif, _pil_decode))
    return codecs
