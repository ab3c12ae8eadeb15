"""Codec v2 and v3 candidates: a wider candidate warm-started from a narrower one computes what the narrower one
did; v3's context-model forks start from v3's weights and stay within the decoder budget."""

import pytest
import torch

from helpers.codec.errors import CheckpointError
from helpers.codec.gain_hyperprior import GainHyperprior, leaf_hyperprior
from helpers.training.candidates import (
    CANDIDATES,
    candidate,
    decoder_kmacs_per_pixel,
    is_derived,
    widen_state,
)
from helpers.training.model_setup import fine_tune_state, load_fine_tune_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LAMBDAS = (0.001, 0.01, 0.1)


@pytest.fixture(scope="module")
def narrow_and_wide():
    """A 'base' candidate with every weight perturbed (so no cross term is zero by chance), widened into 'wide'."""
    torch.manual_seed(0)
    narrow = candidate("base", LAMBDAS).eval()
    with torch.no_grad():
        for p in narrow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    narrow.update()  # built rANS tables: their shapes are the narrow model's
    wide = candidate("wide", LAMBDAS).eval()
    wide.load_state_dict(widen_state(narrow.state_dict(), wide))
    return narrow, wide


def _with_new_channels(old: torch.Tensor, channels: int) -> torch.Tensor:
    """``old`` followed by random extra channels: what the new channels carry must not matter."""
    extra = torch.randn(old.shape[0], channels - old.shape[1], *old.shape[2:])
    return torch.cat([old, extra], 1)


@torch.no_grad()
def test_widened_transforms_compute_the_narrow_ones(narrow_and_wide):
    narrow, wide = narrow_and_wide
    x = torch.rand(1, 3, 64, 64)
    y = narrow.g_a(x)
    torch.testing.assert_close(wide.g_a(x)[:, : narrow.M], y, rtol=1e-4, atol=1e-5)
    silent = torch.cat([y, y.new_zeros(y.shape[0], wide.M - narrow.M, *y.shape[2:])], 1)
    torch.testing.assert_close(wide.g_s(silent), narrow.g_s(y), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wide.gain.log[:, : narrow.M], narrow.gain.log)


@torch.no_grad()
def test_widened_hyperprior_predicts_the_same_means_and_scales(narrow_and_wide):
    narrow, wide = narrow_and_wide
    y = narrow.g_a(torch.rand(1, 3, 64, 64))
    old_h, new_h = narrow.latent_codec.hyper, wide.latent_codec.hyper
    z = old_h.h_a(y)
    wide_z = new_h.h_a(_with_new_channels(y, wide.M))
    torch.testing.assert_close(wide_z[:, : narrow.N], z, rtol=1e-4, atol=1e-5)
    assert not wide_z[:, narrow.N :].any()  # new hyper-latents start silent ...
    p_zero = new_h.entropy_bottleneck._likelihood(torch.zeros(wide.N, 1, 1))[0].flatten()
    old, new = p_zero[: narrow.N], p_zero[narrow.N :]
    assert (new == new[0]).all() and (old == new[0]).any()  # ... under a copy of one old density
    means, scales = old_h.h_s(z).chunk(2, 1)
    wide_means, wide_scales = new_h.h_s(_with_new_channels(z, wide.N)).chunk(2, 1)
    torch.testing.assert_close(wide_means[:, : narrow.M], means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wide_scales[:, : narrow.M], scales, rtol=1e-4, atol=1e-5)


def test_fine_tune_state_widens_and_refuses_to_narrow(narrow_and_wide):
    narrow, wide = narrow_and_wide
    state = fine_tune_state(narrow.state_dict(), wide)
    assert state["g_s.6.weight"].shape == wide.g_s[6].weight.shape
    with pytest.raises(CheckpointError, match="cannot widen g_a.0.weight"):
        widen_state(wide.state_dict(), narrow)


def test_widened_latents_round_to_nonzero_so_their_synthesis_weights_learn(narrow_and_wide):
    """The synthesis weights reading a new latent start at zero; a new latent that rounded to zero everywhere
    would give them no gradient and get none back (codec v2's widening stayed silent that way)."""
    narrow, wide = narrow_and_wide
    wide.train()
    x = torch.rand(2, 3, 64, 64)
    top = torch.full((2,), wide.num_levels - 1)
    out = wide(x, top)
    out["x_hat"].square().sum().backward()
    reading_new = wide.g_s[0].weight.grad[narrow.M :]  # ConvTranspose2d: (in, out, k, k)
    making_new = wide.g_a[-1].weight.grad[narrow.M :]  # the analysis rows that make the new latents
    wide.zero_grad(set_to_none=True)
    wide.eval()
    assert reading_new.abs().sum() > 0 and making_new.abs().sum() > 0


def test_v3_hyper_synthesis_is_bounded_in_width():
    model = candidate("v3", LAMBDAS)
    widths = [
        m.out_channels
        for m in model.latent_codec.hyper.h_s
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    assert model.M == 320 and widths == [192, 192, 640]
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # float16 weights under 10 MB


@pytest.mark.parametrize("name", ["v3_channel", "v3_checkerboard"])
def test_v3_context_models_keep_the_decoder_within_twice_todays_cost(name):
    today = decoder_kmacs_per_pixel(leaf_hyperprior(64, 128, LAMBDAS), size=128)["decoder"]
    light = decoder_kmacs_per_pixel(candidate(name, LAMBDAS), size=128)["decoder"]
    transform, N, M, entropy, hidden, _ = CANDIDATES[name]
    full = decoder_kmacs_per_pixel(GainHyperprior(transform, N, M, entropy, LAMBDAS, hidden), size=128)[
        "decoder"
    ]
    assert light <= 2 * today < full  # the full-size context would break the budget at M = 320


@pytest.mark.parametrize("name", ["v3_channel", "v3_checkerboard"])
def test_a_v3_fork_starts_from_v3s_transforms_and_hyperprior(name):
    torch.manual_seed(0)
    trained = candidate("v3", LAMBDAS).eval()
    with torch.no_grad():  # trained weights: no layer of v3's is at its initialisation
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trained.update()  # a saved v3 carries its rANS tables and constant buffers, which a fork rebuilds or has
    v3 = trained.state_dict()
    fork = candidate(name, LAMBDAS)
    # The training engine's own load, which refuses a trained weight it would drop.
    load_fine_tune_source(fork, v3, "v3")
    missing = [k for k in fork.state_dict() if k not in v3]
    loaded = fork.state_dict()
    shared = ("g_a.", "g_s.", "gain.", "inv_gain.", "latent_codec.hyper.")
    for key in v3:
        if key.startswith(shared) and not is_derived(key):
            assert torch.equal(loaded[key], v3[key]), key
    # Only the context model is new.
    assert missing and all(".hyper." not in k and not k.startswith(("g_a.", "g_s.")) for k in missing)
    # Its parameter nets are residual on the hyperprior's prediction: before any training the fork codes y with
    # exactly v3's means and scales, so the fork starts where v3 is rather than relearning it.
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1])
    with torch.no_grad():
        want, got = trained(x, level)["likelihoods"], fork.eval()(x, level)["likelihoods"]
    torch.testing.assert_close(got["y"], want["y"], rtol=1e-4, atol=1e-6)
