"""The model a run trains: built untrained from its recipe, and the weights a fine-tuning run starts from (a trained
model's, carried over to other quality levels or into a wider candidate)."""

from __future__ import annotations

import torch

from helpers.codec.errors import CheckpointError
from helpers.codec.gain_hyperprior import GainHyperprior, leaf_hyperprior, upgrade_state_dict
from helpers.codec.models import CodingModel, load_error_detail
from helpers.training.candidates import candidate, is_derived, widen_state
from helpers.training.config import TrainConfig


def build_model(cfg: TrainConfig) -> CodingModel:
    """The untrained model of a run: the shipped architecture, or a bake-off candidate by name."""
    if cfg.arch != "leaf":
        return candidate(cfg.arch, cfg.lambdas)
    model = leaf_hyperprior(cfg.N, cfg.M, cfg.lambdas)
    model.ste_synthesis = cfg.ste_synthesis
    return model


def _log_gains_at(old_log_lambdas: torch.Tensor, old_log_gains: torch.Tensor, log_lambdas: torch.Tensor):
    """Per-channel log-gains at new log-lambdas: piecewise-linear in log-lambda through the old levels,
    extended linearly beyond the first and last ones."""
    i = torch.searchsorted(old_log_lambdas, log_lambdas).clamp(1, len(old_log_lambdas) - 1)
    x0, x1 = old_log_lambdas[i - 1], old_log_lambdas[i]
    t = ((log_lambdas - x0) / (x1 - x0))[:, None]
    return old_log_gains[i - 1] + t * (old_log_gains[i] - old_log_gains[i - 1])


def fine_tune_state(state: dict, model: GainHyperprior) -> dict:
    """``state`` (a trained model's weights) made loadable into ``model`` for fine-tuning.

    The transforms and entropy models carry over unchanged (into a wider candidate: widened, computing what they
    did; ``candidates.widen_state``). When ``model`` has other quality levels (other
    lambdas) than ``state``, its gain vectors start where the trained ones point: interpolated over log-lambda
    between trained levels, extrapolated beyond them (e.g. to add a lower-rate level)."""
    state = dict(upgrade_state_dict(state))
    old = state["lambdas"].double()
    new = model.lambdas.double()
    if not torch.equal(old, new):
        if len(old) < 2 or not bool((old.diff() > 0).all()):
            raise CheckpointError("cannot map quality levels: the trained lambdas are not increasing")
        for key in ("gain.log", "inv_gain.log"):
            state[key] = _log_gains_at(old.log(), state[key].double(), new.log()).float()
        state["lambdas"] = model.lambdas.clone()
    narrower = state["gain.log"].shape[1] < model.M or state["g_a.0.weight"].shape[0] < model.N
    # A wider model starts as the narrower one, exactly; of any other size, load_state_dict says what does not fit.
    return widen_state(state, model) if narrower else state


def load_fine_tune_source(model: CodingModel, state: dict, source: str) -> None:
    """``state`` loaded into ``model`` to fine-tune it. Weights ``model`` lacks (new context networks) keep their
    initialisation, but a trained weight with no place in ``model`` means another architecture: refused, since
    dropping it would train a silently different model."""
    try:
        result = model.load_state_dict(fine_tune_state(state, model), strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source} does not fit this run's architecture: {load_error_detail(exc)}"
        ) from None
    dropped = [k for k in result.unexpected_keys if not is_derived(k)]
    if dropped:
        more = f" and {len(dropped) - 1} more" if len(dropped) > 1 else ""
        raise CheckpointError(
            f"{source} does not fit this run's architecture: its {dropped[0]}{more} have no place in it"
        )
