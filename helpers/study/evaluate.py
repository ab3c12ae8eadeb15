"""The R-D evaluation: one loop that codes images with every codec, its per-image table, R-D summaries and
Bjontegaard tables. Notebook 03 (R-D curves), notebook 04 (matched rates) and ``helpers.study.benchmark`` all code
through ``coded_images``, so every codec is run, timed and checked the same way.

* Every codec is a ``baselines.Codec``: ``encode(uint8 RGB, setting) -> bytes`` of a whole file and
  ``decode(bytes) -> uint8 RGB``. Ours enters through ``learned_codec``, which hands over ``LeafCodec.encode``
  and ``LeafCodec.decode`` themselves: the methods ``python -m helpers compress/decompress`` call, so the bytes
  measured are those of the ``.leaf`` file the command line writes (tests/test_evaluate.py checks that).
* ``encode_ms``/``decode_ms`` are wall-clock times of one call each, for every codec alike. The loop runs on one
  torch thread: our codec codes on one thread anyway (bit-exact files), the classical codecs are single-threaded,
  and on this busy two-core machine LPIPS and MS-SSIM were 2-6x faster on one thread than on two.
* bpp = 8 x bytes / pixels of the whole file; quality columns: PSNR, MS-SSIM, MS-SSIM in dB and LPIPS, the same
  for every codec (``metrics.compare_images``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from helpers import paths
from helpers.codec.errors import CodecError, DataError
from helpers.measures.metrics import (
    FIDELITY_COLUMNS,
    RATE_WINDOW,
    bd_rate,
    bpp,
    compare_images,
    fidelity_scores,
)
from helpers.paths import relative_name
from helpers.study.baselines import Codec
from helpers.study.tables import write_csv

CSV_COLUMNS = ("image", "codec", "setting", "bytes", "bpp", "psnr", "ms_ssim", "ms_ssim_db", "lpips",
               "encode_ms", "decode_ms", "height", "width")  # fmt: skip
QUALITY_COLUMNS = ("psnr", "ms_ssim", "ms_ssim_db", "lpips")
QUALITY_METRICS = {"psnr": True, "ms_ssim_db": True, "lpips": False}  # metric -> higher is better
# Anchors of the BD tables, the headline first: AVIF 4:4:4 at speed 4 (baselines.AVIF_VARIANTS).
ANCHORS = ("avif", "avif_fast", "jpeg2000", "webp", "jpeg")


def learned_codec(leaf, levels=None, name: str = "ours") -> Codec:
    """Our codec (a ``helpers.codec.LeafCodec``, any checkpoint) as a ``Codec``: settings = quality levels."""
    return Codec(name, tuple(leaf.levels if levels is None else levels), leaf.encode, leaf.decode)


def our_checkpoints(checkpoint: Path | None = None) -> dict[str, Path]:
    """Our codec's checkpoints in the study, by codec name: ``checkpoint`` (default the shipped MSE one) as
    "ours", and the perceptually tuned one (issue 11) as "ours_perceptual" when it is shipped."""
    found = {"ours": Path(checkpoint) if checkpoint else paths.SHIPPED_CHECKPOINT}
    if paths.PERCEPTUAL_CHECKPOINT.is_file():
        found["ours_perceptual"] = paths.PERCEPTUAL_CHECKPOINT
    return found


def learned_codecs(checkpoints: dict[str, Path], stride: int = 1) -> list[Codec]:
    """Our codec once per named checkpoint (``our_checkpoints``), each with every ``stride``-th level."""
    from helpers.codec.leaf_codec import LeafCodec

    out = []
    for name, path in checkpoints.items():
        leaf = LeafCodec(path)
        out.append(learned_codec(leaf, leaf.levels[::stride], name))
    return out


class Coded(NamedTuple):
    """One image coded by one codec at one setting: the whole file, its decoding, rate and times of the calls."""

    codec: str
    setting: object
    data: bytes
    decoded: np.ndarray
    bpp: float
    encode_ms: float
    decode_ms: float


def code(codec: Codec, img: np.ndarray, setting) -> Coded:
    """Encode ``img`` at ``setting`` and decode the bytes, each call timed; the decoding must match ``img``."""
    t0 = time.perf_counter()
    data = codec.encode(img, setting)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    if not isinstance(out, np.ndarray) or out.shape != img.shape or out.dtype != np.uint8:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise CodecError(f"{codec.name} at setting {setting} decoded to {got}, not uint8 {img.shape}")
    h, w = img.shape[:2]
    return Coded(codec.name, setting, data, out, bpp(len(data), h, w), 1000 * (t1 - t0), 1000 * (t2 - t1))


def _load(item, index: int, data_root) -> tuple[str, np.ndarray]:
    """An image given as a path (named relative to ``data_root``; read as the command line reads it), as a
    uint8 RGB array (named by position) or as a (name, array) pair."""
    if isinstance(item, tuple):
        return item
    if isinstance(item, np.ndarray):
        return f"image{index}", item
    from helpers.codec.imageio import read_image

    return relative_name(item, data_root), read_image(item)


def coded_images(codecs: Sequence[Codec], images, data_root=None, one_thread: bool = True,
                 progress: bool = True, desc: str = "evaluate") -> Iterator[tuple[str, np.ndarray, list[Coded]]]:  # fmt: skip
    """For each image (a path, an array or a (name, array) pair): ``(name, image, [Coded for every codec and
    setting, in order])``."""
    import contextlib

    from tqdm.auto import tqdm

    from helpers.codec.models import single_thread

    total = len(images) * sum(len(c.settings) for c in codecs)
    threads = single_thread() if one_thread else contextlib.nullcontext()
    with threads, tqdm(total=total, desc=desc, disable=not progress, mininterval=2) as bar:
        for i, item in enumerate(images):
            name, img = _load(item, i, data_root)
            coded = []
            for codec in codecs:
                for setting in codec.settings:
                    coded.append(code(codec, img, setting))
                    bar.update()
            yield name, img, coded


def measure(name: str, img: np.ndarray, c: Coded, lpips: bool = True, quality: bool = True,
            fidelity: bool = False) -> dict:  # fmt: skip
    """One row of ``CSV_COLUMNS``; without ``quality`` (speed runs) the quality columns are NaN. With
    ``fidelity``, ``metrics.FIDELITY_COLUMNS`` follow (edges and high-frequency band against the original)."""
    scores = (
        compare_images(img, c.decoded, lpips=lpips) if quality else dict.fromkeys(QUALITY_COLUMNS, np.nan)
    )
    h, w = img.shape[:2]
    row = {"image": name, "codec": c.codec, "setting": c.setting, "bytes": len(c.data), "bpp": c.bpp,
           **{k: scores[k] for k in QUALITY_COLUMNS}, "encode_ms": c.encode_ms, "decode_ms": c.decode_ms,
           "height": h, "width": w}  # fmt: skip
    return {**row, **fidelity_scores(img, c.decoded)} if fidelity else row


def evaluate(codecs: Sequence[Codec], images, out_csv: str | Path | None = None, *, lpips: bool = True,
             quality: bool = True, fidelity: bool = False, data_root=None, one_thread: bool = True,
             workers: int = 1, progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """Code every image with every codec at every setting: one row per (image, codec, setting), columns
    ``CSV_COLUMNS``, also written to ``out_csv``. Images are paths (named relative to ``data_root``) or
    arrays; ``lpips=False`` leaves LPIPS NaN, ``quality=False`` every quality column (timings only).
    ``fidelity`` adds ``metrics.FIDELITY_COLUMNS`` (edge and high-frequency fidelity).
    ``workers`` > 1 codes the images in that many forked processes (``forked_map``; rows in the same order)."""
    kwargs = {"lpips": lpips, "quality": quality, "fidelity": fidelity, "data_root": data_root,
              "one_thread": one_thread}  # fmt: skip
    if workers > 1 and len(images) > 1:
        named = [(f"image{i}", x) if isinstance(x, np.ndarray) else x for i, x in enumerate(images)]
        parts = forked_map(lambda chunk: evaluate(codecs, chunk, progress=False, **kwargs), named, workers,
                           progress=progress, desc="evaluate")  # fmt: skip
        df = pd.concat(parts, ignore_index=True)
    else:
        rows = [measure(name, img, c, lpips, quality, fidelity)
                for name, img, coded in coded_images(codecs, images, data_root, one_thread, progress)
                for c in coded]  # fmt: skip
        df = pd.DataFrame(rows, columns=list(CSV_COLUMNS) + (list(FIDELITY_COLUMNS) if fidelity else []))
    if out_csv is not None:
        write_csv(df, out_csv)
    return df


_FORKED = None  # (function, chunks) for forked_map's workers: forked, so closures and loaded models need no pickling


def _run_chunk(i: int):
    fn, chunks = _FORKED
    return fn(chunks[i])


def forked_map(fn, items: list, workers: int, progress: bool = True, desc: str = "") -> list:
    """``fn(chunk)`` for consecutive chunks of ``items`` in ``workers`` forked processes, results in order.

    Chunks are small (about eight per worker) so that a slow image does not leave a core idle. Each worker codes
    on one thread (see ``coded_images``), so two workers use the two cores of this machine; the calls' times are
    those of one core, as without workers."""
    import multiprocessing

    from tqdm.auto import tqdm

    global _FORKED
    size = max(1, -(-len(items) // (8 * workers)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    _FORKED = (fn, chunks)
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(chunks))) as pool:
            it = pool.imap(_run_chunk, range(len(chunks)))
            return list(
                tqdm(it, total=len(chunks), desc=f"{desc} ({workers} processes)", disable=not progress)
            )
    finally:
        _FORKED = None


# ----- R-D summaries and Bjontegaard tables ------------------------------------------------------------------
def mean_by_setting(per_image: pd.DataFrame, metrics, by=("codec", "setting"), std=None) -> pd.DataFrame:
    """Mean bpp and ``metrics`` per group, population std (``<m>_std``) of ``std`` (default: ``metrics``), and
    ``images`` (rows per group). Groups keep the order they first appear in."""
    std = list(metrics if std is None else std)
    g = per_image.groupby(list(by), sort=False)
    out = g[["bpp", *metrics]].mean()
    for m in std:
        out[f"{m}_std"] = g[m].std(ddof=0)
    out["images"] = g.size()
    return out.reset_index()


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """One R-D point per codec and setting: means of rate and quality, and their spread over the images."""
    out = mean_by_setting(per_image, QUALITY_COLUMNS, std=("bpp", "psnr", "ms_ssim_db", "lpips"))
    return out.sort_values(["codec", "bpp"]).reset_index(drop=True)


def bd_table(summary: pd.DataFrame, anchors=ANCHORS, tests=None, rate_window=RATE_WINDOW) -> pd.DataFrame:
    """BD-rate (%) of every codec (or ``tests``) against each anchor present, per quality metric, inside
    ``rate_window``. NaN where the curves do not overlap in the window (no Bjontegaard delta exists there)."""
    codecs = list(dict.fromkeys(summary["codec"]))
    rows = []
    for anchor in (a for a in anchors if a in codecs):
        a = summary[summary.codec == anchor]
        for test in (t for t in tests or codecs if t != anchor):
            t = summary[summary.codec == test]
            row = {"codec": test, "anchor": anchor}
            for metric, higher in QUALITY_METRICS.items():
                if metric not in summary:
                    continue
                try:
                    row[f"bd_rate_{metric}"] = bd_rate(a.bpp, a[metric], t.bpp, t[metric],
                                                       rate_range=rate_window, higher_is_better=higher)  # fmt: skip
                except ValueError:
                    row[f"bd_rate_{metric}"] = np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def delta_at_equal_rate(summary: pd.DataFrame, anchor: str, test: str, metric: str,
                        rate_window=RATE_WINDOW) -> float:  # fmt: skip
    """Mean of ``metric``(test) - ``metric``(anchor) at equal rate: both mean curves interpolated linearly in
    log-rate on a common grid over the rates both reach inside ``rate_window``. Unlike a Bjontegaard delta it
    needs no monotone curve, so it suits measures such as edge precision; NaN without an overlap."""
    grid = np.geomspace(*rate_window, 200)
    a, t = (summary[summary.codec == c].sort_values("bpp") for c in (anchor, test))
    g = grid[(grid >= max(a.bpp.min(), t.bpp.min())) & (grid <= min(a.bpp.max(), t.bpp.max()))]
    if len(g) < 2:
        return float("nan")
    at = [np.interp(np.log(g), np.log(d.bpp), d[metric]) for d in (t, a)]
    return float(np.mean(at[0] - at[1]))


def crossings(summary: pd.DataFrame, ours: str = "ours", metric: str = "psnr",
              rate_window=RATE_WINDOW) -> pd.DataFrame:  # fmt: skip
    """Where our mean curve crosses each other codec's inside the window (log-rate interpolation).

    ``ours_better_above`` says on which side of the crossing we lead; no row means no crossing there.
    """
    higher = QUALITY_METRICS.get(metric, True)
    grid = np.geomspace(*rate_window, 400)
    o = summary[summary.codec == ours].sort_values("bpp")
    rows = []
    for codec, d in summary[summary.codec != ours].groupby("codec", sort=False):
        d = d.sort_values("bpp")
        lo, hi = max(o.bpp.min(), d.bpp.min(), grid[0]), min(o.bpp.max(), d.bpp.max(), grid[-1])
        g = grid[(grid >= lo) & (grid <= hi)]
        if len(g) < 2:
            continue
        diff = np.interp(np.log(g), np.log(o.bpp), o[metric]) - np.interp(np.log(g), np.log(d.bpp), d[metric])
        diff = diff if higher else -diff
        if not np.isfinite(diff).all():
            continue  # a curve with missing values has no well-defined crossing
        for i in np.nonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0)[0]:
            rows.append({"codec": codec, "metric": metric, "bpp": float(g[i + 1]),
                         "ours_better_above": bool(diff[i + 1] > 0)})  # fmt: skip
    return pd.DataFrame(rows, columns=["codec", "metric", "bpp", "ours_better_above"])


def value_at_rate(summary: pd.DataFrame, metric: str, bpp_value: float) -> pd.Series:
    """Each codec's ``metric`` at ``bpp_value``, interpolated linearly in log-rate between its mean R-D points;
    NaN where its curve does not reach that rate."""
    out = {}
    for codec, d in summary.groupby("codec", sort=False):
        d = d.sort_values("bpp")
        inside = d.bpp.min() <= bpp_value <= d.bpp.max()
        out[codec] = float(np.interp(np.log(bpp_value), np.log(d.bpp), d[metric])) if inside else np.nan
    return pd.Series(out, name=metric)


# ----- Kodak: the second test set, and published results of learned codecs on it ---------------------------
PUBLISHED_KODAK = paths.DATA / "published" / "kodak_compressai.json"


def kodak_paths(limit: int | None = None, root: Path | None = None) -> list[Path]:
    """The Kodak test images (``kodim01.png`` ...), first ``limit`` of them, from ``root`` (default
    ``paths.photos_dir() / "kodak"``, i.e. ``$PHOTOS_DIR/kodak``). Test only: never used in training."""
    root = Path(root) if root is not None else paths.photos_dir() / "kodak"
    found = sorted(root.glob("kodim*.png")) if root.is_dir() else []
    if not found:
        raise DataError(
            f"no Kodak images (kodim*.png) in {root}: set PHOTOS_DIR to the folder holding kodak/"
        )
    return found[:limit]


def published_kodak(path: Path = PUBLISHED_KODAK) -> pd.DataFrame:
    """Published Kodak R-D points of learned codecs (one row per point: ``codec``, ``bpp``, ``psnr`` on RGB,
    ``ms_ssim`` and ``ms_ssim_db`` where published), copied with their source into ``path``."""
    import json

    from helpers.measures.metrics import ms_ssim_db

    rows = []
    for name, entry in json.loads(Path(path).read_text())["codecs"].items():
        ms = entry.get("ms_ssim", [np.nan] * len(entry["bpp"]))
        for b, p, m in zip(entry["bpp"], entry["psnr"], ms, strict=True):
            rows.append({"codec": name, "bpp": b, "psnr": p, "ms_ssim": m,
                         "ms_ssim_db": ms_ssim_db(m) if np.isfinite(m) else np.nan})  # fmt: skip
    return pd.DataFrame(rows)
