"""Shipping a trained model: a training checkpoint exported as the codec loads it (``helpers.codec.checkpoints``)."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.codec.checkpoints import weights_hash
from helpers.codec.fileio import atomic_write
from helpers.training.config import TrainConfig
from helpers.training.model_setup import build_model
from helpers.training.runs import load_training_checkpoint


def shipped(model, name: str, step: int | None = None) -> dict:
    """A model as the codec loads it: weights with the rANS tables built, its architecture and configuration,
    and the weights hash that every file it writes records."""
    model.update(force=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return {"name": name, "architecture": model.architecture, "model": state, "config": model.config(),
            "step": step, "weights_sha256": weights_hash(state)}  # fmt: skip


def export_checkpoint(train_checkpoint: dict, name: str = "leaf-hyperprior") -> dict:
    """A training checkpoint's model, shipped (``shipped``)."""
    model = build_model(TrainConfig.from_dict(train_checkpoint["config"]))
    model.load_state_dict(train_checkpoint["model"])
    return shipped(model, name, train_checkpoint.get("step"))


def write_shipped(train_checkpoint: str | Path, out: str | Path, name: str = "leaf-hyperprior") -> dict:
    """Export the training checkpoint at ``train_checkpoint`` and write it (atomically) to ``out``; the export."""
    shipped = export_checkpoint(load_training_checkpoint(Path(train_checkpoint)), name=name)
    atomic_write(Path(out), lambda f: torch.save(shipped, f), force=True)
    return shipped
