"""The training loop: one optimisation step, validation, the step log, and a whole run, resumable exactly and
distributed (DDP) when started by torchrun. The objective is ``loss.py``'s; the recipe ``config.py``'s.

Run with ``python -m helpers train RUN_DIR`` (single process) or
``torchrun --nproc_per_node 2 -m helpers train RUN_DIR`` (DistributedDataParallel; gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from helpers import paths
from helpers.training.batches import build_data
from helpers.training.config import TrainConfig, learning_rate, resolve_config
from helpers.training.loss import RateDistortionLoss, estimated_bpp, psnr_db
from helpers.training.precision import alternate_seconds, resolve_precision
from helpers.training.runs import append_csv, drop_log_rows_after, run_config, run_stages
from helpers.training.state import TrainState, build_state, save_state


# ----- distributed helpers --------------------------------------------------------------------------------
def _dist_setup() -> tuple[int, int]:
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----- one step ---------------------------------------------------------------------------------------------
class TrainStep(nn.Module):
    """Model + aux loss in one forward so DDP synchronises the entropy bottleneck's quantiles too."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, level):
        out = self.model(x, level)
        out["aux"] = self.model.aux_loss()
        return out


def train_step(st: TrainState, net: nn.Module, loss_fn: RateDistortionLoss, sampler) -> dict:
    """One optimisation step on one batch (each image at its own random level); returns scalar statistics."""
    cfg, device = st.cfg, st.device
    for group in st.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, st.step)
    x = sampler().to(device, non_blocking=True)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    level = torch.randint(st.model.num_levels, (x.shape[0],), generator=st.generator).to(device)
    with torch.autocast(device.type, dtype=st.amp_dtype or torch.float32, enabled=st.amp_dtype is not None):
        out = net(x, level)
    losses = loss_fn(out, x, st.model.lambdas[level])
    st.optimizer.zero_grad(set_to_none=True)
    st.aux_optimizer.zero_grad(set_to_none=True)
    st.scaler.scale(losses["loss"] + out["aux"]).backward()
    if cfg.clip_grad:
        st.scaler.unscale_(st.optimizer)
        nn.utils.clip_grad_norm_(st.main_params, cfg.clip_grad)
    st.scaler.step(st.optimizer)
    st.scaler.step(st.aux_optimizer)
    st.scaler.update()
    st.step += 1
    return {"loss": losses["loss"].item(), "bpp": losses["bpp"].mean().item(),
            "psnr": psnr_db(losses["mse"]).mean().item(), "aux": out["aux"].item()}  # fmt: skip


def train_step_speed(steps: int = 6) -> list[dict]:
    """Seconds per step of ``train_step`` (batch 16, 128x128 crops), in float32 vs bfloat16 + channels-last, the
    two taking turns (the first two steps of each only warm up)."""
    calls = {}
    for label, precision, channels_last in (
        ("float32", "fp32", False),
        ("bfloat16 + channels-last", "bf16", True),
    ):
        cfg = TrainConfig(precision=precision, channels_last=channels_last, batch_size=16, crop=128)
        st = build_state(cfg, None, None, 0, torch.device("cpu"))
        net, loss_fn, batch = TrainStep(st.model), RateDistortionLoss(cfg), torch.rand(16, 3, 128, 128)
        calls[label] = lambda st=st, net=net, loss_fn=loss_fn, batch=batch: train_step(
            st, net, loss_fn, lambda: batch
        )
    times = alternate_seconds(calls, rounds=steps - 2, warmup=2)
    return [{"precision": label, "sec_per_step": statistics.median(t)} for label, t in times.items()]


# ----- validation and the log -------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: nn.Module, images: torch.Tensor, device) -> list[dict]:
    """Per-level estimated bpp (from the likelihoods of rounded latents), PSNR and MS-SSIM."""
    from pytorch_msssim import ms_ssim

    model.eval()
    rows = []
    x = images.to(device).float().div(255)
    for k in range(model.num_levels):
        out = model(x, torch.full((x.shape[0],), k, device=device, dtype=torch.long))
        x_hat = out["x_hat"].clamp(0, 1)
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        rows.append({"level": k + 1, "bpp": estimated_bpp(out["likelihoods"], x[0, 0].numel()).mean().item(),
                     "psnr": psnr_db(mse).mean().item(),
                     "ms_ssim": ms_ssim(x_hat, x, data_range=1.0, size_average=True).item()})  # fmt: skip
    model.train()
    return rows


class RunLog:
    """Averages step statistics over ``log_every`` steps into train_log.csv (rank 0 only), with timing."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, end: int, enabled: bool):
        self.path, self.cfg, self.end, self.enabled = Path(run_dir) / "train_log.csv", cfg, end, enabled
        self._reset()

    def _reset(self) -> None:
        self.sums, self.n, self.t0 = {}, 0, time.time()

    def add(self, step: int, stats: dict) -> dict | None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        if step % self.cfg.log_every and step != self.end:
            return None
        row = {"step": step, "lr": learning_rate(self.cfg, step - 1), **{k: v / self.n for k, v in self.sums.items()},
               "sec_per_step": (time.time() - self.t0) / self.n}  # fmt: skip
        if self.enabled:
            append_csv(self.path, row)
        self._reset()
        return row


# ----- the run ----------------------------------------------------------------------------------------------
def _start(run_dir: Path, cfg, overrides, init_from, rank: int, device) -> TrainState:
    """The run's state, resumed where it stopped (rows logged after its checkpoint dropped) or new."""
    cfg, resume, init = resolve_config(run_dir, cfg, overrides, init_from)
    st = build_state(cfg, resume, init, rank, device)
    if resume is not None and rank == 0:  # rows logged after the checkpoint by a killed run are logged again
        for log_name in ("train_log.csv", "val_log.csv"):
            drop_log_rows_after(run_dir / log_name, st.step)
    return st


def _net(st: TrainState, world: int) -> nn.Module:
    net = TrainStep(st.model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[st.device.index] if st.device.type == "cuda" else None
        )
    return net


def train(run_dir: Path, cfg: TrainConfig | None = None, overrides: dict | None = None, data_root: Path | None = None,
          manifest: Path = paths.MANIFEST, max_steps_this_call: int | None = None, init_from: Path | None = None,
          progress: bool = True, deadline: float | None = None) -> Path:  # fmt: skip
    """Train (or resume) the run in ``run_dir``; returns the path of its latest checkpoint.

    ``overrides`` are TrainConfig fields set on top of ``cfg`` (on resume, only RESUME_OVERRIDABLE ones).
    ``init_from`` starts a new run from another checkpoint's weights (fine-tuning). ``max_steps_this_call``
    stops early (the schedule still spans ``cfg.steps``); so does ``deadline`` (a ``time.time()``), with a
    checkpoint at the step it stops.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    rank, world = _dist_setup()
    device = _device(rank)
    st = _start(run_dir, cfg, overrides, init_from, rank, device)
    cfg = st.cfg
    root = Path(data_root) if data_root is not None else paths.data_dir()
    sampler, val_arr = build_data(cfg, root, manifest, st.generator, progress and rank == 0)
    net, loss_fn = _net(st, world), RateDistortionLoss(cfg).to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=list))
    resolve_precision(st, run_dir, log=rank == 0)
    end = cfg.steps if max_steps_this_call is None else min(cfg.steps, st.step + max_steps_this_call)
    log = RunLog(run_dir, cfg, end, enabled=rank == 0)
    bar = tqdm(total=end, initial=st.step, desc="train", disable=not progress or rank != 0, mininterval=5)
    net.train()
    while st.step < end:
        if deadline is not None and time.time() >= deadline:
            end = log.end = st.step + 1  # a session's time is up: this step is the last, logged and saved
        row = log.add(st.step + 1, train_step(st, net, loss_fn, sampler))
        bar.update(1)
        if row is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}")
        if rank == 0 and (st.step % cfg.val_every == 0 or st.step == end):
            for vrow in validate(st.model, val_arr, device):
                append_csv(run_dir / "val_log.csv", {"step": st.step, **vrow})
        if st.step % cfg.checkpoint_every == 0 or st.step == end:
            save_state(st, run_dir / "last.pth.tar", world, rank)
    bar.close()
    if world > 1:
        dist.barrier()
    return run_dir / "last.pth.tar"


def retrain(
    run_dir: Path, out_root: Path, overrides: dict | None = None, data_root: Path | None = None
) -> Path:
    """Train every stage of ``run_dir`` again from scratch into ``out_root/<stage>``, in order, each stage
    fine-tuned from the previous one's result; returns the last stage's checkpoint."""
    previous = None
    for stage in run_stages(run_dir):
        stage_cfg = TrainConfig.from_dict(run_config(stage))
        previous = train(
            Path(out_root) / stage.name, stage_cfg, overrides, data_root=data_root, init_from=previous
        )
    return previous
