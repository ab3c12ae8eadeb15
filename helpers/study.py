"""The R-D study: our codec measured through its command line, summaries, and Bjontegaard tables.

Our codec is evaluated exactly as a user runs it: ``python -m helpers compress ... --out-dir`` writes real
``.leaf`` files, ``python -m helpers decompress ... --out-dir`` decodes them to PNG, and the metrics compare
those PNGs with the originals. bpp = 8 x file bytes / pixels of each file on disk.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
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


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean (and spread) per codec and setting: one R-D point each."""
    df = per_image.copy()
    if "ms_ssim_db" not in df:
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
    for _, r in df.iterrows():
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
