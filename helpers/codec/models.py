"""The model interface every architecture implements, and the pieces all of them share.

``CodingModel`` is everything ``LeafCodec`` (``helpers.codec.leaf_codec``) knows of a model, in CompressAI's terms:

* ``g_a`` (analysis) maps an RGB image to a latent ``y`` with 16x fewer pixels and ``M`` channels; ``g_s``
  (synthesis) maps it back. Both run on tiles (``helpers.codec.tiling``).
* Quality level ``k`` multiplies ``y`` channel-wise by ``gain[k]`` before rounding and divides by it after
  (gain units, Cui et al. 2021): one network serves every rate.
* ``h_a`` and ``entropy_bottleneck`` send the hyper-latent ``z`` (a factorised prior); ``hyper_synthesis`` (a
  float64 copy of ``h_s``) turns ``z_hat`` into the side parameters of ``y``.
* ``tile_codec`` compresses and decompresses one coding tile's latent given those side parameters and returns
  its streams (``helpers.codec.latent_coding``): a mean-scale Gaussian, or a CompressAI latent codec with a
  channel or checkerboard context.
* ``architecture`` and ``config()`` rebuild the model from a shipped checkpoint (``architectures.build``, which
  reads the registry ``ARCHITECTURES`` that the model modules register into).

Levels: the model and ``LevelGain`` take a 0-based ``index`` (float allowed: between two trained levels the gains
are interpolated log-linearly); files, the command line and ``LeafCodec`` use the 1-based ``level``, and
``level_index`` is the one conversion between them.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from torch import nn

from helpers.codec.fast_transforms import coding_copy
from helpers.codec.regions import region_only
from helpers.codec.stage_timer import stage

# Rate-distortion trade-offs, one per quality level (CompressAI convention: loss = bpp + lambda * 255^2 * MSE).
# Chosen so that PlantVillage leaves span roughly 0.05-1 bpp (the shipped model's; see its model card).
DEFAULT_LAMBDAS = (0.0003, 0.0010, 0.0025, 0.0060, 0.015, 0.035, 0.085)
STRIDE = 64  # g_a downsamples 16x and h_a another 4x: inputs are padded to a multiple of this


@contextlib.contextmanager
def single_thread():
    """Run coding transforms on one thread. oneDNN splits GDN's 1x1 convolution (and, at odd thread counts, the
    transposed convolutions) differently with the thread count; the last-bit float32 differences were enough to
    flip a rounded latent or a decoded pixel between 1 and 2 threads. With one thread, files and pixels do not
    depend on the caller's thread setting; the cost is that one image never uses more than one core."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def load_error_detail(exc: RuntimeError) -> str:
    """The first line that matters of ``load_state_dict``'s error (it lists every mismatch on its own line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith(("size mismatch", "Missing", "Unexpected"))), lines[0])
    return detail.rstrip(".")


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad (N, C, H, W) on the bottom and right to a multiple of ``STRIDE`` (replicated pixels cost fewer
    bits than zeros; the decoder crops them away)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


def level_index(level: float) -> float:
    """The model's 0-based gain ``index`` of the 1-based quality ``level`` (files, command line, ``LeafCodec``)."""
    return level - 1


class LevelGain(nn.Module):
    """One channel-wise gain vector per quality level (gain units, Cui et al. 2021), stored as its logarithm.

    ``forward(y, index)`` multiplies ``y`` by the gain of 0-based level ``index``: an integer tensor (one index per
    batch item, training), an int, or a float between two trained levels, whose gain is interpolated
    log-linearly (so the rate moves smoothly between levels). An integral float uses the trained vector as is."""

    def __init__(self, log_gain: torch.Tensor):
        super().__init__()
        self.log = nn.Parameter(log_gain)

    @property
    def num_levels(self) -> int:
        return self.log.shape[0]

    def vector(self, index) -> torch.Tensor:
        """The gains, shaped (B or 1, M, 1, 1) to multiply a latent (per position: ``spatial``)."""
        if torch.is_tensor(index) and not index.is_floating_point():
            return self.log[index].exp()[:, :, None, None]
        f = float(index)
        if not 0 <= f <= self.num_levels - 1:
            raise ValueError(f"level index {f} outside 0..{self.num_levels - 1}")
        if f.is_integer():
            log = self.log[int(f)]
        else:
            i, t = math.floor(f), f - math.floor(f)
            log = self.log[i] * (1 - t) + self.log[i + 1] * t
        return log.exp()[None, :, None, None]

    def spatial(
        self, index: torch.Tensor, log: bool = False, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Gains per latent position of a float map of 0-based indexes (B, rows, cols): (B, M, rows, cols) in
        ``dtype`` (their logarithms if ``log``), interpolated log-linearly between the two nearest trained levels
        (region-of-interest coding, ``helpers.codec.roi``). Below index 0 the line through the lowest two levels
        goes on, to -1 at most: a coarser step than any trained level, for a background that may give up nearly
        everything. An integral index gives its trained vector exactly (``x * 1 + y * 0``)."""
        k = self.num_levels
        index = index.to(dtype).clamp(-1, k - 1)
        i = index.floor().clamp_(0, k - 2).long()
        t = (index - i)[..., None]
        table = self.log.to(dtype)
        out = (table[i] * (1 - t) + table[i + 1] * t).permute(0, 3, 1, 2)
        return out if log else out.exp()

    def forward(self, y: torch.Tensor, index) -> torch.Tensor:
        return y * self.vector(index)


class CodingModel(CompressionModel):
    """What ``LeafCodec`` uses of a model; every architecture implements it (see the module docstring).

    Subclasses define ``g_a``, ``g_s``, ``gain``, ``inv_gain``, ``h_a``, ``h_s``, ``entropy_bottleneck``,
    ``tile_codec``, ``N``, ``M``, ``lambdas``, ``architecture`` and ``config()``; the float64 hyper-synthesis and
    the level count are common."""

    architecture: str

    def __init__(self):
        super().__init__()
        self._coding = {}  # a plain dict, not a submodule: the float64 copy of h_s (see h_s64), not in state_dict

    def config(self) -> dict:
        raise NotImplementedError

    @property
    def num_levels(self) -> int:
        return int(self.lambdas.numel())

    @property
    def tile_codec(self):
        raise NotImplementedError

    def update(self, scale_table_=None, force: bool = False) -> bool:
        """Build the CDF tables the rANS coder needs; must run once after training or loading."""
        self._coding.clear()
        return super().update(scale_table_, force=force)

    @property
    def h_s64(self) -> nn.Module:
        """The float64 copy of ``h_s`` that coding runs (built on first use; ``update`` discards it)."""
        if "h_s64" not in self._coding:
            self._coding["h_s64"] = copy.deepcopy(self.h_s).double().eval().requires_grad_(False)
        return self._coding["h_s64"]

    def coding_transform(self, name: str) -> nn.Module:
        """``g_a`` or ``g_s`` as coding runs it: a frozen copy rewritten for CPU speed
        (``helpers.codec.fast_transforms``), built on first use; ``update`` discards it."""
        if name not in self._coding:
            self._coding[name] = coding_copy(getattr(self, name))
        return self._coding[name]

    @stage("hyper-synthesis (float64)")
    @torch.no_grad()
    def hyper_synthesis(self, z_hat: torch.Tensor, region: tuple[slice, slice] | None = None) -> torch.Tensor:
        """h_s in float64: encoder and decoder must agree bit-for-bit on the side parameters (a float32
        difference could flip a scale index and derail rANS). Returns them raw, float64: everywhere, or only
        the output ``region`` (rows, columns), each layer computed only where the region depends on it."""
        if region is None:
            return self.h_s64(z_hat.double())
        return region_only(self.h_s64, z_hat.double(), region)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor, index) -> tuple[torch.Tensor, torch.Tensor]:
        """The scaled latent ``y`` and hyper-latent ``z`` of a padded image batch (before rounding)."""
        y = self.gain(self.g_a(x), index)
        return y, self.h_a(y)

    @torch.no_grad()
    def synthesis(self, y_hat: torch.Tensor, index) -> torch.Tensor:
        """Pixels in [0, 1] from the dequantised latent at 0-based level ``index``."""
        return self.g_s(self.inv_gain(y_hat, index)).clamp_(0, 1)


# Architecture name (as checkpoints record it) -> what builds it from the checkpoint's config. The model modules
# register into it when imported (``register_architecture``); ``helpers.codec.architectures`` imports them and
# builds, so that no module imports one that imports it back.
ARCHITECTURES: dict[str, Callable[..., CodingModel]] = {}


def register_architecture(name: str):
    """Decorator: the class or function that builds architecture ``name`` from its config (``**config``)."""

    def register(builder):
        ARCHITECTURES[name] = builder
        return builder

    return register
