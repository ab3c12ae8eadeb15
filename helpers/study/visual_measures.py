"""Notebook 04's measurements: codecs compared at matched rates, edge fidelity, errors, and where our codec
spends its bits (leaf segmentation and bit allocation).

Images are coded by ``evaluate.coded_images``, the loop notebook 03 uses: every codec at every setting, each
file decoded from its bytes. A *matched rate* is, per image, each codec's setting whose real file is nearest
a target bpp on a log scale (``match_bitrate``); a codec that cannot get within ``tolerance`` of it is left out
for that image rather than compared at another rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers.codec.errors import LeafCodecError
from helpers.study.evaluate import QUALITY_COLUMNS, Coded, coded_images, measure


def nearest_rate(bpps, target_bpp: float) -> int:
    """Index of the rate nearest ``target_bpp`` on a log scale (0.5x and 2x are equally far); ties: lower rate."""
    return int(np.argmin(np.abs(np.log(np.asarray(bpps, dtype=float) / target_bpp))))


def _within(bpp_value: float, target_bpp: float, tolerance: float | None) -> bool:
    return tolerance is None or abs(np.log(bpp_value / target_bpp)) <= np.log1p(tolerance)


def match_bitrate(coded: list[Coded], target_bpp: float, tolerance: float | None = None) -> dict[str, Coded]:
    """Of one image's files (``evaluate.coded_images``), each codec's nearest ``target_bpp`` (``nearest_rate``):
    ``{codec name: Coded}`` in the codecs' order. With ``tolerance`` (e.g. 0.3: within target/1.3 ..
    target*1.3) a codec that cannot get that close (JPEG below ~0.3 bpp) is left out."""
    by_codec: dict[str, list[Coded]] = {}
    for c in coded:
        by_codec.setdefault(c.codec, []).append(c)
    out = {}
    for name, files in by_codec.items():
        best = files[nearest_rate([c.bpp for c in files], target_bpp)]
        if _within(best.bpp, target_bpp, tolerance):
            out[name] = best
    return out


def visual_sweep(image_paths, codecs, targets=(0.5,), tolerance: float | None = 0.3, data_root=None,
                 lpips: bool = True, progress: bool = True) -> dict:  # fmt: skip
    """Code every image with every codec at every setting, once, and measure what the visual section needs.

    Returns ``per_setting`` (one row per image, codec, setting: ``evaluate.measure``'s rate and time columns,
    ``mae`` and ``metrics.fidelity_scores``: edge fidelity and high-frequency fidelity), ``matched`` (one row per target, image and codec
    at the setting ``match_bitrate`` picks, with LPIPS) and ``error_hist`` (``{(target, codec): counts}``, the
    absolute errors of all RGB samples at the matched setting, bins 0..255, summed over the images).
    """
    from helpers.measures.metrics import fidelity_scores, lpips_distance

    rows, matched, hist = [], [], {}
    for name, img, coded in coded_images(
        codecs, image_paths, data_root, progress=progress, desc="visual sweep"
    ):
        measured = {}
        for c in coded:  # PSNR and MS-SSIM are notebook 03's; here edges and absolute errors
            row = {k: v for k, v in measure(name, img, c, quality=False).items() if k not in QUALITY_COLUMNS}
            row["mae"] = float(np.abs(img - c.decoded.astype(float)).mean())
            measured[c.codec, c.setting] = {**row, **fidelity_scores(img, c.decoded)}
        rows += measured.values()
        for target in targets:
            for codec, c in match_bitrate(coded, target, tolerance).items():
                err = np.abs(img.astype(np.int16) - c.decoded).ravel()
                hist[target, codec] = hist.get((target, codec), 0) + np.bincount(err, minlength=256)
                lp = lpips_distance(img, c.decoded) if lpips else float("nan")
                matched.append({"target_bpp": target, **measured[codec, c.setting], "lpips": lp})
    return {"per_setting": pd.DataFrame(rows), "matched": pd.DataFrame(matched), "error_hist": hist}


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

    from helpers.measures.metrics import sobel_magnitude

    energy = sobel_magnitude(img)
    if mask is not None and mask.sum() > size * size:
        energy = energy * ndimage.binary_erosion(mask, iterations=4)
    c = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image: window sums in O(1)
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    r, k = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(r), int(k)


def bits_map(model, x, index: float, include_z: bool = True, ratios=None):
    """Ideal code length in bits (-log2 p) of every latent position of one padded image, shape (H/16, W/16).

    Uses what the coder uses (the model's tile codec: rounded symbols, float64 means, the scale table's
    quantised scales), summed over channels; for images larger than one coding tile the coder's hyper-synthesis
    runs per tile, which changes the means in the last bits only. With ``include_z`` each hyper-latent
    position's bits are spread evenly over the 4x4 latent positions it conditions. The total is within a few
    percent of the rANS streams (which add the coder's final states, word padding and the 16-bit rounding of
    the CDFs). ``index`` is the 0-based level index; the model's tile codec must be a Gaussian one. ``ratios``:
    a region of interest's gain ratios per position (``helpers.codec.roi.gain_ratios``), applied as the coder
    applies them."""
    import torch

    from helpers.codec.models import single_thread

    with single_thread(), torch.no_grad():
        y, z = model.analyse(x[:1], index)
        z_hat, z_likelihoods = model.entropy_bottleneck(z, training=False)  # = decompress(compress(z))
        params = model.hyper_synthesis(z_hat)
        if ratios is not None:
            y, params = y.double() * ratios, model.tile_codec.rescaled(params, ratios)
        bits = model.tile_codec.symbol_bits(y, params).sum(1)[0]
    if include_z:
        z_bits = -torch.log2(z_likelihoods).sum(1)[0]
        bits = bits + z_bits.repeat_interleave(4, 0).repeat_interleave(4, 1) / 16
    return bits


def bit_allocation(leaf, img: np.ndarray, level: int, roi_weights=None, background: float = 1) -> np.ndarray:
    """Bits per pixel (H x W, float) where our codec spends them for ``img`` at ``level`` (1-based):
    ``bits_map`` (y and z), each latent position's bits spread over the 16x16 pixels it covers. Padded like
    ``LeafCodec.encode``; the padding's share is cropped away. ``roi_weights``, ``background``: a region of
    interest, as ``LeafCodec.encode`` takes them."""
    import torch

    from helpers.codec import roi
    from helpers.codec.models import pad_to_stride

    h, w = img.shape[:2]
    x = pad_to_stride(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255))
    ratios = None
    if roi_weights is not None:
        indexes = roi.position_indexes(roi.quantised(roi_weights), level, min(background, level))
        ratios = roi.gain_ratios(leaf.model.gain, indexes, level)
    bits = bits_map(leaf.model, x, level - 1, ratios=ratios).numpy()
    return np.kron(bits, np.ones((16, 16)))[:h, :w] / 256


def bit_share(bits_px: np.ndarray, mask: np.ndarray) -> dict:
    """How bits split between leaf (``mask``) and background: area share, bit share, bpp of each part."""
    total = bits_px.sum()
    return {"leaf_area": float(mask.mean()), "leaf_bits": float(bits_px[mask].sum() / total),
            "bpp_leaf": float(bits_px[mask].mean()) if mask.any() else float("nan"),
            "bpp_background": float(bits_px[~mask].mean()) if (~mask).any() else float("nan")}  # fmt: skip
