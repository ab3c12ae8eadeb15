"""What the ROI coder's importance maps see (``helpers.codec.importance``): a figure of leaf and lesion masks with
their block maps on several image sets, and the sets' coverage (how much of each image the maps protect)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.codec import importance
from helpers.codec.imageio import read_image

LESION_TINT = np.array([255, 0, 255], np.float32)  # magenta: no leaf or soil is that colour
BACKGROUND_DIM = 0.35  # what is not leaf is shown this bright


def _analysed(path: Path) -> dict:
    """One image's masks, "auto" choice and block maps (leaf blocks: any leaf pixel)."""
    img = read_image(path)
    start = time.perf_counter()
    leaf, lesion = importance.masks(img)
    seconds = time.perf_counter() - start
    rows, cols = importance.map_shape(*leaf.shape)
    inside = (-(-leaf.shape[0] // importance.BLOCK), -(-leaf.shape[1] // importance.BLOCK))
    leaf_blocks = importance.block_map(leaf, rows, cols)[: inside[0], : inside[1]]
    return {"image": img, "leaf": leaf, "lesion": lesion, "auto": importance.auto_kind(leaf, lesion),
            "leaf_pixels": float(leaf.mean()), "leaf_blocks": float(leaf_blocks.mean()),
            "lesion_of_leaf": float(lesion.sum() / leaf.sum()) if leaf.any() else float("nan"),
            "seconds": seconds}  # fmt: skip


def _overlay(img: np.ndarray, leaf: np.ndarray, lesion: np.ndarray, side: int) -> np.ndarray:
    """The image (long side at most ``side`` pixels) with the background dimmed and the lesions tinted."""
    shown = img.astype(np.float32)
    shown[~leaf] *= BACKGROUND_DIM
    shown[lesion] = 0.45 * shown[lesion] + 0.55 * LESION_TINT
    im = Image.fromarray(shown.round().astype(np.uint8))
    im.thumbnail((side, side), Image.BOX)
    return np.asarray(im)


def mask_figure(paths_by_set: dict[str, list[Path]], out_png: Path | str | None = None, side: int = 384):
    """One row per set (``{set name: image paths}``: e.g. test leaves, Potato, Wikimedia, Kodak), two panels per
    image: the image with what is not leaf dimmed and the lesions in magenta, and the map "auto" gives it (white
    1, grey ``LEAF_WEIGHT``, black 0; all white: uniform coding), titled with its choice, the leaf's share of the
    pixels and the lesions' share of the leaf. Written to ``out_png`` when given (no date or software stamp);
    returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    ncols = 2 * max(len(p) for p in paths_by_set.values())
    nrows = len(paths_by_set)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (name, set_paths) in zip(axes, paths_by_set.items()):
        for i, path in enumerate(set_paths):
            a = _analysed(Path(path))
            ax_img, ax_map = row[2 * i], row[2 * i + 1]
            ax_img.imshow(_overlay(a["image"], a["leaf"], a["lesion"], side))
            ax_img.set_title(Path(path).name[:18], fontsize=6)
            weights = importance.importance_map(a["image"], "auto")
            ax_map.imshow(weights, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax_map.axis("on")  # a frame: an all-white (uniform) map is not the page
            ax_map.set_xticks([])
            ax_map.set_yticks([])
            lesions = "" if np.isnan(a["lesion_of_leaf"]) else f", lesions {a['lesion_of_leaf']:.0%}"
            ax_map.set_title(f"{a['auto']}: leaf {a['leaf_pixels']:.0%}{lesions}", fontsize=6)
        row[0].axis("on")
        row[0].set_xticks([])
        row[0].set_yticks([])
        row[0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    if out_png is not None:
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=130, bbox_inches="tight", metadata={"Software": None})
    return fig


def mask_coverage(paths) -> dict:
    """Over the images at ``paths``: the mean share of the pixels that are leaf (``leaf_pixels``) and of the
    16 x 16 blocks holding any leaf pixel (``leaf_blocks``, blocks of the image only, not of the padding: what
    the "leaf" map codes at the file's level), the mean share of the leaf that is lesion (``lesion_of_leaf``,
    over the images with a leaf), the share of images "auto" codes uniformly / as "leaf" / as "lesion"
    (``auto_uniform``, ``auto_leaf``, ``auto_lesion``), the mean seconds of the masks per image, the number of
    ``images``, and ``per_image`` (a list of dicts: ``name`` and the values above, for a DataFrame)."""
    rows = []
    for path in map(Path, paths):
        a = _analysed(path)
        rows.append({"name": path.name, **{k: a[k] for k in ("leaf_pixels", "leaf_blocks", "lesion_of_leaf", "auto", "seconds")}})  # fmt: skip
    if not rows:
        raise ValueError("no images")
    lesion = [r["lesion_of_leaf"] for r in rows if not np.isnan(r["lesion_of_leaf"])]
    out = {"images": len(rows)}
    out.update({k: float(np.mean([r[k] for r in rows])) for k in ("leaf_pixels", "leaf_blocks")})
    out["lesion_of_leaf"] = float(np.mean(lesion)) if lesion else float("nan")
    out.update({f"auto_{kind}": float(np.mean([r["auto"] == kind for r in rows])) for kind in ("uniform", "leaf", "lesion")})  # fmt: skip
    out["seconds"] = float(np.mean([r["seconds"] for r in rows]))
    out["per_image"] = rows
    return out
