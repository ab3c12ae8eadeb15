"""Which shipped model where (issue 35): codec v3 (``--tune high``) beside today's MSE model (``--tune mse``) and the
study's headline anchor, AVIF 4:4:4 speed 4, on real files through the study's evaluation loop.

Notebook 03 (section 3.10) codes v3 on the very images the rest of the notebook measured, and joins its rows to the
AVIF and today's-model rows already there, so on each set every codec saw the same images. ``which_model_table`` is
the README's "Which model" table: BD-rates inside the study's window (``RATE_WINDOW``, 0.05-1 bpp) and each model's
top measured level. (The README's first numbers came from ``outputs/runs/which_model/measure.py``, a script of the
same loop and the same BD-rate code, at commit 4726409.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers import paths
from helpers.study import evaluate, plots
from helpers.study.baselines import Codec

V3, TODAY, ANCHOR = "ours_v3", "ours", "avif"  # codec names in the study's tables
CURVES = (ANCHOR, TODAY, V3)
SET_LABELS = {"test": "PlantVillage test split", "unseen_crop": "held-out crop (Potato)", "kodak": "Kodak"}


def v3_codec(stride: int = 1) -> Codec:
    """Codec v3, the shipped ``--tune high`` checkpoint, with every ``stride``-th of its ten levels."""
    return evaluate.learned_codecs({V3: paths.V3_CHECKPOINT}, stride)[0]


def with_v3(sets: dict, results_dir, stride: int = 1, workers: int = 1) -> dict[str, pd.DataFrame]:
    """``sets``: {set name: (images, data root, per-image rows already measured on those images)}. Codes each set's
    images with v3 (LPIPS left out: the comparison is in PSNR and MS-SSIM), writes its rows to
    ``<results_dir>/rd_<set>_v3.csv`` and returns, by set, the R-D summary (``evaluate.summarise``) of AVIF,
    today's model and v3 on those images."""
    v3 = v3_codec(stride)
    out = {}
    for name, (images, root, measured) in sets.items():
        rows = evaluate.evaluate([v3], images, Path(results_dir) / f"rd_{name}_v3.csv", lpips=False,
                                 data_root=root, workers=workers)  # fmt: skip
        out[name] = evaluate.summarise(
            pd.concat([measured[measured.codec.isin(CURVES)], rows], ignore_index=True)
        )
    return out


def _top(summary: pd.DataFrame, codec: str) -> str:
    row = summary[summary.codec == codec].sort_values("setting").iloc[-1]
    return f"{row.psnr:.2f} dB at {row.bpp:.2f} bpp (level {row.setting})"


def which_model_table(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per set: BD-rate (%) of v3 and of today's model vs AVIF and of v3 vs today's model, in PSNR and
    MS-SSIM (dB), inside the study's window (negative: fewer bits); each model's top measured level."""
    rows = []
    for name, s in summaries.items():
        vs_avif = evaluate.bd_table(s, anchors=(ANCHOR,), tests=[V3, TODAY]).set_index("codec")
        v3_vs_today = evaluate.bd_table(s, anchors=(TODAY,), tests=[V3]).iloc[0]
        row = {"set": SET_LABELS.get(name, name), "images": int(s.images.max())}
        for metric, label in (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM")):
            col = f"bd_rate_{metric}"
            row[f"v3 vs AVIF, {label} (%)"] = vs_avif.at[V3, col]
            row[f"today's vs AVIF, {label} (%)"] = vs_avif.at[TODAY, col]
            row[f"v3 vs today's, {label} (%)"] = v3_vs_today[col]
        rows.append({**row, "v3 top level": _top(s, V3), "today's top level": _top(s, TODAY)})
    return pd.DataFrame(rows)


def which_model_points(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every measured level of both models (mean bpp, PSNR, MS-SSIM dB) on each set."""
    cols = ["codec", "setting", "bpp", "psnr", "ms_ssim_db", "images"]
    return pd.concat(
        [
            s.loc[s.codec.isin([TODAY, V3]), cols].assign(set=SET_LABELS.get(n, n))
            for n, s in summaries.items()
        ],
        ignore_index=True,
    )[["set", *cols]]


def save_figures(summaries: dict[str, pd.DataFrame], out_dir=None) -> list[Path]:
    """``rd_curves_which_model_<set>``: PSNR and MS-SSIM curves of the three codecs on each set, drawn out to v3's
    top level (beyond the shaded window the BD-rates use)."""
    written = []
    for name, s in summaries.items():
        title = f"{SET_LABELS.get(name, name)}, {int(s.images.max())} images: v3 (--tune high) beside today's model"
        fig = plots.rd_curves(s, metrics=("psnr", "ms_ssim_db"), title=title)
        for ax in fig.axes:
            ax.set_xlim(right=1.3 * s.bpp.max())
        written += plots.save_figure(fig, f"rd_curves_which_model_{name}", out_dir)
    return written
