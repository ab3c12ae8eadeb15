"""Shipped checkpoints: loading one, the weights hash that files record, and the shipped tunes.

A shipped checkpoint is a dict ``{"name", "architecture", "model", "config", "step", "weights_sha256"}``: the
weights with the rANS tables built, the architecture's name and configuration (``architectures.build``; a
checkpoint without one is a ``leaf-hyperprior``, as every checkpoint before codec v3), and the SHA-256 of the
weights, whose first 8 bytes every ``.leaf`` file records beside the model's name, so that a file is never
decoded with other weights. ``helpers.training.shipping`` writes them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from helpers import paths
from helpers.codec.architectures import build
from helpers.codec.errors import CheckpointError
from helpers.codec.gain_hyperprior import LEAF_HYPERPRIOR
from helpers.codec.models import CodingModel, load_error_detail

REQUIRED_KEYS = {"name", "model", "config", "weights_sha256"}
DEFAULT_ARCHITECTURE = LEAF_HYPERPRIOR  # what a checkpoint that names none holds


def weights_hash(state_dict: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if torch.is_tensor(t):
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# The shipped checkpoints, by tune: ``--tune`` picks one for encoding; a file's recorded model name picks the
# one that decodes it. ``high`` is codec v3 (N = 64, M = 320, ten levels, half its crops from photos): behind
# today's model on leaves at low rates, ahead on photos and above today's top level (MODEL_CARD_v3.md).
TUNES = {
    "mse": ("leaf-hyperprior", paths.SHIPPED_CHECKPOINT),
    "perceptual": ("leaf-hyperprior-perceptual", paths.PERCEPTUAL_CHECKPOINT),
    "high": ("leaf-hyperprior-v3", paths.V3_CHECKPOINT),
}
TUNE_OBJECTIVES = {
    "mse": "MSE (PSNR-optimised)",
    "perceptual": "LPIPS-tuned (the paper's perceptual objective; its weights in MODEL_CARD_perceptual.md)",
    "high": "MSE, codec v3: photos and high quality, ten levels (MODEL_CARD_v3.md)",
}


def tune_checkpoint(tune: str) -> Path:
    """The shipped checkpoint of a tune (a key of ``TUNES``); CheckpointError if it is unknown or missing."""
    if tune not in TUNES:
        raise CheckpointError(f"unknown tune {tune!r}; choose from {', '.join(TUNES)}")
    path = TUNES[tune][1]
    if not path.is_file():
        raise CheckpointError(f"the {tune} checkpoint is not installed: {path} is missing")
    return path


def tune_of(model_name: str) -> str | None:
    """The tune whose shipped checkpoint carries ``model_name`` (as recorded in a file), else None."""
    return next((tune for tune, (name, _) in TUNES.items() if name == model_name), None)


def load_model(checkpoint: str | Path | None = None) -> tuple[CodingModel, dict]:
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
            f"{path} is not a shipped leaf-codec checkpoint (see helpers.training.shipping.export_checkpoint)"
        )
    if weights_hash(ckpt["model"]) != ckpt["weights_sha256"]:
        raise CheckpointError(f"{path} is damaged: its weights do not match the recorded hash")
    arch = ckpt.get("architecture", DEFAULT_ARCHITECTURE)
    try:
        model = build(arch, ckpt["config"])
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        detail = (
            load_error_detail(exc) if isinstance(exc, RuntimeError) else f"{exc.__class__.__name__}: {exc}"
        )
        raise CheckpointError(f"{path} does not fit the {arch} architecture: {detail}") from None
    model.eval()
    return model, ckpt
