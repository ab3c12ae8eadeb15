"""Figures for the notebooks: plain functions that take data and return a matplotlib Figure, plus
``save_figure`` (the one place figures are written: PNG for viewing, PDF for the report)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from helpers import paths
from helpers.measures.metrics import RATE_WINDOW


def save_figure(fig, name: str, out_dir: Path | None = None, dpi: int = 110) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf`` (default ``outputs/figures``); returns both paths.
    Creation dates and software stamps are left out so re-running a notebook does not change the files'
    bytes when the picture is the same."""
    out_dir = Path(out_dir) if out_dir is not None else paths.FIGURES
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = out_dir / f"{name}.{ext}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=meta)
        written.append(path)
    return written


def short_label(label: str) -> str:
    """PlantVillage folder name -> readable title: "Tomato__Tomato_mosaic_virus" -> "Tomato: mosaic virus"."""
    crop, sep, rest = label.partition("___") if "___" in label else label.partition("_")
    if not sep:
        return label
    crop, rest = " ".join(w for w in crop.replace(",", "").split("_") if w), [w for w in rest.split("_") if w]
    if len(rest) > 1 and rest[0] == crop.split()[0]:
        rest = rest[1:]  # "Tomato: Tomato mosaic virus" -> "Tomato: mosaic virus"
    return f"{crop}: {' '.join(rest)}" if rest else crop


def _image(ax, img) -> None:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)  # CHW tensor -> HWC
    ax.imshow(img.clip(0, 1) if img.dtype.kind == "f" else img)
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(images, titles, ncols: int = 5, size: float = 2.2):
    """One panel per image (uint8 HWC or float CHW in [0, 1]) with its title (class names shortened)."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.35)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.axis("on")
        _image(ax, img)
        ax.set_title(short_label(title), fontsize=7)
    fig.tight_layout()
    return fig


def class_counts_bar(counts, title: str = "Images per class"):
    """Horizontal stacked bars from a DataFrame (rows: classes, columns: splits) or a Series of counts."""
    import pandas as pd

    df = counts.to_frame("images") if isinstance(counts, pd.Series) else counts
    df = df.rename(index=short_label)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(df) + 1.2))
    df.plot.barh(stacked=True, ax=ax, width=0.8)
    ax.invert_yaxis()  # first class at the top, as in the table
    ax.set_xlim(0, df.sum(axis=1).max() * 1.04)
    ax.set_xlabel("images")
    ax.set_ylabel("")
    ax.set_title(title)
    if df.shape[1] == 1:
        ax.get_legend().remove()
    fig.tight_layout()
    return fig


def augmentation_grid(original, augmented, ncols: int = 3, size: float = 2.2):
    """The original image followed by augmented versions of it."""
    images = [original, *augmented]
    titles = ["original", *(f"augmentation {i + 1}" for i in range(len(augmented)))]
    fig = sample_grid(images, ["x"] * len(images), ncols=ncols, size=size)
    for ax, title in zip(fig.axes, titles):
        ax.set_title(title, fontsize=8)
    return fig


# ----- training and rate-distortion -----------------------------------------------------------------------
CODEC_STYLE = {  # one colour and marker per codec, the same in every figure
    "ours": ("tab:green", "o", "ours (learned)"),
    "ours_perceptual": ("tab:olive", "*", "ours, perceptual (LPIPS-tuned)"),
    "ours_v3": ("tab:red", "P", "ours v3 (--tune high)"),
    "jpeg": ("tab:gray", "s", "JPEG"),
    "jpeg2000": ("tab:brown", "D", "JPEG 2000"),
    "webp": ("tab:blue", "^", "WebP"),
    "avif": ("tab:purple", "v", "AVIF (4:4:4, speed 4)"),
    "avif_fast": ("plum", "<", "AVIF fast (4:2:0, speed 6)"),
    "ours_roi_leaf": ("darkgreen", "h", "ours, ROI: leaf"),
    "ours_roi_lesion": ("lime", "p", "ours, ROI: leaf + lesions"),
    "avif_roi_leaf": ("indigo", "d", "AVIF, rate-guide map: leaf"),
    "avif_roi_lesion": ("violet", "8", "AVIF, rate-guide map: leaf + lesions"),
}
PUBLISHED_STYLE = ("0.35", ("P", "X", "*", "h"))  # published curves: one grey, dashed, a marker each
METRIC_LABEL = {"psnr": "PSNR (dB)", "ms_ssim_db": "MS-SSIM (dB)", "lpips": "LPIPS (lower is better)",
                "edge_f1": "edge F1 (Sobel, 1 px tolerance)", "edge_corr": "Sobel magnitude correlation",
                "edge_precision": "edge precision (Sobel, 1 px tolerance)",
                "hf_error": "high-frequency error (relative; 1 = band lost)",
                "hf_recovered": "high-frequency detail recovered (1 = all)",
                "leaf_psnr": "leaf PSNR (dB)", "leaf_ms_ssim_db": "leaf MS-SSIM (dB)",
                "background_psnr": "background PSNR (dB)"}  # fmt: skip


def codec_label(name: str) -> str:
    return CODEC_STYLE.get(name, (None, None, name))[2]


def training_curves(train_log, val_log):
    """Loss, rate and PSNR during training (all levels mixed), and validation R-D per level over steps.
    With a ``stage`` column (``train.stage_logs``), a dashed line marks where each fine-tuning stage starts."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    t = train_log
    axes[0].plot(t.step, t.loss, lw=0.8)
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot(t.step, t.bpp, lw=0.8)
    axes[1].set(title="training rate (bpp, estimated)", xlabel="step")
    axes[2].plot(t.step, t.psnr, lw=0.8)
    axes[2].set(title="training PSNR (dB)", xlabel="step")
    if "stage" in t:
        starts = t.groupby("stage", sort=False).step.min().iloc[1:]
        for ax in axes[:3]:
            for name, step in starts.items():
                ax.axvline(step, color="k", ls="--", lw=0.7, alpha=0.6)
                ax.annotate(f" {name}", (step, 1), xycoords=("data", "axes fraction"), va="top", fontsize=7)
    cmap = plt.get_cmap("viridis")
    levels = sorted(val_log.level.unique())
    for i, level in enumerate(levels):
        v = val_log[val_log.level == level]
        colour = cmap(i / max(1, len(levels) - 1))
        axes[3].plot(v.bpp, v.psnr, "-", color=colour, lw=0.8, alpha=0.6)
        axes[3].plot(v.bpp.iloc[-1:], v.psnr.iloc[-1:], "o", color=colour, label=f"level {level}")
    axes[3].set(title="validation R-D per level over training", xlabel="bpp (estimated)", ylabel="PSNR (dB)")
    axes[3].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _published(ax, published, metric: str) -> None:
    """Published R-D points (``evaluate.published_kodak``): dashed grey lines, labelled as published."""
    colour, markers = PUBLISHED_STYLE
    for (codec, d), marker in zip(published.groupby("codec", sort=False), markers * 4):
        d = d[np.isfinite(d[metric])].sort_values("bpp")
        if len(d):
            ax.plot(d.bpp, d[metric], ls="--", marker=marker, color=colour, mfc="none", ms=5, lw=1,
                    label=f"{codec} (published)")  # fmt: skip


def rd_curves(summary, metrics=("psnr", "ms_ssim_db", "lpips"), rate_window=RATE_WINDOW, title="",
              published=None):  # fmt: skip
    """Mean R-D curve per codec (one point per setting) with +-1 std of the per-image quality as a band;
    ``published`` R-D points of other codecs (a DataFrame: codec, bpp, metrics) drawn dashed beside them."""
    metrics = [m for m in metrics if m in summary]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for codec, d in summary.groupby("codec", sort=False):
            colour, marker, label = CODEC_STYLE.get(codec, (None, "x", codec))
            d = d.sort_values("bpp")
            ax.plot(d.bpp, d[metric], marker=marker, color=colour, label=label, ms=4, lw=1.4)
            if f"{metric}_std" in d:
                ax.fill_between(d.bpp, d[metric] - d[f"{metric}_std"], d[metric] + d[f"{metric}_std"],
                                color=colour, alpha=0.12, lw=0)  # fmt: skip
        if published is not None and metric in published:
            _published(ax, published, metric)
        ax.axvspan(*rate_window, color="k", alpha=0.04, lw=0)
        ax.set(xscale="log", xlabel="bits per pixel (real file size)", ylabel=METRIC_LABEL.get(metric, metric),
               xlim=(rate_window[0] * 0.6, rate_window[1] * 2.5))  # fmt: skip
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----- visual comparisons at matched rates (notebook 04) ---------------------------------------------------
def _codec_columns(examples) -> list[str]:
    names = list(dict.fromkeys(n for ex in examples for n in ex["coded"]))
    return sorted(names, key=lambda n: n.startswith("ours"))  # ours last (stable: MSE, then perceptual)


def matched_panels(examples, view: str = "image", crop: int = 64, title: str = ""):
    """Original and every codec at a matched rate, whole image above and a zoomed ``crop`` x ``crop`` window
    below (its place marked by a box), bpp of the real file on each panel. ``examples``: dicts with
    ``original`` (uint8 RGB), ``coded`` ({codec: evaluate.Coded}), ``crop`` (top-left row, col) and ``title``.
    ``view="edges"`` shows Sobel gradient magnitudes instead (dark = strong edge, one scale per example: the
    original's 99th percentile), with the edge F1 against the original on each panel."""
    from matplotlib.patches import Rectangle

    from helpers.measures.metrics import edge_fidelity, sobel_magnitude

    names = _codec_columns(examples)
    ncols = 1 + len(names)
    nrows = 2 * len(examples)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.05 * nrows), squeeze=False)
    for e, ex in enumerate(examples):
        ref, (r, c) = ex["original"], ex["crop"]
        vmax = np.percentile(sobel_magnitude(ref), 99) if view == "edges" else None
        panels = [("original", ref, "")]
        for n in names:
            coded = ex["coded"].get(n)
            panels.append((n, None, "") if coded is None else (n, coded.decoded, f"{coded.bpp:.3f} bpp"))
        for j, (name, img, rate) in enumerate(panels):
            top, bottom = axes[2 * e, j], axes[2 * e + 1, j]
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
            if img is None:
                top.set_title(f"{codec_label(name)}\n(no setting near this rate)", fontsize=7)
                top.axis("off")
                bottom.axis("off")
                continue
            label = "original" if name == "original" else codec_label(name)
            if view == "edges":
                shown = sobel_magnitude(img)
                if name != "original":
                    rate += f", F1 {edge_fidelity(ref, img)['edge_f1']:.2f}"
                kw = {"cmap": "gray_r", "vmin": 0, "vmax": vmax}
            else:
                shown, kw = img, {}
            top.imshow(shown, **kw)
            bottom.imshow(shown[r : r + crop, c : c + crop], interpolation="nearest", **kw)
            top.add_patch(Rectangle((c - 0.5, r - 0.5), crop, crop, fill=False, ec="red", lw=0.8))
            top.set_title(f"{label}\n{rate}" if rate else label, fontsize=7)
        axes[2 * e, 0].set_ylabel(short_label(ex.get("title", "")), fontsize=7)
        axes[2 * e + 1, 0].set_ylabel(f"{crop}x{crop} crop", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def error_distributions(error_hist: dict, matched, target: float):
    """At one matched rate: the distribution of absolute errors over all RGB samples of all images (left; bins
    of one grey level, log scale) and the cumulative distribution of the per-image mean absolute error
    (right), one line per codec, its mean bpp in the legend."""
    m = matched[matched.target_bpp == target]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for name in _codec_columns([{"coded": dict.fromkeys(m.codec)}]):
        colour, _, label = CODEC_STYLE.get(name, (None, None, name))
        d = m[m.codec == name]
        label = f"{label} ({d.bpp.mean():.3f} bpp)"
        counts = np.asarray(error_hist[target, name], dtype=float)
        left.step(np.arange(counts.size), counts / counts.sum(), where="mid", color=colour, lw=1.2)
        mae = np.sort(d.mae.to_numpy())
        right.step(mae, np.arange(1, mae.size + 1) / mae.size, where="post", color=colour, label=label)
    left.set(yscale="log", xlim=(0, 80), xlabel="absolute error (grey levels, RGB samples)",
             ylabel="fraction of samples", title="per-sample absolute error")  # fmt: skip
    right.set(xlabel="mean absolute error of an image (grey levels)", ylabel="fraction of images",
              ylim=(0, 1.02), title=f"per-image MAE, {m.image.nunique()} images")  # fmt: skip
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"errors at a matched rate (target {target:g} bpp, each codec's nearest setting per image)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def lpips_pairs(matched, target: float, ours: str = "ours"):
    """Per image at a matched rate: another codec's LPIPS (x) against ours (y); below the diagonal ours is
    better. The legend counts the images where ours is better."""
    m = matched[matched.target_bpp == target]
    mine = m[m.codec == ours].set_index("image")
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    hi = 0.0
    for name in _codec_columns([{"coded": dict.fromkeys(m.codec)}]):
        if name == ours:
            continue
        colour, marker, label = CODEC_STYLE.get(name, (None, "x", name))
        theirs = m[m.codec == name].set_index("image")
        common = mine.index.intersection(theirs.index)
        x, y = theirs.loc[common, "lpips"], mine.loc[common, "lpips"]
        wins = int((y < x).sum())
        ax.scatter(x, y, s=14, color=colour, marker=marker, alpha=0.8,
                   label=f"vs {label}: better in {wins}/{len(common)}")  # fmt: skip
        hi = max(hi, float(np.nanmax([x.max(), y.max()])) if len(common) else 0.0)
    hi = 1.05 * hi or 1.0
    ax.plot([0, hi], [0, hi], "k--", lw=0.8)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="LPIPS of the other codec", ylabel=f"LPIPS of {codec_label(ours)}",
           title=f"per-image LPIPS at ~{target:g} bpp (lower is better)")  # fmt: skip
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def bit_allocation_maps(images, bits, masks, labels, shares):
    """For each leaf: the photo (top) and where our codec spends its bits (bottom: bits per pixel over a grey
    copy of the photo, the leaf mask's outline in cyan). ``shares``: ``visual_measures.bit_share`` of each leaf."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n, 6.6), squeeze=False)
    for j, (img, b, mask, label, share) in enumerate(zip(images, bits, masks, labels, shares)):
        top, bottom = axes[0, j], axes[1, j]
        _image(top, img)
        top.set_title(f"{short_label(label)}\n{share['leaf_bits']:.0%} of the bits on {share['leaf_area']:.0%} "
                      "of the pixels", fontsize=7)  # fmt: skip
        bottom.imshow(np.asarray(img).mean(-1), cmap="gray", vmin=0, vmax=255)
        im = bottom.imshow(b, cmap="inferno", alpha=0.7, vmin=0)
        bottom.contour(mask, levels=[0.5], colors="cyan", linewidths=0.7)
        bottom.set_xticks([])
        bottom.set_yticks([])
        fig.colorbar(im, ax=bottom, fraction=0.046, pad=0.03).set_label("bits per pixel", fontsize=7)
    fig.tight_layout()
    return fig
