"""A trained model's card (``MODEL_CARD.md`` beside its checkpoint): what it is, how it was trained (from the run's
own logs and configs) and how it measures (from the study's tables). It reads both training and the study, so it
lives above them."""

from __future__ import annotations

from pathlib import Path

from helpers import paths
from helpers.codec.checkpoints import load_model
from helpers.codec.fileio import atomic_write
from helpers.paths import relative_name
from helpers.study.report import machine
from helpers.study.tables import markdown_table
from helpers.training.loss import LPIPS_WEIGHT, MSSSIM_WEIGHT
from helpers.training.runs import run_config, run_stages, stage_logs, training_hours


def _stage_recipe(cfg: dict, log) -> str:
    start = f"fine-tuned from `{cfg['init_from']}`" if cfg.get("init_from") else "from scratch"
    lambdas = ", ".join(f"{lam:g}" for lam in cfg["lambdas"])
    return (
        f"{int(log.steps_in_row.sum())} steps {start}, {training_hours(log):.2f} h; lambdas {lambdas}; random "
        f"{cfg['crop']}x{cfg['crop']} crops with flips, batch {cfg['batch_size']}; Adam lr {cfg['lr']:g} "
        f"(warm-up {cfg['warmup_steps']} steps, cosine decay to {cfg['min_lr']:g} from {cfg['decay_start']:.0%} "
        f"of the steps), gradient clipping {cfg['clip_grad']}, precision {cfg['precision']}"
    )


def write_model_card(bd_table, rd_points, kodak_bd=None, checkpoint=paths.SHIPPED_CHECKPOINT,
                     run_dir=paths.SHIPPED_RUN, out=paths.CHECKPOINTS / "MODEL_CARD.md", codec: str = "ours") -> str:  # fmt: skip
    """Write a checkpoint's model card from its metadata, the training logs of ``run_dir`` (the run that
    produced it) and the study's tables (rows of ``codec``): ``bd_table``/``rd_points`` of the test split,
    ``kodak_bd`` of Kodak."""
    checkpoint = Path(checkpoint)
    _, meta = load_model(checkpoint)
    train_log, _ = stage_logs(run_dir)
    stages = []
    for stage in run_stages(run_dir):
        stages.append(f"  - `{relative_name(stage)}`: "
                      + _stage_recipe(run_config(stage), train_log[train_log.stage == stage.name]))  # fmt: skip
    cfg = run_config(run_dir)
    lambdas = ", ".join(f"{lam:g}" for lam in meta["config"]["lambdas"])
    ours = rd_points[rd_points.codec == codec][["setting", "bpp", "psnr", "ms_ssim", "lpips"]]
    newline = "\n"
    text = f"""# Model card: {meta["name"]}

- **What**: mean-scale Gaussian hyperprior autoencoder with per-level gain vectors (N={meta["config"]["N"]},
  M={meta["config"]["M"]}), {len(meta["config"]["lambdas"])} quality levels in one checkpoint; CompressAI entropy
  models and rANS coder; `.leaf` files (see `helpers/codec/leaf_codec.py`).
- **Weights**: `{checkpoint.name}`, sha256 `{meta["weights_sha256"]}`
  ({checkpoint.stat().st_size / 2**20:.1f} MiB).
- **Data**: PlantVillage training split (`data/split_manifest.csv`, Potato classes held out).
- **Objective**: per image at level k, R + lambda_k * [(1 - alpha) * 255^2 * MSE + alpha * {MSSSIM_WEIGHT:g} * (1 - MS-SSIM)
  + beta * {LPIPS_WEIGHT:g} * LPIPS-alex] with alpha={cfg["alpha"]}, beta={cfg["beta"]} (`helpers/training/loss.py`); lambdas {lambdas}.
- **Training stages** (each in `outputs/runs/`, with its config and logs):
{newline.join(stages)}
- **Trained**: {int(train_log.steps_in_row.sum())} steps, {training_hours(train_log):.2f} h wall-clock in all on
  {machine()} (no GPU).

## Results on the test split (real file sizes, from notebook 03)

{markdown_table(ours.rename(columns={"setting": "level"}), ".4f")}
BD-rate of this model against the classical codecs inside 0.05-1 bpp (negative = fewer bits; `avif` is
libaom 4:4:4 at speed 4, `avif_fast` 4:2:0 at speed 6):

{markdown_table(bd_table[bd_table.codec == codec].drop(columns="codec"))}"""
    if kodak_bd is not None:
        text += f"""
On Kodak (24 photographs, never used in training), inside 0.05-1 bpp:

{markdown_table(kodak_bd[kodak_bd.codec == codec].drop(columns="codec"))}"""
    atomic_write(out, text.encode(), force=True)
    return text
