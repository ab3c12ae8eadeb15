"""Shipped checkpoints: exporting one from a training checkpoint, the weights hash files record, and loading.

A shipped checkpoint is a dict ``{"name", "model", "config", "step", "weights_sha256"}``: the weights with the
rANS tables built, the architecture (N, M, lambdas), and the SHA-256 of the weights, whose first 8 bytes every
``.leaf`` file records so that a file is never decoded with other weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from . import paths
from .errors import CheckpointError
from .model import LeafHyperprior, load_error_detail

REQUIRED_KEYS = {"name", "model", "config", "weights_sha256"}


def weights_hash(state_dict: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if torch.is_tensor(t):
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_checkpoint(train_checkpoint: dict, name: str = "leaf-hyperprior") -> dict:
    """A shippable checkpoint: weights with the rANS tables built, config, and the weights hash."""
    from .train import TrainConfig, build_model

    cfg = TrainConfig.from_dict(train_checkpoint["config"])
    model = build_model(cfg)
    model.load_state_dict(train_checkpoint["model"])
    model.update(force=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return {
        "name": name,
        "model": state,
        "config": {"N": cfg.N, "M": cfg.M, "lambdas": list(cfg.lambdas)},
        "step": train_checkpoint.get("step"),
        "weights_sha256": weights_hash(state),
    }


def write_shipped(train_checkpoint: str | Path, out: str | Path, name: str = "leaf-hyperprior") -> dict:
    """Export the training checkpoint at ``train_checkpoint`` and write it (atomically) to ``out``; the export."""
    from .fileio import atomic_write
    from .runs import load_checkpoint

    shipped = export_checkpoint(load_checkpoint(Path(train_checkpoint)), name=name)
    atomic_write(Path(out), lambda f: torch.save(shipped, f), force=True)
    return shipped


# The shipped checkpoints, by tune: ``--tune`` picks one for encoding; a file's recorded model name picks the
# one that decodes it.
TUNES = {
    "mse": ("leaf-hyperprior", paths.SHIPPED_CHECKPOINT),
    "perceptual": ("leaf-hyperprior-perceptual", paths.PERCEPTUAL_CHECKPOINT),
}
TUNE_OBJECTIVES = {
    "mse": "MSE (PSNR-optimised)",
    "perceptual": "LPIPS-tuned (the paper's perceptual objective; its weights in MODEL_CARD_perceptual.md)",
}


def tune_checkpoint(tune: str) -> Path:
    """The shipped checkpoint of a tune ("mse" or "perceptual"); CheckpointError if it is unknown or missing."""
    if tune not in TUNES:
        raise CheckpointError(f"unknown tune {tune!r}; choose from {', '.join(TUNES)}")
    path = TUNES[tune][1]
    if not path.is_file():
        raise CheckpointError(f"the {tune} checkpoint is not installed: {path} is missing")
    return path


def tune_of(model_name: str) -> str | None:
    """The tune whose shipped checkpoint carries ``model_name`` (as recorded in a file), else None."""
    return next((tune for tune, (name, _) in TUNES.items() if name == model_name), None)


def load_model(checkpoint: str | Path | None = None) -> tuple[LeafHyperprior, dict]:
    """The model of a shipped checkpoint (default: the one in outputs/checkpoints), in eval mode, and the
    checkpoint dict; CheckpointError with a one-line reason otherwise."""
    path = Path(checkpoint) if checkpoint else paths.SHIPPED_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}") from None
    if not isinstance(ckpt, dict) or not REQUIRED_KEYS <= set(ckpt):
        raise CheckpointError(
            f"{path} is not a shipped leaf-codec checkpoint (see helpers.checkpoints.export_checkpoint)"
        )
    if weights_hash(ckpt["model"]) != ckpt["weights_sha256"]:
        raise CheckpointError(f"{path} is damaged: its weights do not match the recorded hash")
    cfg = ckpt["config"]
    try:
        model = LeafHyperprior(cfg["N"], cfg["M"], tuple(cfg["lambdas"]))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path} does not fit the leaf-hyperprior architecture: {load_error_detail(exc)}"
        ) from None
    model.eval()
    return model, ckpt
