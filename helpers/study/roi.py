"""Notebook 07: bits where the diagnosis is. Our codec uniform and with a region of interest (leaf; leaf + lesion),
against AVIF 4:4:4 s4 uniform and AVIF given the *same* importance map through libaom's rate-guided delta-q
(``baselines.avif_roi``), on the same images, through the study's one coding loop (``evaluate.coded_images``).

Measures per file (``region_scores``), against the whole file's bpp: PSNR over the leaf's pixels
(``importance.leaf_mask`` of the original), MS-SSIM over the leaf (the decoded leaf pasted on the original
background, so only the leaf's errors count), the background's PSNR and the whole image's PSNR. BD-rates are
taken on the leaf's PSNR and MS-SSIM (dB) inside the study's window (0.05-1 bpp of the whole file).
JPEG 2000 has no spatial region of interest in OpenJPEG (only Part 1's max-shift, which glymur does not expose),
so it is not in this comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.codec import importance
from helpers.measures.metrics import RATE_WINDOW, bd_rate, ms_ssim, ms_ssim_db, psnr
from helpers.study import evaluate
from helpers.study.baselines import Codec, avif_roi, classical_codecs
from helpers.study.tables import write_csv

AVIF_BACKGROUND = 0.03  # libaom's relative rate of a background block (weight 0); a leaf block asks for 1
MAPS = ("leaf", "lesion")
# Leaf-region measures (higher is better) and the BD tables' columns.
REGION_METRICS = {"leaf_psnr": True, "leaf_ms_ssim_db": True}
COLUMNS = ("image", "codec", "setting", "bytes", "bpp", "leaf_share", "leaf_psnr", "leaf_ms_ssim_db",
           "background_psnr", "psnr")  # fmt: skip


def _ours_roi(leaf, levels, kind: str, background: float) -> Codec:
    def encode(img: np.ndarray, level) -> bytes:
        return leaf.encode(
            img, level, roi_weights=importance.importance_map(img, kind), background=background
        )

    return Codec(f"ours_roi_{kind}", tuple(levels), encode, leaf.decode)


def _avif_weights(kind: str):
    return lambda img: AVIF_BACKGROUND + (1 - AVIF_BACKGROUND) * importance.importance_map(img, kind)


def roi_codecs(leaf, stride: int = 1, background: float | None = None) -> list[Codec]:
    """Ours uniform and with each map (``MAPS``), AVIF uniform and with each map, every ``stride``-th setting.
    ``leaf`` is a ``LeafCodec``; ``background`` its background level (None: the codec's default)."""
    from dataclasses import replace

    from helpers.codec.roi import DEFAULT_BACKGROUND

    bg = DEFAULT_BACKGROUND if background is None else background
    levels = leaf.levels[::stride]
    avif = next(c for c in classical_codecs() if c.name == "avif")  # AVIF_VARIANTS' headline AVIF
    ours = [evaluate.learned_codec(leaf, levels), *(_ours_roi(leaf, levels, k, bg) for k in MAPS)]
    avifs = [avif, *(avif_roi(_avif_weights(k), name=f"avif_roi_{k}") for k in MAPS)]
    return ours + [replace(c, settings=c.settings[::stride]) for c in avifs]


def region_scores(img: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> dict:
    """Leaf-region PSNR and MS-SSIM (dB), background PSNR, whole-image PSNR of one decoding; NaN for a region
    that is empty."""
    pasted = np.where(mask[..., None], decoded, img)  # the decoded leaf on the original background
    leaf, back = mask.any(), (~mask).any()
    return {
        "leaf_share": float(mask.mean()),
        "leaf_psnr": _region_psnr(img, decoded, mask) if leaf else np.nan,
        "leaf_ms_ssim_db": ms_ssim_db(ms_ssim(img, pasted)) if leaf else np.nan,
        "background_psnr": _region_psnr(img, decoded, ~mask) if back else np.nan,
        "psnr": psnr(img, decoded),
    }


def _region_psnr(img: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the RGB samples of the pixels in ``mask`` (``metrics.psnr`` of the region's pixels)."""
    return psnr(img[mask][None], decoded[mask][None])


def measure(codecs: Sequence[Codec], images, out_csv: str | Path | None = None, data_root=None, workers: int = 1,
            progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """One row per (image, codec, setting), ``COLUMNS``: every codec through ``evaluate.coded_images``; the
    leaf mask is the original's, the same for every codec. ``workers`` > 1: forked processes."""
    if workers > 1 and len(images) > 1:
        named = list(images)
        parts = evaluate.forked_map(lambda chunk: measure(codecs, chunk, data_root=data_root, progress=False),
                                    named, workers, progress=progress, desc="roi")  # fmt: skip
        df = pd.concat(parts, ignore_index=True)
    else:
        rows = []
        for name, img, coded in evaluate.coded_images(
            codecs, images, data_root, progress=progress, desc="roi"
        ):
            mask = importance.leaf_mask(img)
            rows += [{"image": name, "codec": c.codec, "setting": c.setting, "bytes": len(c.data), "bpp": c.bpp,
                      **region_scores(img, c.decoded, mask)} for c in coded]  # fmt: skip
        df = pd.DataFrame(rows, columns=list(COLUMNS))
    if out_csv is not None:
        write_csv(df, out_csv)
    return df


def summarise(rows: pd.DataFrame, min_leaf_share: float = 0.02) -> pd.DataFrame:
    """Mean bpp and measures per codec and setting, over the images whose leaf covers at least
    ``min_leaf_share`` of the pixels (a leaf region of a few pixels has no meaningful PSNR)."""
    kept = rows[rows.leaf_share >= min_leaf_share]
    cols = ["bpp", "leaf_psnr", "leaf_ms_ssim_db", "background_psnr", "psnr"]
    out = kept.groupby(["codec", "setting"], sort=False)[cols].mean().reset_index()
    return out.assign(images=kept.groupby(["codec", "setting"], sort=False).size().to_numpy())


def bd_table(summary: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """BD-rate (%) of ``test`` against ``anchor`` for each (test, anchor) pair, on the leaf's PSNR and MS-SSIM,
    inside the study's window (0.05-1 bpp of the whole file); NaN where the curves do not overlap there."""
    rows = []
    for test, anchor in pairs:
        a, t = (summary[summary.codec == c].sort_values("bpp") for c in (anchor, test))
        row = {"codec": test, "anchor": anchor}
        for metric, higher in REGION_METRICS.items():
            try:
                row[f"bd_rate_{metric}"] = bd_rate(a.bpp, a[metric], t.bpp, t[metric], rate_range=RATE_WINDOW,
                                                   higher_is_better=higher)  # fmt: skip
            except ValueError:
                row[f"bd_rate_{metric}"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


HEADLINE_PAIRS = (
    ("ours_roi_leaf", "ours"),
    ("ours_roi_lesion", "ours"),
    ("ours_roi_leaf", "avif_roi_leaf"),
    ("ours_roi_lesion", "avif_roi_lesion"),
    ("ours_roi_leaf", "avif"),
    ("avif_roi_leaf", "avif"),
    ("ours", "avif"),
)


def bytes_for_accuracy(summary: pd.DataFrame, uniform: str = "ours", target: float = 90.0) -> pd.DataFrame:
    """Diagnosis at fewer bytes: the lowest setting of ``uniform`` whose accuracy reaches ``target`` %, that
    accuracy, and for every other codec the mean bpp at which its accuracy first reaches it (linear in log-bpp
    between its settings; NaN if it never does), with the saving against ``uniform`` (%)."""
    u = summary[summary.codec == uniform].sort_values("bpp")
    hit = u[u.accuracy >= target]
    if hit.empty:
        return pd.DataFrame()
    ref = hit.iloc[0]
    rows = []
    for codec, d in summary[summary.codec != "original"].groupby("codec", sort=False):
        rows.append(
            {
                "codec": codec,
                "accuracy": ref.accuracy,
                "bpp": _first_reach(d.sort_values("bpp"), ref.accuracy),
            }
        )
    out = pd.DataFrame(rows)
    return out.assign(saving=100 * (1 - out.bpp / ref.bpp), reference=f"{uniform} level {ref.setting}")


def _first_reach(d: pd.DataFrame, accuracy: float) -> float:
    acc, rate = d.accuracy.to_numpy(), d.bpp.to_numpy()
    for i in range(len(acc)):
        if acc[i] >= accuracy:
            if i == 0:
                return float(rate[0])
            t = (accuracy - acc[i - 1]) / (acc[i] - acc[i - 1])
            return float(np.exp(np.log(rate[i - 1]) + t * (np.log(rate[i]) - np.log(rate[i - 1]))))
    return float("nan")


def bits_figure(
    leaf, img: np.ndarray, codecs: Sequence[Codec], level: int, target_bpp: float, title: str = ""
):
    """A leaf, its map and where the bits go (uniform and ROI, at ``level``, bits per pixel on one scale), then
    a crop inside the leaf decoded by every codec at the file size nearest ``target_bpp``."""
    import matplotlib.pyplot as plt

    from helpers.study.visual_measures import bit_allocation, match_bitrate, pick_crop

    mask, weights = importance.leaf_mask(img), importance.importance_map(img, "leaf")
    bits = [bit_allocation(leaf, img, level), bit_allocation(leaf, img, level, weights)]
    coded = next(evaluate.coded_images(codecs, [img], progress=False))[2]
    matched = match_bitrate(coded, target_bpp)
    r, c = pick_crop(img, 64, mask)
    n = max(3, len(matched))
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(img)
    axes[0, 0].imshow(
        np.kron(weights, np.ones((16, 16)))[: img.shape[0], : img.shape[1]], cmap="gray", alpha=0.45
    )
    axes[0, 0].set_title("leaf map (white: level, dark: background)", fontsize=7)
    top = max(b.max() for b in bits)
    for ax, b, label in zip(axes[0, 1:3], bits, ("uniform", "ROI (leaf)")):
        ax.imshow(img.mean(-1), cmap="gray", vmin=0, vmax=255)
        ax.imshow(b, cmap="inferno", alpha=0.7, vmin=0, vmax=top)
        ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
        share = b[mask].sum() / b.sum()
        ax.set_title(
            f"{label}, level {level}: {b.mean():.2f} bpp,\n{share:.0%} of the bits on the leaf", fontsize=7
        )
    for ax, (name, f) in zip(axes[1], matched.items()):
        ax.imshow(f.decoded[r : r + 64, c : c + 64], interpolation="nearest")
        ax.set_title(f"{name} ({f.setting})\n{f.bpp:.3f} bpp, leaf {_region_psnr(img, f.decoded, mask):.1f} dB",
                     fontsize=7)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def map_bytes(leaf, images: dict[str, np.ndarray], level: int) -> pd.DataFrame:
    """The ROI map's share of real files: per image, the leaf-map file's bytes, its map's bytes (and what the
    same map took DEFLATE-coded, as format version 3 stored it) and the bytes the uniform file at the same
    level had (what the region saved, net)."""
    from helpers.codec.container import deflated, latent_grid, parse

    rows = []
    for name, img in images.items():
        data = leaf.encode(img, level, roi_weights=importance.importance_map(img, "leaf"))
        uniform = len(leaf.encode(img, level))
        roi_map = parse(data).roi
        map_len = 0 if roi_map is None else len(roi_map.coded)
        grid = latent_grid(*img.shape[:2])
        v3_len = 0 if roi_map is None else len(deflated(roi_map.weights(*grid).tobytes()))
        rows.append({"image": name, "size": f"{img.shape[1]}x{img.shape[0]}", "level": level,
                     "uniform_bytes": uniform, "roi_bytes": len(data), "map_bytes": map_len,
                     "map_bytes_deflate": v3_len,
                     "map_share_of_file": map_len / len(data), "saved": 1 - len(data) / uniform})  # fmt: skip
    return pd.DataFrame(rows)


def map_context_prior(paths: Sequence[Path], kinds: Sequence[str] = MAPS) -> tuple[list[int], int]:
    """``map_coding.PRIOR`` and ``PRIOR_EQUALS_N`` re-estimated: each decision's frequency of 0 (Laplace-
    smoothed, in 11 bits) over the ``kinds`` maps of the images at ``paths`` (the shipped values: 300 leaves of
    the training split, Potato excluded, leaf and lesion maps)."""
    from helpers.codec import map_coding, roi
    from helpers.data.dataset import read_image

    counts = np.zeros((len(map_coding.PRIOR) + 1, 2))
    for path in paths:
        img = read_image(path)
        for kind in kinds:
            counts += map_coding.context_counts(roi.quantised(importance.importance_map(img, kind)))
    prior = np.clip(np.rint(2048 * (counts[:, 0] + 1) / (counts.sum(1) + 2)), 16, 2032).astype(int).tolist()
    return prior[:-1], prior[-1]


def hyperprior_ablation(
    leaf, images: dict[str, np.ndarray], levels=(3, 5, 7), background: float = 1
) -> pd.DataFrame:
    """Why the hyperprior runs at the file's level (``helpers.codec.roi``'s docstring), measured: each image's
    leaf map coded the shipped way ("rescaled": the hyper-latent of the latent at the file's level, each
    position's Gaussian rescaled by its gain ratio) and the first way one would try ("naive": the hyperprior
    fed the mixed latent itself, as for a uniform level), beside the uniform file. Mean bytes, leaf and
    background PSNR per variant and level."""
    rows = []
    for name, img in images.items():
        mask, weights = importance.leaf_mask(img), importance.importance_map(img, "leaf")
        for level in levels:
            shipped = leaf.encode(img, level, roi_weights=weights, background=background)
            for variant, (size, out) in {
                "uniform": _decoded(leaf, leaf.encode(img, level)),
                "naive": _naive_roi(leaf, img, level, weights, background),
                "rescaled": _decoded(leaf, shipped),
            }.items():
                rows.append({"image": name, "level": level, "variant": variant, "bytes": size,
                             "leaf_psnr": _region_psnr(img, out, mask),
                             "background_psnr": _region_psnr(img, out, ~mask)})  # fmt: skip
    table = pd.DataFrame(rows).groupby(["level", "variant"], sort=False)[
        ["bytes", "leaf_psnr", "background_psnr"]
    ]
    return table.mean().reset_index()


def _decoded(leaf, data: bytes) -> tuple[int, np.ndarray]:
    return len(data), leaf.decode(data)


def _naive_roi(
    leaf, img: np.ndarray, level: int, weights: np.ndarray, background: float
) -> tuple[int, np.ndarray]:
    """The naive region-of-interest coding (``hyperprior_ablation``): the latent scaled per position, then coded
    as a uniform file's latent is, so the hyperprior sees the mixed latent. Bytes (the map's not counted) and
    decoding."""
    import torch

    from helpers.codec import roi as coding
    from helpers.codec import tiling
    from helpers.codec.container import parse
    from helpers.codec.models import single_thread

    h, w = img.shape[:2]
    indexes = coding.position_indexes(coding.quantised(weights), level, min(background, level))
    with single_thread(), torch.no_grad():
        y = tiling.analyse(leaf.g_a, img, leaf.model.M, 1) * leaf.model.gain.spatial(indexes)
        data = leaf._encode_latent(y, level, 0, h, w, 1)
        y_hat = coding.scale_in_place(leaf._decode_latent(parse(data), 1), leaf.model.inv_gain, indexes)
        out = tiling.synthesise(lambda t, region: leaf.g_s(t, region).clamp_(0, 1), y_hat, h, w, 1)
    return len(data), out


def background_dependence(clf, records, root, leaf, level: int = 1) -> pd.DataFrame:
    """Does the classifier read the leaf or the background? Top-1 accuracy (%) on ``records``' originals, on
    the original leaf pasted on the background of the level-``level`` decoding, and on that decoding's leaf
    pasted on the original background (the leaf mask of the original; ``clf``: a ``diagnosis.Classifier``)."""
    from helpers.data.dataset import read_image
    from helpers.study import diagnosis

    variants = {"original": [], "original leaf, coded background": [], "coded leaf, original background": []}
    for r in records:
        img = read_image(Path(root) / r.path)
        mask, low = importance.leaf_mask(img)[..., None], leaf.decode(leaf.encode(img, level))
        variants["original"].append(img)
        variants["original leaf, coded background"].append(np.where(mask, img, low))
        variants["coded leaf, original background"].append(np.where(mask, low, img))
    truth = diagnosis.labels([r.cls for r in records], clf.classes)
    return pd.DataFrame(
        [{"images": name, "level": level, "accuracy": 100 * float(np.mean(clf.predict(imgs) == truth))}
         for name, imgs in variants.items()]
    )  # fmt: skip
