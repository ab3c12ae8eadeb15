"""Classical codecs (JPEG, JPEG 2000, WebP, AVIF) behind one small interface, and the evaluation loop.

Every codec turns a uint8 RGB image into the bytes of a complete, standard file and back; the rate counted
is that whole file, headers included. ``Codec.settings`` are listed from lowest to highest rate. Mean bpp
over 10 test-split 256x256 leaves, lowest to highest setting: JPEG 0.36-3.6 (its floor is ~0.22 bpp even at
quality 1), JPEG 2000 0.051-2.4, WebP 0.093-3.3, AVIF 0.089-1.7 (quality 0 is its floor).

PlantVillage files are themselves baseline JPEGs (libjpeg quality 75, 4:2:0). JPEG at quality >= 70 thus
re-quantises on almost the source's grid and jumps to ~40 dB PSNR: a re-encoding effect, not coding gain.

* JPEG: Pillow/libjpeg, 4:2:0 chroma subsampling, standard Huffman tables (Pillow's defaults).
* JPEG 2000: glymur/OpenJPEG, raw codestream (.j2k; the .jp2 box wrapper would add ~30 bytes of
  metadata), irreversible 9/7 wavelet with colour transform (the lossy profile), rate set by compression
  ratio. Needs the OpenJPEG shared library (Debian: ``apt-get install libopenjp2-7``).
* WebP: Pillow/libwebp lossy, ``method=6`` (slowest, best compression).
* AVIF: Pillow's AVIF plugin (libavif + aom), 4:2:0, ``speed=6`` (libavif's default; on two leaves speed 0
  saved ~2% BD-rate for ~50x the encode time), one thread so timings compare with the codecs above.

The learned codec plugs into ``evaluate`` by building a ``Codec`` of its own.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import paths
from .errors import CodecError, LeafCodecError
from .metrics import bpp, lpips_distance, ms_ssim, psnr

JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
JPEG2000_RATIOS = (480, 300, 200, 150, 100, 75, 50, 35, 25, 15, 10)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (0, 10, 20, 30, 40, 50, 60, 70)
AVIF_SPEED = 6
CSV_COLUMNS = ("image", "codec", "setting", "bytes", "bpp", "psnr", "ms_ssim", "lpips",
               "encode_ms", "decode_ms", "height", "width")  # fmt: skip


@dataclass(frozen=True)
class Codec:
    """An image codec at a list of operating points (``settings``, lowest rate first)."""

    name: str
    settings: tuple
    setting_label: str  # what a setting means, e.g. "quality" or "compression ratio"
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


def classical_codecs() -> list[Codec]:
    """JPEG, JPEG 2000, WebP and AVIF with the study's settings (see module docstring)."""
    from PIL import features

    codecs = [
        Codec("jpeg", JPEG_QUALITIES, "quality", _pil_encode("JPEG", subsampling="4:2:0"), _pil_decode),
        Codec("jpeg2000", JPEG2000_RATIOS, "compression ratio", _jpeg2000_encode, _jpeg2000_decode),
        Codec("webp", WEBP_QUALITIES, "quality", _pil_encode("WEBP", method=6), _pil_decode),
    ]
    if not features.check("avif"):
        raise LeafCodecError("this Pillow has no AVIF support; install Pillow >= 11.3 from PyPI (its wheels "
                             "include libavif)")  # fmt: skip
    avif = _pil_encode("AVIF", speed=AVIF_SPEED, subsampling="4:2:0", max_threads=1)
    codecs.append(Codec("avif", AVIF_QUALITIES, "quality", avif, _pil_decode))
    return codecs


def _relative_name(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(paths.data_dir()).as_posix()
    except ValueError:
        return str(path)


def evaluate(
    image_paths: Sequence[str | Path],
    codecs: Sequence[Codec],
    out_csv: str | Path | None,
    lpips: bool = True,
    progress: bool = True,
):
    """Code every image with every codec setting; one row per (image, codec, setting), written to ``out_csv``.

    ``bytes`` is the whole file; ``encode_ms``/``decode_ms`` are wall-clock times of one call each. Returns
    the rows as a pandas DataFrame (columns ``CSV_COLUMNS``); ``lpips`` is NaN when ``lpips=False``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .data import read_image

    rows = []
    total = len(image_paths) * sum(len(c.settings) for c in codecs)
    with tqdm(total=total, desc="evaluate", disable=not progress, mininterval=2) as bar:
        for image_path in image_paths:
            img = read_image(image_path)
            h, w = img.shape[:2]
            for codec in codecs:
                for setting in codec.settings:
                    t0 = time.perf_counter()
                    data = codec.encode(img, setting)
                    t1 = time.perf_counter()
                    out = codec.decode(data)
                    t2 = time.perf_counter()
                    if out.shape != img.shape or out.dtype != np.uint8:
                        raise CodecError(f"{codec.name} at {setting} decoded {image_path} to {out.dtype} "
                                         f"{out.shape}, not uint8 {img.shape}")  # fmt: skip
                    rows.append({
                        "image": _relative_name(image_path), "codec": codec.name, "setting": setting,
                        "bytes": len(data), "bpp": bpp(len(data), h, w),
                        "psnr": psnr(img, out), "ms_ssim": ms_ssim(img, out),
                        "lpips": lpips_distance(img, out) if lpips else float("nan"),
                        "encode_ms": 1000 * (t1 - t0), "decode_ms": 1000 * (t2 - t1),
                        "height": h, "width": w,
                    })  # fmt: skip
                    bar.update()
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    if out_csv is not None:
        out_csv = Path(out_csv)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_csv.with_name(out_csv.name + ".tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(out_csv)
    return df
