"""The bake-off's candidates (issues 9 and 19) by name, and how one starts from a trained narrower model.

A candidate is a ``helpers.codec.gain_hyperprior.GainHyperprior`` configuration: a transform, N, M, an entropy model and
(optionally) a bound on the hyper-synthesis' hidden width. Trained and exported, it ships through the same
codec path as the shipped model (``python -m helpers compress --checkpoint``).
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import nn

from helpers.codec.errors import CheckpointError
from helpers.codec.gain_hyperprior import GainHyperprior

# name -> (transform, N, M, entropy model[, hidden width of the hyper-synthesis[, light context networks]])
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
    # v3's entropy-model bake-off: forks of the trained v3 (same transforms and hyperprior) with a context model,
    # slimmed so the decoder stays within 2x the shipped model's kMAC/px; and the paper's depthwise-separable
    # transforms at the width they make affordable.
    "v3_channel": ("gdn", 64, 320, "channel", 192, True),
    "v3_checkerboard": ("gdn", 64, 320, "checkerboard", 192, True),
    "v3_dwsep": ("dwsep", 128, 320, "hyperprior", 192),
}


def candidate(name: str, lambdas) -> GainHyperprior:
    """The untrained model of candidate ``name``."""
    transform, N, M, entropy, *extra = CANDIDATES[name]
    options = dict(zip(("hyper_hidden", "light_context"), extra))
    return GainHyperprior(transform, N, M, entropy, lambdas, name=name, **options)


# Rebuilt by update() from the weights (a narrower model's tables have other shapes), or constants every model
# sets itself (the Gaussian conditional's bounds, which live elsewhere in a context model).
DERIVED_BUFFERS = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table", "scale_bound", "bound")


def is_derived(key: str) -> bool:
    """Whether the state-dict entry ``key`` is an rANS table or a constant buffer the model builds itself, not a
    trained weight."""
    return key.rsplit(".", 1)[-1] in DERIVED_BUFFERS


def widen_state(state: dict, model: GainHyperprior) -> dict:
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
        if is_derived(key):
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


def _wake_new_latents(out: dict, state: dict, fresh: dict, model: GainHyperprior) -> dict:
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


def _conv_macs(model: nn.Module, run) -> float:
    """Multiply-accumulates of every (masked, transposed) convolution while ``run()`` runs, per batch item."""
    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
        if isinstance(mod, nn.ConvTranspose2d):
            total[0] += inp[0].numel() // inp[0].shape[0] * k * mod.out_channels
        else:
            total[0] += out.numel() // out.shape[0] * k * mod.in_channels

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def decoder_kmacs_per_pixel(model, size: int = 256) -> dict:
    """Thousands of multiply-accumulates per pixel of the synthesis, the entropy model (everything of a forward
    pass besides the two transforms: hyper-analysis, hyper-synthesis, context networks) and the analysis;
    ``decoder`` = synthesis + entropy. Any ``CodingModel``."""
    model.eval()
    x = torch.rand(1, 3, size, size)
    y = model.g_a(x)
    per_px = size * size * 1000
    analysis = _conv_macs(model, lambda: model.g_a(x)) / per_px
    synthesis = _conv_macs(model, lambda: model.g_s(y)) / per_px
    total = _conv_macs(model, lambda: model(x, torch.zeros(1, dtype=torch.long))) / per_px
    entropy = total - analysis - synthesis
    return {"synthesis": synthesis, "entropy": entropy, "analysis": analysis, "decoder": synthesis + entropy}
