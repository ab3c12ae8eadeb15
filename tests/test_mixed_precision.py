"""Notebook 02's GPU path (float16 autocast with a GradScaler), run on the CPU (issue 34).

No GPU has run it, so the CPU runs the very same training step (helpers/training: ``state.build_state`` and
``loop.train_step``) with ``precision="fp16"``: what CUDA gets under "auto", with only the device differing. CPU
autocast supports float16 and ``torch.amp.GradScaler("cpu")`` scales, skips and backs off as CUDA's does."""

import inspect
import math

import pytest
import torch

from helpers.training.config import TINY_RECIPE, TrainConfig
from helpers.training.loop import TrainStep, train_step
from helpers.training.loss import RateDistortionLoss
from helpers.training.precision import resolved_precision
from helpers.training.state import TrainState, build_state, rng_state

FP16 = TrainConfig(**{**TINY_RECIPE, "precision": "fp16"})


def _state(cfg=FP16, resume=None) -> TrainState:
    return build_state(cfg, resume, None, 0, torch.device("cpu"))


def _batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return lambda: torch.rand(FP16.batch_size, 3, FP16.crop, FP16.crop, generator=g)


def _weights(st) -> tuple[dict, dict]:
    """(main weights, entropy-bottleneck quantiles), copied."""
    named = {n: p.detach().clone() for n, p in st.model.named_parameters()}
    return ({n: p for n, p in named.items() if not n.endswith(".quantiles")},
            {n: p for n, p in named.items() if n.endswith(".quantiles")})  # fmt: skip


def _changed(before: dict, st) -> set[str]:
    now = dict(st.model.named_parameters())
    return {n for n, p in before.items() if not torch.equal(p, now[n])}


@pytest.fixture
def run(one_torch_thread):
    """A fp16 state with a small scale that grows after two clean steps, and a function doing one step."""
    st = _state()
    st.scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=2)
    net, loss_fn, batches = TrainStep(st.model), RateDistortionLoss(FP16), _batches()
    return st, lambda: train_step(st, net, loss_fn, batches)


def test_fp16_steps_with_a_grad_scaler_train_both_optimisers_on_the_cpu(run):
    st, step = run
    dtypes = []
    st.model.g_a.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    scales = []
    for _ in range(4):
        main, quantiles = _weights(st)
        stats = step()
        assert all(math.isfinite(v) for v in stats.values()), stats
        assert _changed(main, st) == set(main)  # every weight moved: no step was skipped
        assert _changed(quantiles, st) == set(quantiles)  # and the auxiliary optimiser stepped
        scales.append(st.scaler.get_scale())
    assert dtypes == [torch.float16] * 4  # the analysis transform ran in float16 under autocast
    assert scales == [16.0, 32.0, 32.0, 64.0]  # grows by 2 after every 2 steps without inf or NaN
    assert st.step == 4


@pytest.mark.parametrize("where", ["main", "quantiles"])
def test_a_step_with_an_inf_gradient_is_skipped_and_the_scale_backs_off(run, where):
    """An inf in an optimiser's gradients skips that optimiser's step (its weights and Adam state untouched) and
    halves the scale; the other optimiser, whose gradients are finite, still steps; the next step trains."""
    st, step = run
    step()
    main, quantiles = _weights(st)
    names = main if where == "main" else quantiles
    victim = dict(st.model.named_parameters())[next(iter(names))]
    optimiser = st.optimizer if where == "main" else st.aux_optimizer
    adam_steps = optimiser.state[victim]["step"].item()
    hook = victim.register_hook(lambda grad: torch.full_like(grad, math.inf))
    scale = st.scaler.get_scale()
    step()
    hook.remove()
    skipped, stepped = (main, quantiles) if where == "main" else (quantiles, main)
    assert _changed(skipped, st) == set()
    assert optimiser.state[victim]["step"].item() == adam_steps
    assert _changed(stepped, st) == set(stepped)
    assert st.scaler.get_scale() == scale / 2
    before, _ = _weights(st)
    step()
    assert _changed(before, st) == set(before)
    assert st.scaler.get_scale() == scale / 2


def test_the_cuda_branch_is_the_cpu_step_with_only_device_and_dtype_changed(one_torch_thread, monkeypatch):
    # "auto" picks fp16 on CUDA: the state the CPU test above builds with precision="fp16".
    assert resolved_precision(TrainConfig(), torch.device("cuda")) == "fp16"
    assert resolved_precision(TrainConfig(), torch.device("cpu")) == "fp32"
    # Neither building the state nor the step names a device: each uses the state's device and dtype.
    for function in (build_state, train_step):
        source = inspect.getsource(function)
        assert "cuda" not in source and '"cpu"' not in source, function.__name__
    st = _state()
    assert st.scaler.is_enabled() and st.scaler._device == "cpu" and st.amp_dtype == torch.float16
    calls = []
    autocast = torch.autocast

    def recording(device_type, dtype=None, enabled=True, **kw):
        calls.append((device_type, dtype, enabled))
        return autocast(device_type, dtype, enabled, **kw)

    monkeypatch.setattr(torch, "autocast", recording)
    train_step(st, TrainStep(st.model), RateDistortionLoss(FP16), _batches())
    # The step's autocast, then the model's own float32 region for the entropy model (gain_hyperprior.py).
    assert calls == [("cpu", torch.float16, True), ("cpu", None, False)]


def test_a_run_begun_without_fp16_resumes_with_it_and_back(one_torch_thread):
    """A CPU run (fp32: its scaler saved empty) resumed where fp16 is on, as on a GPU, starts a fresh scale
    rather than failing; a fp16 run resumed without fp16 ignores its saved scale."""
    fp32 = TrainConfig(**{**TINY_RECIPE, "precision": "fp32"})
    for saved_cfg, resumed_cfg in ((fp32, FP16), (FP16, fp32)):
        saved = _state(saved_cfg)
        train_step(saved, TrainStep(saved.model), RateDistortionLoss(saved_cfg), _batches())
        resume = {"model": saved.model.state_dict(), "optimizer": saved.optimizer.state_dict(),
                  "aux_optimizer": saved.aux_optimizer.state_dict(), "scaler": saved.scaler.state_dict(),
                  "step": saved.step, "rng": [rng_state(saved.generator)]}  # fmt: skip
        st = _state(resumed_cfg, resume)
        assert st.step == 1 and st.scaler.is_enabled() == (resumed_cfg is FP16)
        if resumed_cfg is FP16:
            assert st.scaler.get_scale() == 2.0**16  # GradScaler's initial scale
        train_step(st, TrainStep(st.model), RateDistortionLoss(resumed_cfg), _batches(1))
        assert st.step == 2
