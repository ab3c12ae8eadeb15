"""Codec v2 candidates for the bake-off (issue 9): transforms and entropy models, combined by name.

Every candidate is a variable-rate model with gain units (one gain vector per quality level, as the shipped
model) so one training run covers the whole rate range. The entropy models are CompressAI's latent codecs, the
coder its rANS; nothing here codes a bit by hand:

* ``hyperprior``: mean-scale Gaussian hyperprior (Minnen et al. 2018), today's entropy model.
* ``channel``: channel-conditional (Minnen & Singh 2020): ``y`` in equal slices, each slice's mean and scale
  predicted from the hyperprior and the slices decoded before it.
* ``checkerboard``: spatial two-pass checkerboard context (He et al. 2021) on top of the hyperprior.
* ``elic``: ELIC's space-channel context (He et al. 2022): uneven channel groups, each with a checkerboard.

Transforms: ``gdn`` is today's 4-layer conv/GDN stack; ``dwsep`` replaces each inner 5x5 convolution by a
depthwise 5x5 and a pointwise 1x1 (the paper's depthwise-separable transforms), which buys width cheaply.
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
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import nn

from .errors import CheckpointError
from .model import LevelGain

# name -> (transform, N, M, entropy model[, hidden width of the hyper-synthesis])
CANDIDATES = {
    "base": ("gdn", 64, 128, "hyperprior"),
    "channel": ("gdn", 64, 128, "channel"),
    "elic": ("gdn", 64, 128, "elic"),
    "wide": ("gdn", 128, 192, "hyperprior"),
    "dwsep": ("dwsep", 128, 192, "hyperprior"),
    "dwsep_elic": ("dwsep", 128, 192, "elic"),
    # Codec v3 (issue 19): 320 latent numbers per 16x16 block (the PCA bound of 128 is 26 dB on leaves, of 320
    # 56 dB); N stays 64 because the synthesis cost is in its N->N layers. The hyper-synthesis keeps today's
    # hidden width (192) instead of growing as M^2, so a 12 MP decode stays near today's time.
    "v3": ("gdn", 64, 320, "hyperprior", 192),
}


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


def _context(cin: int, cout: int) -> nn.Module:
    """Channel context: a light 3-layer 5x5 net on the already decoded groups."""
    return nn.Sequential(
        conv(cin, 96, stride=1, kernel_size=5), nn.LeakyReLU(inplace=True),
        conv(96, 64, stride=1, kernel_size=5), nn.LeakyReLU(inplace=True),
        conv(64, cout, stride=1, kernel_size=5),
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
    return cls(entropy_parameters=entropy_parameters, quantizer="ste", chunks=("means", "scales"))


def _checkerboard(c: int, side: int) -> CheckerboardLatentCodec:
    """Checkerboard codec of ``c`` channels; ``side`` channels of parameters come from hyperprior/groups."""
    return CheckerboardLatentCodec(
        latent_codec={"y": _gaussian()},
        context_prediction=CheckerboardMaskedConv2d(c, 2 * c, kernel_size=5, stride=1, padding=2),
        entropy_parameters=_pointwise(2 * c + side, 2 * c, max(64, 2 * c)),
    )


def _grouped(groups: list[int], M: int, spatial: bool) -> ChannelGroupsLatentCodec:
    acc = [sum(groups[:k]) for k in range(len(groups))]
    codecs = {}
    for k, c in enumerate(groups):
        side = 2 * M + (2 * c if k else 0)  # hyperprior params, plus the channel context's
        codecs[f"y{k}"] = (
            _checkerboard(c, side)
            if spatial
            else _gaussian(_pointwise(side, 2 * c, 2 * c + 64), grouped=True)
        )
    context = {f"y{k}": _context(acc[k], 2 * c) for k, c in enumerate(groups) if k}
    return ChannelGroupsLatentCodec(latent_codec=codecs, channel_context=context, groups=groups)


def latent_codec(kind: str, N: int, M: int, hyper_hidden: int | None = None) -> HyperpriorLatentCodec:
    if kind == "hyperprior":
        y = _gaussian()
    elif kind == "checkerboard":
        y = _checkerboard(M, 2 * M)
    elif kind == "channel":
        y = _grouped([M // 4] * 4, M, spatial=False)
    elif kind == "elic":
        y = _grouped([8, 8, 16, 32, M - 64], M, spatial=True)
    else:
        raise ValueError(f"unknown entropy model {kind!r}")
    return HyperpriorLatentCodec(latent_codec={"y": y, "hyper": _hyper(N, M, hyper_hidden)})


class Candidate(CompressionModel):
    """g_a -> gain -> latent codec (hyperprior + y context) -> inverse gain -> g_s."""

    def __init__(self, name: str, lambdas):
        super().__init__()
        transform, N, M, entropy, *hyper_hidden = CANDIDATES[name]
        self.name, self.N, self.M = name, N, M
        self.g_a, self.g_s = transforms(transform, N, M)
        lam = torch.as_tensor(lambdas, dtype=torch.float32)
        self.register_buffer("lambdas", lam)
        log_gain = 0.5 * torch.log(lam / lam[len(lam) // 2])[:, None].repeat(1, M)  # step ~ lambda^-1/2
        self.gain, self.inv_gain = LevelGain(log_gain), LevelGain(-log_gain.clone())
        self.latent_codec = latent_codec(entropy, N, M, *hyper_hidden)

    @property
    def num_levels(self) -> int:
        return int(self.lambdas.numel())

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict:
        y = self.gain(self.g_a(x).float(), level)
        with torch.autocast(device_type=x.device.type, enabled=False):  # entropy model in float32
            out = self.latent_codec(y)
        x_hat = self.g_s(self.inv_gain(out["y_hat"], level)).float()
        return {"x_hat": x_hat, "likelihoods": out["likelihoods"]}

    @torch.no_grad()
    def compress(self, x: torch.Tensor, level: int) -> dict:
        return self.latent_codec.compress(self.gain(self.g_a(x), level))

    @torch.no_grad()
    def decompress(self, strings, shape, level: int) -> torch.Tensor:
        y_hat = self.latent_codec.decompress(strings, shape)["y_hat"]
        return self.g_s(self.inv_gain(y_hat, level)).clamp_(0, 1)


# Where a shipped LeafHyperprior's weights go in a candidate (the transforms and hyperprior carry over; a
# candidate's context networks start from scratch).
_FROM_LEAF = {"log_gain": "gain.log", "log_inv_gain": "inv_gain.log", "h_a.": "latent_codec.hyper.h_a.",
              "h_s.": "latent_codec.hyper.h_s.", "entropy_bottleneck.": "latent_codec.hyper.entropy_bottleneck."}  # fmt: skip


def from_leaf_state(state: dict) -> dict:
    """A LeafHyperprior state dict with its keys renamed for a candidate of the same N and M."""
    out = {}
    for key, value in state.items():
        prefix = next((p for p in _FROM_LEAF if key == p or (p.endswith(".") and key.startswith(p))), None)
        if prefix is not None:
            out[_FROM_LEAF[prefix] + key[len(prefix) :]] = value
        elif not key.startswith("gaussian_conditional."):  # its scale table is rebuilt by update()
            out[key] = value
    return out


# Rebuilt by update() from the weights; a narrower model's tables have other shapes.
_DERIVED = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")


def widen_state(state: dict, model: Candidate) -> dict:
    """A narrower candidate's ``state`` (same layout, fewer channels) embedded in ``model``'s fresh weights so that
    the old channels compute exactly what they did (Net2Net widening, Chen et al. 2016): every old weight keeps
    its place, weights from a new input channel into an old output channel are zero, new channels start from
    ``model``'s own initialisation. The hyper-synthesis output is (means, scales) stacked, so its old rows go to
    the start of each half. New hyper-latents start at zero under a copy of the sharpest old density (no bits
    until training finds them a use). New latents are woken up (``_wake_new_latents``): with the old channels
    alone, the model computes exactly what the narrow one did."""
    fresh = model.state_dict()
    # The output axis of every weight with channel axes: 0 for convolutions and GDN's gamma, 1 for transposed ones.
    into = {f"{n}.weight": 1 if isinstance(m, nn.ConvTranspose2d) else 0
            for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}  # fmt: skip
    into |= {f"{n}.gamma": 0 for n, m in model.named_modules() if isinstance(m, GDN)}  # stored 0 = weight 0
    hyper = model.latent_codec.hyper
    last = f"latent_codec.hyper.h_s.{len(hyper.h_s) - 1}."
    silent = f"latent_codec.hyper.h_a.{len(hyper.h_a) - 1}."
    bottleneck = "latent_codec.hyper.entropy_bottleneck."
    quantiles = state[bottleneck + "quantiles"]  # (channels, 1, 3): each density's tails and median
    sharpest = int((quantiles[:, 0, 2] - quantiles[:, 0, 0]).argmin())
    out = dict(state)
    for key, new in fresh.items():
        old = state.get(key)
        if old is None or old.shape == new.shape:
            continue
        if key.rsplit(".", 1)[-1] in _DERIVED:
            # compressai's load_state_dict sizes these buffers by the state's; update() fills them
            out[key] = new
            continue
        if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape)):
            shapes = f"{tuple(old.shape)} does not fit in {tuple(new.shape)}"
            raise CheckpointError(f"cannot widen {key}: {shapes}")
        w = new.clone()
        if key.startswith(last):  # rows [means | scales]: old halves to the start of the new halves
            half, new_half = old.shape[0] // 2, new.shape[0] // 2
            rows = list(range(half)) + list(range(new_half, new_half + half))
            w[rows, ...] = _embed(w[rows, ...], old)
        else:
            w = _embed(w, old)
        if key in into:  # no path from a new input channel into an old output channel
            o = into[key]
            index = [slice(None)] * w.ndim
            index[o] = rows if key.startswith(last) else slice(0, old.shape[o])
            index[1 - o] = slice(old.shape[1 - o], None)
            w[tuple(index)] = 0
        # New hyper-latents start at zero under the sharpest old density: no bits until training finds them a use.
        if key.startswith(silent):
            w[old.shape[0] :] = 0
        if key.startswith(bottleneck):
            w[old.shape[0] :] = old[sharpest]
        out[key] = w
    return _wake_new_latents(out, state, fresh, model)


WAKE = 0.1  # new latents enter the synthesis through weights at this fraction of their initial scale


def _wake_new_latents(out: dict, state: dict, fresh: dict, model: Candidate) -> dict:
    """New latents that can learn. Codec v2's widening started them silent (synthesis weights reading them at
    zero, the smallest old gain): a latent that rounds to zero gives zero weights no gradient, zero weights give
    the latent none, and only the rate term acted, so they stayed silent. Here the synthesis reads them through
    small random weights (the distortion reaches them from the first step), they start at each level's median
    old gain (they round to non-zero values), and their entropy model starts as the old channels' average:
    means 0, scales predicted by the mean of the old scale rows (a few bits each, not the ~5 bpp a fresh
    hyper-synthesis row costs)."""
    old_m = state["gain.log"].shape[1]
    if old_m == model.M:
        return out
    name, first = next(
        (n, m) for n, m in model.g_s.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    )
    key, axis = f"g_s.{name}.weight", 0 if isinstance(first, nn.ConvTranspose2d) else 1
    new_inputs = [slice(None)] * fresh[key].ndim
    new_inputs[axis] = slice(old_m, None)
    out[key][tuple(new_inputs)] = WAKE * fresh[key][tuple(new_inputs)]
    out["gain.log"][:, old_m:] = state["gain.log"].median(1, keepdim=True).values
    out["inv_gain.log"][:, old_m:] = state["inv_gain.log"].mean(1, keepdim=True)
    last = f"latent_codec.hyper.h_s.{len(model.latent_codec.hyper.h_s) - 1}."
    for part in ("weight", "bias"):
        w, M = out[last + part], model.M
        w[old_m:M] = 0  # means of the new latents: 0
        w[M + old_m :] = w[M : M + old_m].mean(0, keepdim=True)  # their scales: the old rows' average
    return out


def _embed(fresh: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    fresh[tuple(slice(0, s) for s in old.shape)] = old
    return fresh


def stream_bytes(strings) -> int:
    """Total bytes of a (nested) list of rANS strings, as compress() returns them."""
    if isinstance(strings, (bytes, bytearray)):
        return len(strings)
    return sum(stream_bytes(s) for s in strings)


def decoder_kmacs_per_pixel(model: Candidate, size: int = 256) -> dict:
    """Multiply-accumulates per pixel of the decoder (hyper-synthesis, y context, synthesis) and encoder."""
    counts = {"total": 0}

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):  # includes masked convs
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            counts["total"] += out.numel() // out.shape[0] * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            counts["total"] += inp[0].numel() // inp[0].shape[0] * k

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    x = torch.rand(1, 3, size, size)
    result = {}
    try:
        with torch.no_grad():
            model.eval()
            y = model.g_a(x)
            counts["total"] = 0
            model.g_s(y)
            result["synthesis"] = counts["total"] / size**2 / 1000
            counts["total"] = 0
            model.latent_codec(y)  # forward = every entropy-parameter net the decoder also runs (plus h_a)
            result["entropy"] = counts["total"] / size**2 / 1000
            counts["total"] = 0
            model.g_a(x)
            result["analysis"] = counts["total"] / size**2 / 1000
    finally:
        for h in handles:
            h.remove()
    result["decoder"] = result["synthesis"] + result["entropy"]
    return result
