"""Codec v1/v2's architecture: a mean-scale Gaussian hyperprior (Minnen et al. 2018) with one gain vector per
quality level, the model of every ``.leaf`` file written so far.

Training uses additive uniform noise for the rate term and straight-through rounding for the synthesis input
(Minnen & Singh 2020), so what is trained is what is decoded. Coding rounds; each coding tile's latent is one
rANS stream under Gaussians whose float64 means sit on a 1/256 grid (``latent_coding.GaussianTiles``).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste
from torch import nn

from helpers.codec.latent_coding import GaussianTiles
from helpers.codec.models import DEFAULT_LAMBDAS, CodingModel, LevelGain

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


class LeafHyperprior(CodingModel):
    """Mean-scale hyperprior with quality-level gain units (``gain`` before rounding, ``inv_gain`` after)."""

    architecture = "leaf-hyperprior"

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
        # Synthesis input in training: rounded with a straight-through gradient, or the noisy latent.
        self.ste_synthesis = True
        self.register_state_dict_post_hook(_to_legacy_keys)
        self.register_load_state_dict_pre_hook(_from_legacy_keys)

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

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "lambdas": [float(v) for v in self.lambdas]}

    @property
    def tile_codec(self) -> GaussianTiles:
        return GaussianTiles(self.gaussian_conditional)
