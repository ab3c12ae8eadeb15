"""The codec's one model class, ``GainHyperprior``: a variable-rate model (one gain vector per quality level, so one
training run covers the whole rate range) of a transform pair and a CompressAI hyperprior latent codec whose ``y``
part may have a context. It is every model so far: codec v1/v2's shipped model (architecture
``"leaf-hyperprior"``), the bake-off's candidates and codec v3 (``"composed"``). The entropy models are CompressAI's
latent codecs, the coder its rANS; nothing here codes a bit by hand:

* ``hyperprior``: mean-scale Gaussian hyperprior (Minnen et al. 2018); each coding tile's latent is one rANS
  stream under Gaussians whose float64 means sit on a 1/256 grid (``latent_coding.GaussianTiles``).
* ``channel``: channel-conditional (Minnen & Singh 2020): ``y`` in equal slices, each slice's mean and scale
  predicted from the hyperprior and the slices decoded before it.
* ``checkerboard``: spatial two-pass checkerboard context (He et al. 2021) on top of the hyperprior.
* ``elic``: ELIC's space-channel context (He et al. 2022): uneven channel groups, each with a checkerboard.

Training uses additive uniform noise for the rate term and straight-through rounding for the synthesis input
(Minnen & Singh 2020), so what is trained is what is decoded.

Transforms: ``gdn`` is the 4-layer conv/GDN stack; ``dwsep`` replaces each inner 5x5 convolution by a depthwise
5x5 and a pointwise 1x1 (the paper's depthwise-separable transforms), which buys width cheaply. ``hyper_hidden``
bounds the hyper-synthesis' hidden widths (M and 1.5 M otherwise), so a wide latent keeps it slim;
``light_context`` slims the context networks for the same reason (3x3 channel-context nets; a checkerboard
context in groups of 8 channels) and makes their parameter nets residual on the hyperprior's own prediction, so
that a context model forked from a trained hyperprior starts where the hyperprior is.

Checkpoints of codec v1/v2 store the same network under flat keys (``log_gain``, ``h_a.``, ...);
``upgrade_state_dict`` is the one place that renames them, and ``load_state_dict`` calls it.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import GDN, CheckerboardMaskedConv2d
from compressai.models.utils import conv, deconv
from torch import nn

from helpers.codec.latent_coding import BoundedGaussianConditional, ContextTiles, GaussianTiles
from helpers.codec.models import DEFAULT_LAMBDAS, CodingModel, LevelGain, register_architecture

LEAF_HYPERPRIOR = "leaf-hyperprior"  # codec v1/v2's shipped model; what a checkpoint naming none holds
COMPOSED = "composed"  # any other configuration (the bake-off's candidates, codec v3)

# Codec v1/v2's flat state-dict keys -> today's (a trailing dot: a prefix).
_LEGACY_KEYS = (
    ("log_gain", "gain.log"),
    ("log_inv_gain", "inv_gain.log"),
    ("entropy_bottleneck.", "latent_codec.hyper.entropy_bottleneck."),
    ("h_a.", "latent_codec.hyper.h_a."),
    ("h_s.", "latent_codec.hyper.h_s."),
    ("gaussian_conditional.", "latent_codec.y.gaussian_conditional."),
)


def _upgraded_key(key: str) -> str:
    for old, new in _LEGACY_KEYS:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return key


def upgrade_state_dict(state: dict) -> dict:
    """``state`` under today's keys: a state dict of codec v1/v2's model (its checkpoints, training runs and
    ``.leaf`` files' weights) renamed, any other returned as it is. The one key upgrade: loading a checkpoint,
    resuming a run and fine-tuning from one all go through it (``load_state_dict``). Renaming changes nothing a
    file records: its weights hash is that of the checkpoint's stored state dict."""
    if all(_upgraded_key(k) == k for k in state):
        return state
    return {_upgraded_key(k): v for k, v in state.items()}


def initial_log_gain(lambdas: torch.Tensor, M: int) -> torch.Tensor:
    """Gains at the optimum for a uniform quantiser (step ~ lambda^-1/2), relative to the middle level: (levels, M)."""
    return 0.5 * torch.log(lambdas / lambdas[len(lambdas) // 2])[:, None].repeat(1, M)


def _dw_down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cin, 5, 2, 2, groups=cin), nn.Conv2d(cin, cout, 1))


def _dw_up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ConvTranspose2d(cout, cout, 5, 2, 2, 1, groups=cout))


def transforms(kind: str, N: int, M: int) -> tuple[nn.Module, nn.Module]:
    """Analysis g_a (RGB -> M channels at 1/16) and synthesis g_s (the mirror image)."""
    down = conv if kind == "gdn" else _dw_down
    up = deconv if kind == "gdn" else _dw_up
    g_a = nn.Sequential(conv(3, N), GDN(N), down(N, N), GDN(N), down(N, N), GDN(N), down(N, M))
    g_s = nn.Sequential(
        up(M, N), GDN(N, inverse=True), up(N, N), GDN(N, inverse=True),
        up(N, N), GDN(N, inverse=True), deconv(N, 3),
    )  # fmt: skip
    return g_a, g_s


def _hyper(N: int, M: int, hidden: int | None = None) -> HyperLatentCodec:
    """Today's hyper-transforms; ``hidden`` bounds the hyper-synthesis' widths (M and 1.5 M unbounded)."""
    h1, h2 = (M, M * 3 // 2) if hidden is None else (min(M, hidden), min(M * 3 // 2, hidden))
    h_a = nn.Sequential(
        conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
        conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N),
    )  # fmt: skip
    h_s = nn.Sequential(
        deconv(N, h1), nn.LeakyReLU(inplace=True),
        deconv(h1, h2), nn.LeakyReLU(inplace=True),
        conv(h2, M * 2, stride=1, kernel_size=3),
    )  # fmt: skip
    return HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(N), h_a=h_a, h_s=h_s)


def _pointwise(cin: int, cout: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(hidden, cout, 1),
    )  # fmt: skip


class _ResidualParameters(nn.Sequential):
    """A pointwise parameter net for ``c`` channels whose output is added to the hyperprior's own means and scales
    of those channels (channels ``first``.. of the latent of ``M``). CompressAI merges the side parameters last,
    so they are the input's last 2 M channels, means then scales. The last layer starts at zero: a context model
    forked from a trained hyperprior begins by predicting exactly what the hyperprior did, and the context only
    adds what it learns (a random parameter net would first have to relearn the hyperprior's prediction)."""

    def __init__(self, cin: int, c: int, hidden: int, M: int, first: int = 0):
        super().__init__(*_pointwise(cin, 2 * c, hidden))
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)
        self.c, self.M, self.first = c, M, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hyper = x[:, x.shape[1] - 2 * self.M :]
        means = hyper[:, self.first : self.first + self.c]
        scales = hyper[:, self.M + self.first : self.M + self.first + self.c]
        return torch.cat([means, scales], 1) + super().forward(x)


def _context(cin: int, cout: int, k: int = 5) -> nn.Module:
    """Channel context: a light 3-layer k x k net on the already decoded groups."""
    return nn.Sequential(
        conv(cin, 96, stride=1, kernel_size=k), nn.LeakyReLU(inplace=True),
        conv(96, 64, stride=1, kernel_size=k), nn.LeakyReLU(inplace=True),
        conv(64, cout, stride=1, kernel_size=k),
    )  # fmt: skip


class _GroupGaussian(GaussianConditionalLatentCodec):
    """A Gaussian codec inside channel groups: CompressAI's ChannelGroupsLatentCodec sums ``shape[0]`` of its
    groups to size ``y``, so each group must report (C, H, W) (as the checkerboard codec does), not (H, W)."""

    def compress(self, y, ctx_params):
        return {**super().compress(y, ctx_params), "shape": y.shape[1:]}

    def decompress(self, strings, shape, ctx_params, **kwargs):
        return super().decompress(strings, tuple(shape[-2:]), ctx_params, **kwargs)


def _gaussian(entropy_parameters: nn.Module | None = None, grouped: bool = False):
    cls = _GroupGaussian if grouped else GaussianConditionalLatentCodec
    return cls(entropy_parameters=entropy_parameters, quantizer="ste", chunks=("means", "scales"),
               gaussian_conditional=BoundedGaussianConditional(None))  # fmt: skip


def _checkerboard(
    c: int, side: int, light: bool = False, M: int = 0, first: int = 0
) -> CheckerboardLatentCodec:
    """Checkerboard codec of ``c`` channels (channels ``first``.. of the latent of ``M``); ``side`` channels of
    parameters come from hyperprior/groups. ``light``: the context reads its neighbours in groups of 8 channels
    (1/(c/8) of the full conv's cost), the parameter net is half as wide, so a wide latent keeps the decoder
    within budget, and residual on the hyperprior's prediction."""
    groups, hidden = (c // 8, max(64, c)) if light else (1, max(64, 2 * c))
    params = (
        _ResidualParameters(2 * c + side, c, hidden, M or c, first)
        if light
        else _pointwise(2 * c + side, 2 * c, hidden)
    )
    return CheckerboardLatentCodec(
        latent_codec={"y": _gaussian()},
        context_prediction=CheckerboardMaskedConv2d(
            c, 2 * c, kernel_size=5, stride=1, padding=2, groups=groups
        ),
        entropy_parameters=params,
    )


def _grouped(groups: list[int], M: int, spatial: bool, light: bool = False) -> ChannelGroupsLatentCodec:
    acc = [sum(groups[:k]) for k in range(len(groups))]
    codecs = {}
    for k, c in enumerate(groups):
        side = 2 * M + (2 * c if k else 0)  # hyperprior params, plus the channel context's
        if spatial:
            codecs[f"y{k}"] = _checkerboard(c, side, light, M, acc[k])
        else:
            net = (
                _ResidualParameters(side, c, 2 * c + 64, M, acc[k])
                if light
                else _pointwise(side, 2 * c, 2 * c + 64)
            )
            codecs[f"y{k}"] = _gaussian(net, grouped=True)
    k_size = 3 if light else 5  # light: 3x3 context nets, 9/25 of the 5x5 cost
    context = {f"y{k}": _context(acc[k], 2 * c, k_size) for k, c in enumerate(groups) if k}
    return ChannelGroupsLatentCodec(latent_codec=codecs, channel_context=context, groups=groups)


def latent_codec(kind: str, N: int, M: int, hyper_hidden: int | None = None, light_context: bool = False
                 ) -> HyperpriorLatentCodec:  # fmt: skip
    if kind == "hyperprior":
        y = _gaussian()
    elif kind == "checkerboard":
        y = _checkerboard(M, 2 * M, light_context)
    elif kind in ("channel", "elic"):
        y = _grouped(_groups(kind, M), M, spatial=kind == "elic", light=light_context)
    else:
        raise ValueError(f"unknown entropy model {kind!r}")
    return HyperpriorLatentCodec(latent_codec={"y": y, "hyper": _hyper(N, M, hyper_hidden)})


ENTROPY_MODELS = ("hyperprior", "checkerboard", "channel", "elic")


def _groups(entropy: str, M: int) -> list[int]:
    return [M // 4] * 4 if entropy == "channel" else [8, 8, 16, 32, M - 64]


@register_architecture(COMPOSED)
class GainHyperprior(CodingModel):
    """g_a -> gain -> latent codec (hyperprior + y context) -> inverse gain -> g_s (see the module docstring)."""

    def __init__(self, transform: str, N: int, M: int, entropy: str, lambdas, hyper_hidden: int | None = None,
                 name: str = "", light_context: bool = False):  # fmt: skip
        super().__init__()
        if entropy not in ENTROPY_MODELS:
            raise ValueError(f"unknown entropy model {entropy!r}")
        self.name, self.N, self.M = name, N, M
        self.transform, self.entropy, self.hyper_hidden = transform, entropy, hyper_hidden
        self.light_context = light_context
        self.g_a, self.g_s = transforms(transform, N, M)
        lam = torch.as_tensor(lambdas, dtype=torch.float32)
        self.register_buffer("lambdas", lam)
        log_gain = initial_log_gain(lam, M)
        self.gain, self.inv_gain = LevelGain(log_gain), LevelGain(-log_gain)
        self.latent_codec = latent_codec(entropy, N, M, hyper_hidden, light_context)

    def _is_leaf_hyperprior(self) -> bool:
        leaf = ("gdn", "hyperprior", None, "", False)
        return (self.transform, self.entropy, self.hyper_hidden, self.name, self.light_context) == leaf

    @property
    def architecture(self) -> str:
        """How a checkpoint names this configuration: codec v1/v2's shipped model keeps its short form."""
        return LEAF_HYPERPRIOR if self._is_leaf_hyperprior() else COMPOSED

    def config(self) -> dict:
        lambdas = [float(v) for v in self.lambdas]
        if self._is_leaf_hyperprior():
            return {"N": self.N, "M": self.M, "lambdas": lambdas}
        return {"transform": self.transform, "N": self.N, "M": self.M, "entropy": self.entropy,
                "lambdas": lambdas, "hyper_hidden": self.hyper_hidden, "name": self.name,
                "light_context": self.light_context}  # fmt: skip

    def load_state_dict(self, state_dict, strict: bool = True):
        return super().load_state_dict(upgrade_state_dict(state_dict), strict=strict)

    @property
    def ste_synthesis(self) -> bool:
        """Training: the synthesis sees the latent rounded with a straight-through gradient (True) or the noisy
        latent (False). A hyperprior's setting; context codecs always round."""
        return getattr(self.latent_codec.latent_codec["y"], "quantizer", "ste") == "ste"

    @ste_synthesis.setter
    def ste_synthesis(self, on: bool) -> None:
        self.latent_codec.latent_codec["y"].quantizer = "ste" if on else "noise"

    # The interface's hyperprior parts are the latent codec's own modules.
    @property
    def h_a(self) -> nn.Module:
        return self.latent_codec.hyper.h_a

    @property
    def h_s(self) -> nn.Module:
        return self.latent_codec.hyper.h_s

    @property
    def entropy_bottleneck(self):
        return self.latent_codec.hyper.entropy_bottleneck

    @property
    def tile_codec(self):
        y = self.latent_codec.latent_codec["y"]
        if self.entropy == "hyperprior":
            return GaussianTiles(y.gaussian_conditional)
        if self.entropy == "checkerboard":
            return ContextTiles(y, 2, lambda rows, cols: (self.M, rows, cols))
        groups = _groups(self.entropy, self.M)
        passes = 2 if self.entropy == "elic" else 1
        return ContextTiles(y, passes * len(groups), lambda rows, cols: [(c, rows, cols) for c in groups])

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> dict:
        """Training/evaluation pass with noise (rate) and straight-through rounding (synthesis); ``index`` holds
        one 0-based level index per image."""
        y = self.gain(self.g_a(x).float(), index)
        with torch.autocast(device_type=x.device.type, enabled=False):  # entropy model in float32
            out = self.latent_codec(y)
        x_hat = self.g_s(self.inv_gain(out["y_hat"], index)).float()
        return {"x_hat": x_hat, "likelihoods": out["likelihoods"]}


@register_architecture(LEAF_HYPERPRIOR)
def leaf_hyperprior(N: int = 64, M: int = 128, lambdas=DEFAULT_LAMBDAS) -> GainHyperprior:
    """Codec v1/v2's shipped model (the bake-off's ``base`` at N = 64, M = 128), from its checkpoints' config."""
    return GainHyperprior("gdn", N, M, "hyperprior", lambdas)
