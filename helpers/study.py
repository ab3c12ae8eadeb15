"""The R-D study: our codec measured through its command line, summaries, and Bjontegaard tables.

Our codec is evaluated exactly as a user runs it: ``python -m helpers compress ... --out-dir`` writes real
``.leaf`` files, ``python -m helpers decompress ... --out-dir`` decodes them to PNG, and the metrics compare
those PNGs with the originals. bpp = 8 x file bytes / pixels of each file on disk.

The visual section (notebook 04) codes in-process instead (``learned_codec`` wraps ``LeafCodec``; the same
bytes as the command line writes) and compares codecs at *matched rates*: per image, each codec's setting
whose real file is nearest the target bpp on a log scale (``match_bitrate``, ``visual_sweep``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import paths
from .baselines import Codec
from .data import read_image
from .errors import LeafCodecError
from .metrics import bd_rate, bpp, compare_images, ms_ssim_db

RATE_WINDOW = (0.05, 1.0)  # conclusions are restricted to this range (bpp)
QUALITY_METRICS = {"psnr": True, "ms_ssim_db": True, "lpips": False}  # metric -> higher is better


def _run_cli(*args) -> None:
    proc = subprocess.run([sys.executable, "-m", "helpers", *map(str, args)], cwd=paths.ROOT,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise LeafCodecError(f"`python -m helpers {args[0]}` failed: {proc.stderr.strip()[-500:]}")


def _relative(p: Path, root: Path | None) -> str:
    try:
        return Path(p).resolve().relative_to(Path(root).resolve()).as_posix() if root else str(p)
    except ValueError:
        return str(p)


def evaluate_ours(image_paths, out_csv: Path | None = None, levels=None, checkpoint=None,
                  data_root: Path | None = None, lpips: bool = True, work_dir: Path | None = None,
                  progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """One row per (image, level) from real files written and read by the command line."""
    from tqdm.auto import tqdm

    from .codec import LeafCodec, output_image

    image_paths = [Path(p) for p in image_paths]
    if len({p.stem for p in image_paths}) != len(image_paths):
        raise LeafCodecError("image file names must have distinct stems (batch outputs are <stem>.leaf)")
    levels = list(levels) if levels is not None else LeafCodec(checkpoint).levels
    ckpt_args = ["--checkpoint", checkpoint] if checkpoint else []
    rows = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for level in tqdm(levels, desc="ours: levels", disable=not progress):
            coded, decoded = Path(tmp) / f"q{level}", Path(tmp) / f"q{level}_png"
            t0 = time.perf_counter()
            _run_cli("compress", *image_paths, "--out-dir", coded, "--quality", level, *ckpt_args)
            t1 = time.perf_counter()
            _run_cli("decompress", *sorted(coded.glob("*.leaf")), "--out-dir", decoded, *ckpt_args)
            t2 = time.perf_counter()
            # Per-image times include loading the model once per batch, spread over the batch.
            enc_ms, dec_ms = 1000 * (t1 - t0) / len(image_paths), 1000 * (t2 - t1) / len(image_paths)
            for p in image_paths:
                ref = read_image(p)
                test = np.asarray(output_image(read_image(decoded / f"{p.stem}.png"), 0))
                n = (coded / f"{p.stem}.leaf").stat().st_size
                h, w = ref.shape[:2]
                rows.append({
                    "image": _relative(p, data_root), "codec": "ours", "setting": level, "bytes": n,
                    "bpp": bpp(n, h, w), **compare_images(ref, test, lpips=lpips),
                    "encode_ms": enc_ms, "decode_ms": dec_ms, "height": h, "width": w,
                })  # fmt: skip
    df = pd.DataFrame(rows)
    if out_csv is not None:
        write_csv(df, out_csv)
    return df


def enlarged_copies(image_paths, scale: int, out_dir: Path) -> list[Path]:
    """PNG copies of ``image_paths`` enlarged ``scale`` times (Lanczos), written to ``out_dir``.

    PlantVillage has no phone-resolution photos; enlarging puts a leaf across ~1000 pixels as in a 12 MP photo
    of one leaf, so the codec meets the smoother per-pixel statistics of such photos (not their sensor noise).
    """
    from PIL import Image

    if scale < 1:
        raise LeafCodecError(f"scale must be a positive integer, not {scale}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for p in image_paths:
        img = Image.fromarray(read_image(p))
        target = out_dir / f"{Path(p).stem}.png"
        img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS).save(target)
        out.append(target)
    return out


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean (and spread) per codec and setting: one R-D point each."""
    df = per_image.copy()
    # Always derived from MS-SSIM: per-image tables from different evaluators need not carry it.
    df["ms_ssim_db"] = [ms_ssim_db(v) for v in df["ms_ssim"]]
    metrics = ["bpp", "psnr", "ms_ssim", "ms_ssim_db"] + (["lpips"] if "lpips" in df else [])
    g = df.groupby(["codec", "setting"], sort=False)
    out = g[metrics].mean()
    for m in ("bpp", "psnr", "ms_ssim_db") + (("lpips",) if "lpips" in df else ()):
        out[f"{m}_std"] = g[m].std(ddof=0)
    out["images"] = g.size()
    return out.reset_index().sort_values(["codec", "bpp"]).reset_index(drop=True)


def bd_table(summary: pd.DataFrame, anchors=("jpeg", "jpeg2000", "webp", "avif"), tests=None,
             rate_window=RATE_WINDOW) -> pd.DataFrame:  # fmt: skip
    """BD-rate (%) of every codec against each anchor, per quality metric, inside ``rate_window``.

    Empty where the curves do not overlap in the window (no Bjontegaard delta exists there).
    """
    codecs = list(dict.fromkeys(summary["codec"]))
    tests = tests or codecs
    rows = []
    for anchor in anchors:
        if anchor not in codecs:
            continue
        a = summary[summary.codec == anchor]
        for test in tests:
            if test == anchor:
                continue
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


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in df.itertuples(index=False):  # keeps each column's type (iterrows would turn ints into floats)
        cells = [format(v, floatfmt) if isinstance(v, float) and np.isfinite(v) else
                 ("–" if isinstance(v, float) else str(v)) for v in r]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, out_dir: Path | None = None, floatfmt: str = ".2f") -> list[Path]:
    out_dir = Path(out_dir or paths.TABLES)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    write_csv(df, csv_path)
    md_path.write_text(markdown_table(df, floatfmt))
    return [csv_path, md_path]


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


# ----- visual comparisons at matched rates, edge fidelity, bit allocation (notebook 04) -------------------------
class Coded(NamedTuple):
    """One image coded by one codec at one setting: the whole file, its decoding (``None`` until decoded)."""

    setting: object
    data: bytes
    decoded: np.ndarray | None
    bpp: float


def learned_codec(leaf) -> Codec:
    """Our codec (a ``helpers.codec.LeafCodec``) behind the classical codecs' interface: settings = levels."""
    return Codec("ours", tuple(leaf.levels), "quality level", leaf.encode, leaf.decode)


def nearest_rate(bpps, target_bpp: float) -> int:
    """Index of the rate nearest ``target_bpp`` on a log scale (0.5x and 2x are equally far); ties: lower rate."""
    return int(np.argmin(np.abs(np.log(np.asarray(bpps, dtype=float) / target_bpp))))


def _within(bpp_value: float, target_bpp: float, tolerance: float | None) -> bool:
    return tolerance is None or abs(np.log(bpp_value / target_bpp)) <= np.log1p(tolerance)


def _decoded(codec: Codec, img: np.ndarray, data: bytes) -> np.ndarray:
    out = codec.decode(data)
    if out.shape != img.shape or out.dtype != np.uint8:
        raise LeafCodecError(f"{codec.name} decoded to {out.dtype} {out.shape}, not uint8 {img.shape}")
    return out


def match_bitrate(img: np.ndarray, codecs, target_bpp: float, tolerance: float | None = None) -> dict:
    """Each codec's setting whose real file is nearest ``target_bpp`` (``nearest_rate``) for this image:
    ``{codec name: Coded}``, decoded from those bytes. Every setting is encoded; only the chosen one is decoded.
    With ``tolerance`` (e.g. 0.3: within target/1.3 .. target*1.3) a codec that cannot get that close (JPEG
    below ~0.3 bpp) is left out."""
    from .model import single_thread

    h, w = img.shape[:2]
    out = {}
    with single_thread():  # see visual_sweep
        for codec in codecs:
            files = [codec.encode(img, s) for s in codec.settings]
            rates = [bpp(len(d), h, w) for d in files]
            i = nearest_rate(rates, target_bpp)
            if _within(rates[i], target_bpp, tolerance):
                out[codec.name] = Coded(codec.settings[i], files[i], _decoded(codec, img, files[i]), rates[i])
    return out


def visual_sweep(image_paths, codecs, targets=(0.5,), tolerance: float | None = 0.3, data_root=None,
                 lpips: bool = True, progress: bool = True) -> dict:  # fmt: skip
    """Code every image with every codec at every setting, once, and measure what the visual section needs.

    Returns ``per_setting`` (one row per image, codec, setting: bytes, bpp, ``mae`` and the four
    ``metrics.edge_fidelity`` values), ``matched`` (one row per target, image and codec at the setting
    ``match_bitrate`` picks, with LPIPS) and ``error_hist`` (``{(target, codec): counts}``, the absolute
    errors of all RGB samples at the matched setting, bins 0..255, summed over the images).
    """
    from tqdm.auto import tqdm

    from .metrics import edge_fidelity, lpips_distance
    from .model import single_thread

    rows, matched, hist = [], [], {}
    total = len(image_paths) * len(codecs)
    # One torch thread throughout: our codec's transforms run on one anyway (bit-exact files), and switching the
    # pool between them and LPIPS, on 256x256 images, took 2.7x as long on a busy two-core machine.
    with single_thread(), tqdm(total=total, desc="visual sweep", disable=not progress, mininterval=2) as bar:
        for path in image_paths:
            img = read_image(path)
            h, w = img.shape[:2]
            name = _relative(Path(path), data_root)
            for codec in codecs:
                coded, measured = [], []
                for setting in codec.settings:
                    data = codec.encode(img, setting)
                    c = Coded(setting, data, _decoded(codec, img, data), bpp(len(data), h, w))
                    coded.append(c)
                    measured.append({"image": name, "codec": codec.name, "setting": setting, "bytes": len(data),
                                     "bpp": c.bpp, "mae": float(np.abs(img - c.decoded.astype(float)).mean()),
                                     **edge_fidelity(img, c.decoded)})  # fmt: skip
                rows += measured
                for target in targets:
                    i = nearest_rate([c.bpp for c in coded], target)
                    if not _within(coded[i].bpp, target, tolerance):
                        continue
                    err = np.abs(img.astype(np.int16) - coded[i].decoded).ravel()
                    key = (target, codec.name)
                    hist[key] = hist.get(key, 0) + np.bincount(err, minlength=256)
                    lp = lpips_distance(img, coded[i].decoded) if lpips else float("nan")
                    matched.append({"target_bpp": target, **measured[i], "lpips": lp})
                bar.update()
    return {"per_setting": pd.DataFrame(rows), "matched": pd.DataFrame(matched), "error_hist": hist}


def mean_by_setting(per_setting: pd.DataFrame, metrics, by=("codec", "setting")) -> pd.DataFrame:
    """Mean (``<metric>_std``: population std) of ``metrics`` and mean bpp per group; ``images`` counts rows.
    Groups keep the order they first appear in (codecs as listed, settings lowest rate first)."""
    g = per_setting.groupby(list(by), sort=False)
    out = g[["bpp", *metrics]].mean()
    for m in metrics:
        out[f"{m}_std"] = g[m].std(ddof=0)
    out["images"] = g.size()
    return out.reset_index()


def value_at_rate(summary: pd.DataFrame, metric: str, bpp_value: float) -> pd.Series:
    """Each codec's ``metric`` at ``bpp_value``, interpolated linearly in log-rate between its mean R-D points;
    NaN where its curve does not reach that rate."""
    out = {}
    for codec, d in summary.groupby("codec", sort=False):
        d = d.sort_values("bpp")
        inside = d.bpp.min() <= bpp_value <= d.bpp.max()
        out[codec] = float(np.interp(np.log(bpp_value), np.log(d.bpp), d[metric])) if inside else np.nan
    return pd.Series(out, name=metric)


def paired_wins(matched: pd.DataFrame, metric: str = "lpips", ours: str = "ours", lower_is_better=True):
    """Per target and codec: images where both were matched, and in how many ours has the better ``metric``."""
    rows = []
    for target, t in matched.groupby("target_bpp", sort=False):
        mine = t[t.codec == ours].set_index("image")[metric]
        for codec, d in t[t.codec != ours].groupby("codec", sort=False):
            theirs = d.set_index("image")[metric]
            common = mine.index.intersection(theirs.index)
            better = mine[common] < theirs[common] if lower_is_better else mine[common] > theirs[common]
            rows.append({"target_bpp": target, "codec": codec, "images": len(common),
                         "ours_better": int(better.sum()), f"{metric}_ours": float(mine[common].mean()),
                         f"{metric}_codec": float(theirs[common].mean())})  # fmt: skip
    return pd.DataFrame(rows)


def showcase_paths(records, root: Path, classes, split: str = "test") -> list[Path]:
    """The first image (manifest order) of each of ``classes`` in ``split``: a fixed, unpicked choice."""
    out = []
    for cls in classes:
        found = [r for r in records if r.split == split and r.cls == cls]
        if not found:
            raise LeafCodecError(f"no {split}-split image of class {cls!r} in the manifest")
        out.append(Path(root) / found[0].path)
    return out


def leaf_mask(img: np.ndarray) -> np.ndarray:
    """Leaf pixels (bool H x W) of a PlantVillage photo, by colour saturation: the backgrounds are grey or bluish
    grey, the leaves green to brown. Saturation (HSV, 0-255) above the border's median + 25 (at least 45),
    opened (3x3), the largest connected region kept, closed (5x5) and its holes (dark lesions) filled."""
    from PIL import Image
    from scipy import ndimage

    s = np.asarray(Image.fromarray(img).convert("HSV"))[..., 1].astype(int)
    border = np.concatenate([s[0], s[-1], s[:, 0], s[:, -1]])
    mask = ndimage.binary_opening(s > max(45, np.median(border) + 25), np.ones((3, 3)))
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    mask = labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    return ndimage.binary_fill_holes(ndimage.binary_closing(mask, np.ones((5, 5)), iterations=2))


def pick_crop(img: np.ndarray, size: int = 64, mask: np.ndarray | None = None) -> tuple[int, int]:
    """Top-left (row, col) of the ``size`` x ``size`` window with the highest mean Sobel magnitude *inside* the
    leaf (mask eroded by 4 px, so the leaf's outline against the background does not win): veins and lesion
    borders. Chosen on the original, the same window for every codec."""
    from scipy import ndimage

    from .metrics import sobel_magnitude

    energy = sobel_magnitude(img)
    if mask is not None and mask.sum() > size * size:
        energy = energy * ndimage.binary_erosion(mask, iterations=4)
    c = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image: window sums in O(1)
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    r, k = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(r), int(k)


def bit_allocation(leaf, img: np.ndarray, level: int) -> np.ndarray:
    """Bits per pixel (H x W, float) where our codec spends them for ``img`` at ``level`` (1-based): the model's
    ``bits_map`` (y and z, -log2 p under the coder's entropy model), each latent position's bits spread over
    the 16x16 pixels it covers. Padded like ``LeafCodec.encode``; the padding's share is cropped away."""
    import torch
    import torch.nn.functional as F

    from .model import STRIDE

    h, w = img.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255)
    x = F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")
    bits = leaf.model.bits_map(x, level - 1).numpy()
    return np.kron(bits, np.ones((16, 16)))[:h, :w] / 256


def bit_share(bits_px: np.ndarray, mask: np.ndarray) -> dict:
    """How bits split between leaf (``mask``) and background: area share, bit share, bpp of each part."""
    total = bits_px.sum()
    return {"leaf_area": float(mask.mean()), "leaf_bits": float(bits_px[mask].sum() / total),
            "bpp_leaf": float(bits_px[mask].mean()) if mask.any() else float("nan"),
            "bpp_background": float(bits_px[~mask].mean()) if (~mask).any() else float("nan")}  # fmt: skip
