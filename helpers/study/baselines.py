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
* AVIF with a rate map (``avif_roi``): the headline AVIF given the same importance map as our ROI coding,
  through libaom's rate-guided delta-q (see ``avif_roi_encode``), so that more bits go to the leaf.

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


def _require_avif_aom() -> None:
    from PIL import features

    if not features.check("avif") or not _avif_has_aom():
        raise LeafCodecError("this Pillow has no AVIF encoder with libaom; install Pillow >= 11.3 from PyPI "
                             "(its wheels include libavif with libaom)")  # fmt: skip


def classical_codecs() -> list[Codec]:
    """JPEG, JPEG 2000, WebP and both AVIF variants with the study's settings (see module docstring)."""
    codecs = [
        Codec("jpeg", JPEG_QUALITIES, _pil_encode("JPEG", subsampling="4:2:0"), _pil_decode),
        Codec("jpeg2000", JPEG2000_RATIOS, _jpeg2000_encode, _jpeg2000_decode),
        Codec("webp", WEBP_QUALITIES, _pil_encode("WEBP", method=6), _pil_decode),
    ]
    _require_avif_aom()
    for name, (subsampling, speed) in AVIF_VARIANTS.items():
        avif = _pil_encode("AVIF", codec="aom", speed=speed, subsampling=subsampling, max_threads=1)
        codecs.append(Codec(name, AVIF_QUALITIES, avif, _pil_decode))
    return codecs


# libaom's rate-guided delta-q (libaom >= 3.7; an older one fails the encode with "Invalid codec-specific
# option"): it works in all-intra usage, which libavif uses for a still image, and replaces the perceptual
# offsets of deltaq-mode 3; the map file's path is added per encode.
RATE_GUIDE_OPTIONS = {"deltaq-mode": "3", "enable-rate-guide-deltaq": "1"}
RATE_BLOCK = 16  # libaom reads one value per 16 x 16 block
_PAD = 64  # our codec's maps come on its padded grid: 4 blocks per 64 pixels


def rate_map_shape(height: int, width: int) -> tuple[int, int]:
    """The (rows, cols) of libaom's rate-distribution file for an image: one value per 16 x 16 block, the
    partial blocks at the bottom and right edges included."""
    return -(-height // RATE_BLOCK), -(-width // RATE_BLOCK)


def rate_distribution_text(block_weights: np.ndarray, height: int, width: int) -> str:
    """libaom's ``rate-distribution-info`` file for an image of ``height`` x ``width``: the weights of
    ``rate_map_shape`` as decimal numbers, one line per block row, top row first, left to right, no header.

    ``block_weights`` has that shape, or that of our codec's padded grid (``ceil(H/64)*4`` x
    ``ceil(W/64)*4``), whose extra rows and columns (blocks wholly outside the image) are cropped away. The
    weights must be finite, non-negative and not all zero (libaom divides by their sum). Raises ``ValueError``
    otherwise: libaom itself takes a short or missing file without a word and codes every superblock as if it
    asked for no bits (its quantiser step doubled; measured: the same bytes for both)."""
    rows, cols = rate_map_shape(height, width)
    padded = (-(-height // _PAD) * _PAD // RATE_BLOCK, -(-width // _PAD) * _PAD // RATE_BLOCK)
    w = np.asarray(block_weights, dtype=np.float64)
    if w.shape not in ((rows, cols), padded):
        raise ValueError(f"a {height}x{width} image needs block weights of shape {(rows, cols)} (one per "
                         f"16x16 block) or {padded} (the codec's padded grid), not {w.shape}")  # fmt: skip
    w = w[:rows, :cols]
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError("block weights must be finite, non-negative and not all zero")
    return "\n".join(" ".join(f"{v:.6g}" for v in row) for row in w) + "\n"


def avif_roi_encode(img: np.ndarray, quality, block_weights: np.ndarray) -> bytes:
    """The headline AVIF (``AVIF_VARIANTS["avif"]``: libaom, 4:4:4, speed 4, one thread) of ``img`` at
    ``quality``, its bits spread by ``block_weights`` (one per 16 x 16 block, see ``rate_distribution_text``)
    through libaom's rate-guided delta-q. A standard AVIF file: any decoder reads it.

    What libaom does with the weights (libaom av1/encoder/allintra_vis.c, ``ext_rate_guided_quantization`` and
    ``get_rate_guided_quantizer``; the file format: aom/aomcx.h, ``AV1E_SET_RATE_DISTRIBUTION_INFO``):

    * they are a target *number of bits* per 16 x 16 block, relative only: libaom scales them so that their
      sum equals its own estimate of the frame's bits (a quick 8 x 8 intra prediction, transform and
      quantisation at the base quantiser), so multiplying all weights by a constant changes nothing (the same
      bytes). A partial edge block counts as one block, whatever its area.
    * per 64 x 64 superblock (all-intra with deltaq-mode 3 forces 64 x 64 superblocks) it compares the map's
      bits B with its own estimate U: ``d = (B - U) / U`` and the quantiser step is multiplied by ``2**-d``:
      a superblock asking for twice its natural bits gets half the step. ``d >= -1``, so the background's
      step at most doubles (less where the superblock's largest quantised coefficient is small); the offset
      is capped at +-39 qindex (delta-q resolution 4, times 10, minus 1).
    * so a uniform map is not plain AVIF: it asks for the same bits in every block, smooth or textured; and
      weights of 1 on the leaf and 0.03 on the background ask for ~33 times the bits in a leaf block as in a
      background block, whatever their content (the clamps above bound what they get).

    The file size moves with the map at a fixed ``quality`` (the base quantiser is the same, the offsets are
    not rate-neutral): compare against plain AVIF on R-D curves, not at equal settings."""
    h, w = img.shape[:2]
    text = rate_distribution_text(block_weights, h, w)
    subsampling, speed = AVIF_VARIANTS["avif"]
    with tempfile.TemporaryDirectory() as tmp:  # libaom reads the map from a file, during the encode
        path = Path(tmp) / "rate_distribution.txt"
        path.write_text(text, encoding="ascii")
        advanced = {**RATE_GUIDE_OPTIONS, "rate-distribution-info": str(path)}
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "AVIF", quality=quality, codec="aom", speed=speed,
                                  subsampling=subsampling, max_threads=1, advanced=advanced)  # fmt: skip
        return buf.getvalue()


def avif_roi(block_weights: np.ndarray | Callable[[np.ndarray], np.ndarray], name: str = "avif_roi") -> Codec:
    """The headline AVIF with a rate map (``avif_roi_encode``) as a ``Codec`` for the evaluation loop, at
    ``AVIF_QUALITIES``. ``block_weights`` is one image's map, or a function from the image being encoded to
    its map (e.g. ``lambda img: 0.03 + 0.97 * importance_map(img, "leaf")``), so one codec serves every image
    of ``evaluate``; that function's time counts in ``encode_ms``."""
    _require_avif_aom()
    weights_for = block_weights if callable(block_weights) else lambda img: block_weights

    def encode(img: np.ndarray, quality) -> bytes:
        return avif_roi_encode(img, quality, weights_for(img))

    return Codec(name, AVIF_QUALITIES, encode, _pil_decode)
