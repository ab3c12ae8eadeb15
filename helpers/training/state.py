"""Everything a run needs to continue exactly: model, optimisers, grad scaler, step and every random generator,
built and seeded (``build_state``), loaded from a resumed run or a fine-tuning source, and saved (``save_state``)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from helpers.training.config import TrainConfig
from helpers.training.model_setup import build_model, load_fine_tune_source
from helpers.training.precision import resolved_precision
from helpers.training.runs import atomic_save


@dataclass
class TrainState:
    cfg: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    generator: torch.Generator
    device: torch.device
    step: int = 0

    @property
    def main_params(self):
        return self.optimizer.param_groups[0]["params"]


def rng_state(g: torch.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "sampler": g.get_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict, g: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    g.set_state(state["sampler"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume(st: TrainState, resume: dict, rank: int) -> None:
    st.model.load_state_dict(resume["model"])
    st.optimizer.load_state_dict(resume["optimizer"])
    st.aux_optimizer.load_state_dict(resume["aux_optimizer"])
    # Empty from a run without fp16 (e.g. one begun on a CPU, resumed on a GPU): a fresh scale, not an error.
    if resume["scaler"]:
        st.scaler.load_state_dict(resume["scaler"])
    st.step = resume["step"]
    _set_rng_state(resume["rng"][min(rank, len(resume["rng"]) - 1)], st.generator)


def build_state(cfg: TrainConfig, resume, init, rank: int, device) -> TrainState:
    """Model, optimisers and RNGs, seeded, then loaded from the resumed run or the fine-tuning source."""
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    model = build_model(cfg).to(device)
    if resume is None and init is not None:
        load_fine_tune_source(model, init["model"], cfg.init_from)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    # The same mixed precision on every device, only device and dtype differ: float16 autocast always with a
    # GradScaler (tests/test_mixed_precision.py runs CUDA's fp16 path on the CPU).
    precision = resolved_precision(cfg, device)
    st = TrainState(cfg, model, torch.optim.Adam(main, lr=cfg.lr), torch.optim.Adam(aux, lr=cfg.aux_lr),
                    torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                    {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision), g, device)  # fmt: skip
    if resume is not None:
        _resume(st, resume, rank)
    return st


def save_state(st: TrainState, path: Path, world: int, rank: int) -> None:
    """Everything needed to continue exactly: weights, both optimisers, the grad scaler, the step, every RNG."""
    rngs = [None] * world
    state = rng_state(st.generator)
    if world > 1:
        dist.all_gather_object(rngs, state)
    else:
        rngs = [state]
    if rank == 0:
        atomic_save({
            "model": st.model.state_dict(), "optimizer": st.optimizer.state_dict(),
            "aux_optimizer": st.aux_optimizer.state_dict(), "scaler": st.scaler.state_dict(),
            "step": st.step, "rng": rngs, "config": asdict(st.cfg), "world_size": world,
        }, path)  # fmt: skip
