"""A training run's recipe: ``TrainConfig``, the learning-rate schedule, and how a run's recipe and starting
checkpoints are settled (fresh, resumed, or fine-tuned from another checkpoint)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.codec.errors import CheckpointError
from helpers.codec.models import DEFAULT_LAMBDAS
from helpers.paths import relative_name
from helpers.training.candidates import CANDIDATES
from helpers.training.runs import load_training_checkpoint


@dataclass
class TrainConfig:
    # "leaf" (the shipped model: gain_hyperprior.leaf_hyperprior) or a candidate of helpers.training.candidates
    arch: str = "leaf"
    N: int = 64
    M: int = 128
    lambdas: tuple = DEFAULT_LAMBDAS
    ste_synthesis: bool = True  # synthesis sees rounded latents (straight-through) rather than noisy ones
    alpha: float = 0.0  # MS-SSIM share of the distortion (0: PSNR-optimised codec)
    beta: float = 0.0  # LPIPS weight, times LPIPS_WEIGHT, inside the distortion (0: no perceptual term)
    steps: int = 24000
    batch_size: int = 16
    crop: int = 128
    lr: float = 1e-3  # the seed's 1e-4 does not converge in a CPU budget (see README)
    min_lr: float = 1e-5
    decay_start: float = 0.75  # fraction of steps at constant lr before the cosine decay to min_lr
    warmup_steps: int = 200
    warm_from: int = 0  # step the warmup counts from: a run resumed with a fresh optimiser warms up again
    aux_lr: float = 1e-3
    clip_grad: float = 1.0
    precision: str = "auto"  # auto: fp16+GradScaler on CUDA, bf16 autocast on CPU; or fp32
    channels_last: bool = True
    checkpoint_every: int = 500
    log_every: int = 50
    val_every: int = 1000
    val_images: int = 24
    train_images: int | None = None  # limit (smoke runs)
    photo_share: float = 0.0  # fraction of each batch cropped from natural photos at 1x, 1/2x, 1/4x scale
    seed: int = 0
    init_from: str | None = None  # checkpoint this run was fine-tuned from (set by ``train``; repo-relative)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "lambdas" in known:
            known["lambdas"] = tuple(known["lambdas"])
        return cls(**known)


# A run of seconds that still uses every part of the engine (tests, and notebook 02 in the smoke profile).
TINY_RECIPE = {"N": 8, "M": 8, "steps": 4, "batch_size": 2, "crop": 64, "train_images": 4, "val_images": 2,
               "val_every": 2, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 1, "precision": "fp32"}  # fmt: skip

RESUME_OVERRIDABLE = ("steps", "decay_start", "min_lr", "checkpoint_every", "log_every", "val_every")


def learning_rate(cfg: TrainConfig, step: int) -> float:
    # Fresh Adam moments take large steps at first, so the rate ramps up from the step they were created at.
    ramp = min(1.0, (step - cfg.warm_from + 1) / max(1, cfg.warmup_steps))
    start = int(cfg.decay_start * cfg.steps)
    if step < start:
        return cfg.lr * ramp
    t = min(1.0, (step - start) / max(1, cfg.steps - start))
    return ramp * (cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t)))


def resolve_config(run_dir: Path, cfg, overrides, init_from):
    """The run's recipe and the checkpoints it starts from: ``(cfg, resume, init)``. A resumed run keeps its
    recipe (only RESUME_OVERRIDABLE fields may change); a fine-tuning run without a config keeps the
    architecture and levels of the weights it starts from."""
    last = Path(run_dir) / "last.pth.tar"
    overrides = dict(overrides or {})
    if last.exists():
        resume = load_training_checkpoint(last)
        fixed = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} when resuming {run_dir}")
        return TrainConfig.from_dict({**resume["config"], **overrides}), resume, None
    init = load_training_checkpoint(init_from) if init_from is not None else None
    arch_keys = ("arch", "N", "M", "lambdas")
    inherited = {k: v for k, v in init["config"].items() if k in arch_keys} if init else {}
    if init and init.get("architecture") == "composed":  # a shipped candidate names itself, not its arch
        inherited["arch"] = init["config"].get("name")
        if inherited["arch"] not in CANDIDATES:
            raise CheckpointError(f"{init_from}: its model {inherited['arch']!r} is not a known candidate")
    base = asdict(cfg) if cfg is not None else {**asdict(TrainConfig()), **inherited}
    cfg = TrainConfig.from_dict({**base, **overrides})
    cfg.init_from = relative_name(Path(init_from).resolve()) if init_from is not None else None
    return cfg, None, init
