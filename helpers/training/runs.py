"""Training runs on disk: a run folder holds ``config.json``, ``train_log.csv``, ``val_log.csv`` and the
resumable ``last.pth.tar``; a fine-tuning run names the checkpoint it started from (``init_from``), so the runs
that produced a model form a chain of stages.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from helpers import paths
from helpers.codec.errors import CheckpointError
from helpers.codec.fileio import atomic_write


def run_config(run_dir: Path) -> dict:
    """A training run's recipe, as ``train`` wrote it to ``run_dir/config.json``."""
    config = Path(run_dir) / "config.json"
    if not config.is_file():
        raise CheckpointError(f"no training run in {run_dir} (config.json missing)")
    return json.loads(config.read_text())


def run_stages(run_dir: Path) -> list[Path]:
    """The run folders that produced ``run_dir``'s weights, first stage first (each stage was fine-tuned from
    the previous one's checkpoint, recorded as ``init_from`` in its config.json)."""
    stages = [Path(run_dir)]
    while True:
        parent = run_config(stages[0]).get("init_from")
        if not parent:
            return stages
        parent_dir = (paths.ROOT / parent).parent
        if (paths.ROOT / parent).resolve() == paths.SHIPPED_CHECKPOINT.resolve():
            parent_dir = paths.SHIPPED_RUN  # fine-tuned from the shipped weights: the run that made them
        if parent_dir in stages:
            raise CheckpointError(f"training runs form a cycle at {parent_dir}")
        stages.insert(0, parent_dir)


def stage_logs(run_dir: Path) -> tuple:
    """Training and validation logs of every stage of ``run_dir``, one after the other: ``step`` counts from
    the first stage's start, ``stage`` names the run folder, and validation ``level`` is renumbered to the
    final run's levels by lambda (a stage that added a level shifts the numbering)."""
    import pandas as pd

    stages = run_stages(run_dir)
    final_lambdas = [float(v) for v in run_config(run_dir)["lambdas"]]
    train_logs, val_logs, offset = [], [], 0
    for stage in stages:
        lambdas = run_config(stage)["lambdas"]
        t = pd.read_csv(stage / "train_log.csv").assign(stage=stage.name)
        # Each log row covers the steps since the previous one.
        t["steps_in_row"] = t.step.diff().fillna(t.step.iloc[0]).astype(int)
        val_csv = stage / "val_log.csv"  # absent until the first validation
        v = (pd.read_csv(val_csv) if val_csv.exists() else pd.DataFrame(columns=["step", "level"])).assign(
            stage=stage.name
        )
        v["lambda"] = [float(lambdas[k - 1]) for k in v.level]
        v["level"] = [final_lambdas.index(lam) + 1 if lam in final_lambdas else 0 for lam in v["lambda"]]
        t["step"] += offset
        v["step"] += offset
        offset = int(t.step.max())
        train_logs.append(t)
        val_logs.append(v[v.level > 0].astype({"level": int}))
    return pd.concat(train_logs, ignore_index=True), pd.concat(val_logs, ignore_index=True)


def training_hours(train_log) -> float:
    """Wall-clock hours of the steps in a ``stage_logs`` training log."""
    return float((train_log.sec_per_step * train_log.steps_in_row).sum() / 3600)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through the project's one atomic writer: a kill never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f), force=True)


def load_training_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a leaf-codec checkpoint (no model/config entries)")
    return ckpt


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def drop_log_rows_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    if len(kept) < len(rows):
        text = io.StringIO(newline="")
        csv.writer(text).writerows(kept)
        atomic_write(path, text.getvalue().encode(), force=True)
