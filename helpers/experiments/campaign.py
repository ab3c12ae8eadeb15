"""Codec v3 training campaign (issue 19): one long run of the ``v3`` candidate, continued in every session.

    python -m helpers campaign train --minutes 120   # resume (or start) the run; stops cleanly at the deadline
    python -m helpers campaign export [--run R]      # compact float16 weights for git: outputs/runs/bakeoff/v3/
    python -m helpers campaign curve [--run R]       # one learning-curve row (real rANS bytes vs AVIF 4:4:4 s4)
    python -m helpers campaign step-times            # the bare training step against the loop's, side by side
    python -m helpers campaign equal-steps --run R   # run R against v3 at every validation step both reached

Where a session finds the run's resumable state (``last.pth.tar``, ignored by git) it resumes exactly. Where the
machine was replaced and only the committed weights are left, the run continues from them at their step with a
fresh optimiser, and ``machines.csv`` says so.

The run starts from scratch. Two warm starts from the shipped model widened to M = 320 were tried first and
stopped (their logs are beside this run): widened silent (``v3_attempt1_silent``, 4,300 steps) and with the new
latents woken (``v3_attempt2_woken``, 2,300 steps), the 192 new channels carried 0.02 and then 0.000 bpp at the
top level and the top level stayed at 30.2-30.4 dB, the old model's ceiling: the rate term silences new channels
faster than the synthesis learns to read them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from helpers import paths
from helpers.experiments.bakeoff import ANCHOR, RUNS, V3_RECIPE, V3_WEIGHTS, bd, ceiling, rd_points
from helpers.paths import relative_name
from helpers.training.config import TrainConfig
from helpers.training.loop import train
from helpers.training.model_setup import build_model
from helpers.training.precision import cpu_model
from helpers.training.runs import append_csv, atomic_save, load_training_checkpoint
from helpers.training.state import build_state, save_state

NAME = "v3"
RUN = RUNS / NAME
WEIGHTS = V3_WEIGHTS  # committed; the resumable state (optimisers, RNGs) stays on the machine
CURVE = RUN / "learning_curve.csv"
# The schedule spans many sessions: a constant rate with a late cosine decay; later sessions may move
# ``steps``/``decay_start`` (resume overrides) once the curve flattens.
RECIPE = {"arch": NAME, **V3_RECIPE}


def _from_committed_weights() -> None:
    """Rebuilds a resumable state from the committed float16 weights: same step, fresh optimisers and RNGs."""
    saved = torch.load(WEIGHTS, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict({**saved["config"], "warm_from": saved["step"]})
    st = build_state(cfg, None, None, 0, torch.device("cpu"))
    # Files written before session 11 also held the buffers in float16, which zeroed the 1e-9 likelihood bounds
    # (an infinite loss at once): such lossy buffers give way to the model's own constants.
    buffers = {n for n, _ in st.model.named_buffers()}
    state = st.model.state_dict()
    state.update({k: v.float() if v.dtype == torch.float16 else v for k, v in saved["model"].items()
                  if not (k in buffers and v.dtype == torch.float16)})  # fmt: skip
    st.model.load_state_dict(state)
    st.step = saved["step"]
    save_state(st, RUN / "last.pth.tar", 1, 0)
    append_csv(RUN / "machines.csv", {"time": time.strftime("%Y-%m-%d %H:%M"), "step": st.step, "cpu": cpu_model(),
                                      "threads": torch.get_num_threads(), "fp32_s": "", "bf16_s": "",
                                      "precision": f"resumed from committed weights, fresh optimiser ({cfg.warmup_steps}-step warmup)"})  # fmt: skip


def train_for(minutes: float, schedule: dict | None = None) -> None:
    """Resume (or start) the run until ``minutes`` have passed; ``schedule`` moves its ``steps`` and
    ``decay_start`` (where the cosine decay begins, as a fraction of ``steps``) once the curve flattens."""
    deadline = time.time() + 60 * minutes
    schedule = schedule or {}
    if not (RUN / "last.pth.tar").exists() and WEIGHTS.exists():
        _from_committed_weights()
    if (RUN / "last.pth.tar").exists():
        train(RUN, overrides=schedule, progress=False, deadline=deadline)
    else:
        train(RUN, TrainConfig(), overrides={**RECIPE, **schedule}, progress=False, deadline=deadline)


def export(run: str | None = None) -> None:
    """A run's weights in float16 (a few MB): what git keeps of it between sessions (default: the campaign's)."""
    folder, out = (RUN, WEIGHTS) if run is None else (RUNS / run, RUNS / run / WEIGHTS.name)
    ckpt = load_training_checkpoint(folder / "last.pth.tar")
    buffers = {n for n, _ in build_model(TrainConfig.from_dict(ckpt["config"])).named_buffers()}
    # Parameters in float16; buffers (bounds as small as 1e-9, rANS tables) stay exact.
    model = {
        k: v.half() if v.is_floating_point() and k not in buffers else v for k, v in ckpt["model"].items()
    }
    atomic_save({"model": model, "config": ckpt["config"], "step": ckpt["step"]}, out)
    print(f"{relative_name(out)}: step {ckpt['step']}, {out.stat().st_size / 2**20:.1f} MiB")


def campaign_hours(run: str = NAME) -> float:
    """Wall-clock hours of a run's steps (each log row covers the steps since the one before)."""
    return hours_to(run, 2**62)


def curve_row(run: str = NAME, n_leaves: int = 12) -> dict:
    """Steps, CPU-hours, BD-rate vs AVIF 4:4:4 speed 4 on validation leaves (real rANS streams), top-level PSNR
    and the unquantised ceiling on test leaves, appended to the run's learning curve (``run``: this campaign's,
    or another run folder of the bake-off, e.g. a candidate trained on the campaign's recipe)."""
    points = rd_points([run], "leaves", n_leaves)
    anchor, ours = points[points.codec == ANCHOR], points[points.codec == run]
    ceil = ceiling([run]).iloc[0]
    row = {"time": time.strftime("%Y-%m-%d %H:%M"), "steps": int(ours.step.iloc[0]),
           "cpu_hours": round(campaign_hours(run), 2), "cpu": cpu_model(), "val_leaves": n_leaves,
           "bd_psnr_vs_avif_pct": round(bd(anchor, ours, "psnr"), 1),
           "bd_msssim_db_vs_avif_pct": round(bd(anchor, ours, "ms_ssim_db"), 1),
           "top_psnr": round(float(ours.psnr.max()), 2), "top_bpp": round(float(ours.bpp.max()), 3),
           "ceiling_psnr_unquantised": round(float(ceil.psnr_unquantised), 2)}  # fmt: skip
    append_csv(RUNS / run / CURVE.name, row)
    return row


def hours_to(run: str, step: int) -> float:
    """Wall-clock hours a run took to reach ``step``."""
    log = pd.read_csv(RUNS / run / "train_log.csv")
    log = log[log.step <= step]
    return float((log.sec_per_step * log.step.diff().fillna(log.step.iloc[0])).sum() / 3600)


def equal_steps(run: str, against: str = NAME) -> pd.DataFrame:
    """``run`` against ``against`` at every validation step both reached (the training loop's own validation:
    the same leaves and levels, estimated bits): BD-rate in PSNR inside the study's window, each one's top-level
    PSNR and the hours each took to get there (on the machines named in their ``machines.csv``)."""
    logs = {r: pd.read_csv(RUNS / r / "val_log.csv") for r in (run, against)}
    rows = []
    for step in sorted(set(logs[run].step) & set(logs[against].step)):
        a, b = (logs[r][logs[r].step == step].sort_values("level") for r in (against, run))
        rows.append({"step": step, "bd_psnr_pct": bd(a, b, "psnr"), f"top_psnr_{run}": b.psnr.iloc[-1],
                     f"top_psnr_{against}": a.psnr.iloc[-1], f"hours_{run}": hours_to(run, step),
                     f"hours_{against}": hours_to(against, step)})  # fmt: skip
    return pd.DataFrame(rows)


def new_channel_bits(n_leaves: int = 4) -> pd.DataFrame:
    """Estimated bpp per level carried by the latent channels beyond the shipped model's M (128): the check
    that the widened channels woke up."""
    from helpers.experiments.bakeoff import _to_tensor, load_candidate, validation_images

    model, _ = load_candidate(NAME)
    old_m = load_training_checkpoint(paths.SHIPPED_CHECKPOINT)["config"]["M"]
    imgs = validation_images(n_leaves)["leaves"]
    rows = []
    with torch.no_grad():
        for level in range(model.num_levels):
            bits = np.zeros(2)
            for img in imgs:
                x = _to_tensor(img)
                lik = model.latent_codec(model.gain(model.g_a(x), level))["likelihoods"]["y"]
                per_channel = -torch.log2(lik).sum((0, 2, 3))
                bits += [per_channel[:old_m].sum().item(), per_channel[old_m:].sum().item()]
            px = len(imgs) * imgs[0].shape[0] * imgs[0].shape[1]
            rows.append({"level": level + 1, "old_bpp": bits[0] / px, "new_bpp": bits[1] / px})
    return pd.DataFrame(rows)


def step_times(steps: int = 6) -> dict:
    """Seconds per training step of this run's recipe on this machine: the bare step (one fixed batch, so
    no sampling) against the loop's (crops sampled and augmented from the uint8 arrays), alternately."""
    import statistics

    from helpers.training.batches import build_data
    from helpers.training.loop import TrainStep, train_step
    from helpers.training.loss import RateDistortionLoss
    from helpers.training.precision import alternate_seconds, resolve_precision

    cfg = TrainConfig.from_dict(RECIPE)
    st = build_state(cfg, None, None, 0, torch.device("cpu"))
    resolve_precision(st, RUN, log=False)
    sampler, _ = build_data(cfg, paths.data_dir(), paths.MANIFEST, st.generator, progress=False)
    net, loss_fn, batch = TrainStep(st.model), RateDistortionLoss(cfg), sampler()
    sources = {"bare": lambda: batch, "loop": sampler}
    times = alternate_seconds(
        {k: lambda s=s: train_step(st, net, loss_fn, s) for k, s in sources.items()}, steps
    )
    row = {"time": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
           "precision": "bf16" if st.amp_dtype is not None else "fp32",
           **{f"{k}_s_per_step": round(statistics.median(v), 3) for k, v in times.items()}}  # fmt: skip
    append_csv(RUN / "step_times.csv", row)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers campaign")
    p.add_argument("what", choices=("train", "export", "curve", "new-bits", "step-times", "equal-steps"))
    p.add_argument("--minutes", type=float, default=60.0, help="train: stop after this long (resumable)")
    p.add_argument(
        "--run",
        default=NAME,
        help="curve, equal-steps, export: the run folder under outputs/runs/bakeoff (default: v3)",
    )
    p.add_argument("--steps", type=int, help="train: move the schedule's last step")
    p.add_argument(
        "--decay-start", type=float, help="train: where the cosine decay begins, a fraction of steps"
    )
    args = p.parse_args(argv)
    if args.what == "train":
        schedule = {"steps": args.steps, "decay_start": args.decay_start}
        train_for(args.minutes, {k: v for k, v in schedule.items() if v is not None})
    elif args.what == "export":
        export(None if args.run == NAME else args.run)
    elif args.what == "curve":
        print(pd.DataFrame([curve_row(args.run)]).to_string(index=False))
    elif args.what == "equal-steps":
        table = equal_steps(args.run)
        table.to_csv(RUNS / args.run / f"equal_steps_vs_{NAME}.csv", index=False)
        print(table.round(2).to_string(index=False))
    elif args.what == "step-times":
        print(step_times())
    else:
        print(new_channel_bits().round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
