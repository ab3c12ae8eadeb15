"""The learned codec: a mean-scale Gaussian hyperprior with one gain vector per quality level.

Layout follows CompressAI (``g_a``, ``g_s``, ``h_a``, ``h_s``; entropy models kept separate):

* ``g_a`` (analysis) maps an RGB image to a latent ``y`` with 16x fewer pixels and ``M`` channels.
* Quality level ``k`` multiplies ``y`` channel-wise by ``gain[k]`` before rounding and divides by it after
  (gain units, Cui et al. 2021): a larger gain means finer quantisation, hence more bits. One network
  serves every rate, so a single CPU training run covers 0.05-1 bpp.
* ``h_a`` / ``h_s`` (hyper-analysis/-synthesis) send side information ``z`` from which the decoder
  predicts a mean and a scale for every element of ``y``; ``y`` is coded with a Gaussian conditional,
  ``z`` with a learned factorised prior. Both use CompressAI's rANS coder.

Training uses additive uniform noise for the rate term and straight-through rounding for the synthesis
input (Minnen & Singh 2020), so what is trained is what is decoded. Inference rounds.

The model exposes transforms and entropy parameters only; the file (tiling, entropy coding, container, checks)
is ``helpers.codec``'s. Levels: the model and ``LevelGain`` take a 0-based ``index`` (float allowed: between two
trained levels the gains are interpolated log-linearly); files, the command line and ``LeafCodec`` use the
1-based ``level`` (``index = level - 1``).
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste
from torch import nn

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
        """The gains, shaped (B or 1, M, 1, 1) to multiply a latent."""
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

    def forward(self, y: torch.Tensor, index) -> torch.Tensor:
        return y * self.vector(index)


# State-dict keys of the gains as the shipped checkpoints store them (before the gains were a module).
_LEGACY_KEYS = {"gain.log": "log_gain", "inv_gain.log": "log_inv_gain"}


def _to_legacy_keys(module, state_dict, prefix, local_metadata):
    for new, old in _LEGACY_KEYS.items():
        if prefix + new in state_dict:
            state_dict[prefix + old] = state_dict.pop(prefix + new)


def _from_legacy_keys(module, state_dict, prefix, *args):
    for new, old in _LEGACY_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class LeafHyperprior(CompressionModel):
    """Mean-scale hyperprior with quality-level gain units (``gain`` before rounding, ``inv_gain`` after)."""

    def __init__(self, N: int = 64, M: int = 128, lambdas=DEFAULT_LAMBDAS):
        super().__init__()
        self.N, self.M = N, M
        lambdas = torch.tensor(lambdas, dtype=torch.float32)
        self.register_buffer("lambdas", lambdas)
        # Gains start at the optimum for a uniform quantiser (step ~ lambda^-1/2), relative to the middle level.
        # Registered first, so that the parameters keep the order they had as plain attributes (optimiser state).
        log_gain = 0.5 * torch.log(lambdas / lambdas[len(lambdas) // 2])
        self.gain = LevelGain(log_gain[:, None].repeat(1, M))
        self.inv_gain = LevelGain(-log_gain[:, None].repeat(1, M))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True),
            deconv(N, 3),
        )  # fmt: skip
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
            conv(N, N), nn.LeakyReLU(inplace=True),
            conv(N, N),
        )  # fmt: skip
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )  # fmt: skip
        self._coding = {}  # a plain dict, not a submodule: the float64 copy of h_s (see h_s64), not in state_dict
        # Synthesis input in training: rounded with a straight-through gradient, or the noisy latent.
        self.ste_synthesis = True
        self.register_state_dict_post_hook(_to_legacy_keys)
        self.register_load_state_dict_pre_hook(_from_legacy_keys)

    @property
    def num_levels(self) -> int:
        return int(self.lambdas.numel())

    @property
    def log_gain(self) -> nn.Parameter:
        return self.gain.log

    @property
    def log_inv_gain(self) -> nn.Parameter:
        return self.inv_gain.log

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> dict:
        """Training/evaluation pass with noise (rate) and straight-through rounding (synthesis); ``index`` holds
        one 0-based level index per image."""
        y = self.gain(self.g_a(x).float(), index)
        # The hyperprior is small; keep it in float32 even under autocast so the entropy model is exact.
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = self.h_a(y)
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            means, scales = self.h_s(z_hat).chunk(2, 1)
            y_noisy, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
            y_hat = quantize_ste(y - means) + means if self.ste_synthesis else y_noisy
        x_hat = self.g_s(self.inv_gain(y_hat, index)).float()
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # ----- what coding needs (helpers.codec runs these on tiles) ------------------------------------------
    def update(self, scale_table_=None, force: bool = False) -> bool:
        """Build the CDF tables the rANS coder needs; must run once after training/loading."""
        self._coding.clear()
        if scale_table_ is None:
            scale_table_ = get_scale_table()
        updated = self.gaussian_conditional.update_scale_table(scale_table_, force=force)
        updated |= super().update(force=force)
        return updated

    @property
    def h_s64(self) -> nn.Module:
        """The float64 copy of ``h_s`` that coding runs (built on first use; ``update`` discards it)."""
        if "h_s64" not in self._coding:
            self._coding["h_s64"] = copy.deepcopy(self.h_s).double().eval().requires_grad_(False)
        return self._coding["h_s64"]

    @torch.no_grad()
    def hyper_synthesis(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s in float64: encoder and decoder must agree bit-for-bit on the scale indexes (a float32 difference
        could flip one and derail rANS). Returns the raw (means, scales) parameters, float64."""
        return self.h_s64(z_hat.double())

    def entropy_parameters(self, params: torch.Tensor):
        """Means (float64) and scale indexes of y from h_s's output; shared by every backend of the decoder."""
        means, scales = params.chunk(2, 1)
        # A coarse grid for the means keeps them identical across platforms too.
        means = torch.round(means * 256) / 256
        indexes = self.gaussian_conditional.build_indexes(scales.float())
        return means, indexes

    @torch.no_grad()
    def analyse(self, x: torch.Tensor, index) -> tuple[torch.Tensor, torch.Tensor]:
        """The scaled latent ``y`` and hyper-latent ``z`` of a padded image batch (before rounding)."""
        y = self.gain(self.g_a(x), index)
        return y, self.h_a(y)

    @torch.no_grad()
    def synthesis(self, y_hat: torch.Tensor, index) -> torch.Tensor:
        """Pixels in [0, 1] from the dequantised latent (``symbols + means``) at 0-based level ``index``."""
        return self.g_s(self.inv_gain(y_hat, index)).clamp_(0, 1)

    @torch.no_grad()
    def bits_map(self, x: torch.Tensor, index: float, include_z: bool = True) -> torch.Tensor:
        """Ideal code length in bits (-log2 p) of every latent position of one padded image, shape (H/16, W/16).

        Uses what the coder uses: ``y``'s rounded symbols under Gaussians with the float64 means and the
        *quantised* scales of the scale table, summed over channels (for images larger than one coding tile
        the coder's hyper-synthesis runs per tile, which changes the means in the last bits only). With
        ``include_z`` each hyper-latent position's bits (factorised prior) are spread evenly over the 4x4 latent
        positions it conditions. The total is within a few percent of the rANS streams (which add the coder's
        final states, word padding and the 16-bit rounding of the CDFs). ``index`` is the 0-based level index.
        """
        with single_thread():
            y, z = self.analyse(x[:1], index)
            z_hat, z_likelihoods = self.entropy_bottleneck(z, training=False)  # = decompress(compress(z))
            means, indexes = self.entropy_parameters(self.hyper_synthesis(z_hat))
        gc = self.gaussian_conditional
        symbols = torch.round(y.double() - means)
        scales = gc.scale_table[indexes.long()]
        likelihoods = gc._likelihood(symbols.float(), scales.float())
        if gc.use_likelihood_bound:
            likelihoods = gc.likelihood_lower_bound(likelihoods)
        bits = -torch.log2(likelihoods).sum(1)[0]
        if include_z:
            z_bits = -torch.log2(z_likelihoods).sum(1)[0]
            bits = bits + z_bits.repeat_interleave(4, 0).repeat_interleave(4, 1) / 16
        return bits
