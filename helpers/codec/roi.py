"""Region-of-interest coding: a quality level per latent position (16 x 16 pixels) instead of one per image.

A map of weights in [0, 1] (``helpers.codec.importance`` makes them from leaves and lesions, or a user's mask)
sets each position's level between a *background level* (weight 0) and the file's level (weight 1), linearly:
``level = background + weight * (level - background)``. The gain units then scale each position by its own
level's gains (``LevelGain.spatial``, interpolated log-linearly, extended one step below level 1), so the
background can give up its bits while the leaf keeps its quality. The weights travel in the file as one u8
each, context-coded (``helpers.codec.map_coding``): about 18 bytes for a leaf, about a kilobyte for 12 MP.

Why the hyperprior runs at the file's level: gain units trained on uniform levels leave a hyperprior that
predicts badly for a mixed latent (notebook 07, section 7.3: fed one as is, its predicted means sit at the leaf's
scale in the background, and level-7 leaf files came out larger than uniform ones instead of smaller). So the
hyper-latent describes the latent scaled uniformly at the file's level, as in training, and each position's
Gaussian is that prediction scaled by the position's gain ratio ``r = gain(position) / gain(level)``: a latent
scaled by ``r`` has its mean and scale scaled by ``r``. The ratios are computed in float64 from the stored
weights on both sides, so encoder and decoder agree (``GaussianTiles.rescaled``).
"""

from __future__ import annotations

import numpy as np
import torch

from helpers.codec import map_coding
from helpers.codec.container import LEVEL_UNITS, RoiMap, level_units
from helpers.codec.errors import CodecError
from helpers.codec.models import LevelGain, level_index

WEIGHT_UNITS = 255  # a weight of 1 is stored as 255
LOWEST_BACKGROUND = 0  # the lowest background level: one step below level 1 (``LevelGain.spatial``)
DEFAULT_BACKGROUND = 1  # the background's level when none is given


def quantised(weights: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] (float, any shape) as the file stores them: u8, 0..255."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or w.size and (w.min() < 0 or w.max() > 1):
        raise CodecError("ROI weights must be finite numbers in [0, 1]")
    return np.rint(w * WEIGHT_UNITS).astype(np.uint8)


def encode_map(weights: np.ndarray, background: float) -> RoiMap:
    """The file's ``roi`` field of a u8 weight map (latent rows x cols) and the background level."""
    return RoiMap(level_units(background), map_coding.encode(weights))


def position_indexes(weights: np.ndarray, level: float, background: float) -> torch.Tensor:
    """The 0-based gain index of every latent position, float64 (1, rows, cols): the encoder and the decoder
    compute it from the same u8 weights, in IEEE operations that round alike on every CPU."""
    w = torch.from_numpy(np.asarray(weights, np.float64) / WEIGHT_UNITS)
    return level_index(background + w * (level - background))[None]


def gain_ratios(gain: LevelGain, indexes: torch.Tensor, level: float) -> torch.Tensor:
    """``gain(position) / gain(level)`` per channel of the float64 ``indexes`` (1, rows, cols): (1, M, rows,
    cols), float64; computed per coding tile (a 12 MP image's whole map would be 120 MB at M = 320)."""
    with torch.no_grad():
        top = torch.full((1, 1, 1), float(level_index(level)), dtype=torch.float64)
        logs = gain.spatial(indexes, log=True, dtype=torch.float64)
        return logs.sub_(gain.spatial(top, log=True, dtype=torch.float64)).exp_()


def check_background(background: float, level: float) -> None:
    if not (np.isfinite(background) and LOWEST_BACKGROUND <= background <= level):
        raise CodecError(f"the background level must lie between {LOWEST_BACKGROUND} and the level ({level:g}), "
                         f"not {background:g}")  # fmt: skip
    if level_units(background) != background * LEVEL_UNITS:
        raise CodecError(f"the background level must be a multiple of 1/{LEVEL_UNITS}, not {background}")


def full_weight_pixels(weights: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels (bool, height x width) of the latent positions at weight 1: the region of interest proper."""
    full = np.asarray(weights) >= WEIGHT_UNITS
    return full.repeat(16, 0).repeat(16, 1)[:height, :width]


def scale_in_place(y: torch.Tensor, gain: LevelGain, indexes: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """``y`` (1, M, rows, cols) times each position's gain, in place, a band of ``rows`` latent rows at a time
    (no second latent in memory)."""
    for r0 in range(0, y.shape[-2], rows):
        y[..., r0 : r0 + rows, :].mul_(gain.spatial(indexes[:, r0 : r0 + rows]))
    return y
