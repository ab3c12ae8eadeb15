"""Figures for the notebooks: plain functions that take data and return a matplotlib Figure, plus
``save_figure`` (the one place figures are written: PNG for viewing, PDF for the report)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import paths


def save_figure(fig, name: str, out_dir: Path | None = None, dpi: int = 150) -> list[Path]:
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


def _short(label: str) -> str:
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
        ax.set_title(_short(title), fontsize=7)
    fig.tight_layout()
    return fig


def class_counts_bar(counts, title: str = "Images per class"):
    """Horizontal stacked bars from a DataFrame (rows: classes, columns: splits) or a Series of counts."""
    import pandas as pd

    df = counts.to_frame("images") if isinstance(counts, pd.Series) else counts
    df = df.rename(index=_short)
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
