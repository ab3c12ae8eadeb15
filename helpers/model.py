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
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste
from torch import nn

# CompressAI's lower bound and table for Gaussian scales (Ballé et al. 2018).
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256, 64

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


def scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


class LeafHyperprior(CompressionModel):
    """Mean-scale hyperprior with quality-level gain units. ``level`` is 0-based inside the model."""

    def __init__(self, N: int = 64, M: int = 96, lambdas=DEFAULT_LAMBDAS):
        super().__init__()
        self.N, self.M = N, M
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

        lambdas = torch.tensor(lambdas, dtype=torch.float32)
        self.register_buffer("lambdas", lambdas)
        # Gains start at the optimum for a uniform quantiser (step ~ lambda^-1/2), relative to the middle level.
        log_gain = 0.5 * torch.log(lambdas / lambdas[len(lambdas) // 2])
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, M))
        self._h_s64 = None  # float64 copy of h_s used for coding (see _entropy_parameters)
        # Synthesis input in training: rounded with a straight-through gradient, or the noisy latent.
        self.ste_synthesis = True

    @property
    def num_levels(self) -> int:
        return int(self.lambdas.numel())

    def _gains(self, level: torch.Tensor):
        g = self.log_gain[level].exp()[:, :, None, None]
        ig = self.log_inv_gain[level].exp()[:, :, None, None]
        return g, ig

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict:
        """Training/evaluation pass with noise (rate) and straight-through rounding (synthesis)."""
        gain, inv_gain = self._gains(level)
        y = self.g_a(x).float() * gain
        # The hyperprior is small; keep it in float32 even under autocast so the entropy model is exact.
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = self.h_a(y)
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            means, scales = self.h_s(z_hat).chunk(2, 1)
            y_noisy, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
            y_hat = quantize_ste(y - means) + means if self.ste_synthesis else y_noisy
        x_hat = self.g_s(y_hat * inv_gain).float()
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # ----- coding -------------------------------------------------------------------------------------
    def update(self, scale_table_=None, force: bool = False) -> bool:
        """Build the CDF tables the rANS coder needs; must run once after training/loading."""
        self._h_s64 = None
        if scale_table_ is None:
            scale_table_ = scale_table()
        updated = self.gaussian_conditional.update_scale_table(scale_table_, force=force)
        updated |= super().update(force=force)
        return updated

    @torch.no_grad()
    def hyper_synthesis(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s in float64: encoder and decoder must agree bit-for-bit on the scale indexes (a float32 difference
        could flip one and derail rANS). Returns the raw (means, scales) parameters, float64."""
        if self._h_s64 is None:
            self._h_s64 = copy.deepcopy(self.h_s).double().eval()
        with single_thread():
            return self._h_s64(z_hat.double())

    def entropy_parameters(self, params: torch.Tensor):
        """Means (float64) and scale indexes of y from h_s's output; shared by every backend of the decoder."""
        means, scales = params.chunk(2, 1)
        # A coarse grid for the means keeps them identical across platforms too.
        means = torch.round(means * 256) / 256
        indexes = self.gaussian_conditional.build_indexes(scales.float())
        return means, indexes

    def _entropy_parameters(self, z_hat: torch.Tensor):
        return self.entropy_parameters(self.hyper_synthesis(z_hat))

    @torch.no_grad()
    def analyse(self, x: torch.Tensor, level: int):
        """Integer symbols of ``y`` and ``z`` for one padded image batch (no entropy coding)."""
        gain, _ = self._gains(torch.tensor([level], device=x.device))
        with single_thread():
            y = self.g_a(x) * gain
            z = self.h_a(y)
        return y, z

    @torch.no_grad()
    def bits_map(self, x: torch.Tensor, level: int, include_z: bool = True) -> torch.Tensor:
        """Ideal code length in bits (-log2 p) of every latent position of one padded image, shape (H/16, W/16).

        Uses what the coder uses: ``y``'s rounded symbols (as in ``compress``) under Gaussians with the float64
        means and the *quantised* scales of the scale table, summed over channels. With ``include_z`` each
        hyper-latent position's bits (factorised prior) are spread evenly over the 4x4 latent positions it
        conditions. The total is within a few percent of the two rANS streams (which add the coder's final
        state, word padding and the 16-bit rounding of the CDFs). ``level`` is 0-based, as elsewhere here.
        """
        y, z = self.analyse(x[:1], level)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, training=False)  # = decompress(compress(z))
        means, indexes = self._entropy_parameters(z_hat)
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

    @torch.no_grad()
    def compress(self, x: torch.Tensor, level: int) -> dict:
        y, z = self.analyse(x, level)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        means, indexes = self._entropy_parameters(z_hat)
        symbols = torch.round(y.double() - means).int()
        y_strings = self.gaussian_conditional.compress(symbols.float(), indexes, means=None)
        return {
            "strings": [y_strings, z_strings],
            "z_shape": tuple(z.shape[-2:]),
            "symbols": symbols,
        }

    @torch.no_grad()
    def decode_symbols(self, y_strings, z_strings, z_shape):
        z_hat = self.entropy_bottleneck.decompress(z_strings, z_shape)
        means, indexes = self._entropy_parameters(z_hat)
        symbols = self.gaussian_conditional.decompress(y_strings, indexes).int()
        return symbols, means

    @torch.no_grad()
    def synthesise(self, symbols: torch.Tensor, means: torch.Tensor, level: int) -> torch.Tensor:
        _, inv_gain = self._gains(torch.tensor([level], device=symbols.device))
        y_hat = (symbols.double() + means).float()
        with single_thread():
            return self.g_s(y_hat * inv_gain).clamp_(0, 1)

    @torch.no_grad()
    def decompress(self, strings, z_shape, level: int) -> dict:
        y_strings, z_strings = strings
        symbols, means = self.decode_symbols(y_strings, z_strings, z_shape)
        return {"x_hat": self.synthesise(symbols, means, level), "symbols": symbols}
