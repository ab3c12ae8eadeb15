"""Codec v2 bake-off (issue 9): train every candidate of ``helpers.training.candidates`` from scratch on the same data for
the same number of steps, then measure each with real rANS bytes on validation images against AVIF 4:4:4 speed 4.

    python -m helpers bakeoff train [--steps N] [--only NAME ...]   # resumable, one run folder per candidate
    python -m helpers bakeoff points [--start warm] [--set photos]  # real files of validation images
    python -m helpers bakeoff summary [--large]                     # -> outputs/tables/bakeoff.{csv,md}
    python -m helpers bakeoff ceiling [--start warm] [--only NAME]  # PSNR of the transforms unquantised
    python -m helpers bakeoff transform-speed [--only NAME ...]     # seconds of the transforms (v3 vs dwsep)

``--start`` says where the runs begin: ``scratch`` (``RECIPE``), ``warm`` (the shipped model, ``WARM_RECIPE``) or
``fork`` (codec v3's campaign weights, ``FORK_RECIPE``: v3's entropy-model bake-off on its trained transforms) or
``campaign`` (from scratch on the v3 campaign's recipe, to compare with v3 at equal steps: the dwsep transforms).

Every point is a real ``.leaf`` file: each run's weights are exported as a codec checkpoint and measured by the
study's evaluation loop (``helpers.study.evaluate``) beside the study's AVIF 4:4:4 speed 4, inside its BD window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers import paths
from helpers.codec.checkpoints import load_model
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.models import pad_to_stride
from helpers.data.dataset import load_array, photo_split, read_image, read_manifest, split_paths, test_split
from helpers.measures.metrics import RATE_WINDOW, bd_rate, psnr
from helpers.study.baselines import Codec, classical_codecs
from helpers.study.evaluate import evaluate, learned_codec, mean_by_setting
from helpers.study.tables import replace_rows, save_table
from helpers.training.candidates import CANDIDATES, candidate, decoder_kmacs_per_pixel
from helpers.training.config import TrainConfig
from helpers.training.loop import train
from helpers.training.shipping import write_shipped

RUNS = paths.OUTPUTS / "runs" / "bakeoff"
# Ten levels from ~0.03 bpp up to archival quality (lambda on 255^2 * MSE, CompressAI's convention).
V2_LAMBDAS = (0.00015, 0.0004, 0.001, 0.0025, 0.006, 0.015, 0.035, 0.08, 0.18, 0.4)
RECIPE = dict(lambdas=V2_LAMBDAS, steps=1000, batch_size=8, crop=128, photo_share=0.5, lr=1e-3,
              decay_start=0.6, warmup_steps=200, checkpoint_every=250, log_every=50, val_every=1000)  # fmt: skip
BAKEOFF = ("base", "channel", "elic", "wide", "dwsep")
# Warm start: the entropy models on the shipped model's trained transforms and hyperprior (N=64, M=128), fine-tuned
# on whole-leaf-sized crops with photos and the v2 levels; the context networks are the only new weights.
WARM_RECIPE = dict(lambdas=V2_LAMBDAS, steps=600, batch_size=4, crop=256, photo_share=0.5, lr=2e-4,
                   decay_start=0.25, warmup_steps=50, checkpoint_every=100, log_every=25, val_every=600)  # fmt: skip
WARM = ("base", "channel", "elic")
# The campaign's own recipe (helpers.experiments.campaign), for candidates run from scratch beside v3 at equal steps.
V3_RECIPE = dict(lambdas=V2_LAMBDAS, steps=200_000, batch_size=8, crop=192, photo_share=0.5, lr=1e-3,
                 decay_start=0.9, warmup_steps=500, checkpoint_every=200, log_every=50, val_every=1000,
                 val_images=12)  # fmt: skip
# Fork: codec v3's entropy models compared at the campaign's converged budget. Each contender starts from the
# campaign's weights (transforms and hyperprior; context networks new) and all, v3 itself included, get the same
# further steps at the campaign's crops and levels, so any difference is the entropy model's. 6,000 steps: all
# three (0.19-0.3 s a step on two cores) fit in one session's free CPU-hours (v3 itself had 8,000: flat).
FORK_RECIPE = {**V3_RECIPE, "steps": 6_000, "lr": 1e-4, "decay_start": 0.1}
FORK = ("v3", "v3_channel", "v3_checkerboard")
V3_WEIGHTS = (
    RUNS / "v3" / "weights_fp16.pt"
)  # the campaign's committed weights (helpers.experiments.campaign)
# where runs begin -> (recipe, weights they start from, the candidates run by default)
STARTS = {
    "scratch": (RECIPE, None, BAKEOFF),
    "warm": (WARM_RECIPE, paths.SHIPPED_CHECKPOINT, WARM),
    "fork": (FORK_RECIPE, V3_WEIGHTS, FORK),
    "campaign": (V3_RECIPE, None, ("v3_dwsep",)),
}
SPEED_PAIR = ("v3", "v3_dwsep")  # the paper's claim: depthwise-separable transforms at ~3x fewer MACs
ANCHOR = "avif"  # the study's AVIF 4:4:4 speed 4 (helpers.study.baselines), at the study's qualities
POINTS = paths.RESULTS
PHOTO_CROP = 384  # validation photos are centre-cropped to this size to keep the bake-off quick


def run_dir(name: str, start: str = "scratch") -> Path:
    return RUNS / (name if start == "scratch" else f"{start}_{name}")


def train_all(
    names=BAKEOFF, steps: int | None = None, start: str = "scratch", deadline: float | None = None
) -> None:
    recipe, init, _ = STARTS[start]
    for name in names:
        if deadline is not None and time.time() >= deadline:
            break
        overrides = {**recipe, "arch": name, **({"steps": steps} if steps else {})}
        run = run_dir(name, start)
        if (run / "last.pth.tar").exists():
            overrides = {k: v for k, v in overrides.items() if k in ("steps", "checkpoint_every")}
        print(f"== {run.name}", flush=True)
        train(run, TrainConfig(), overrides=overrides, init_from=init, progress=False, deadline=deadline)


def validation_images(n_leaves: int = 24) -> dict[str, list[np.ndarray]]:
    leaves = load_array(
        split_paths(read_manifest(paths.MANIFEST), "val", paths.data_dir(), n_leaves), progress=False
    )
    photos = []
    for p in photo_split("val"):
        img = read_image(p)
        h, w = img.shape[:2]
        y, x = (h - PHOTO_CROP) // 2, (w - PHOTO_CROP) // 2
        photos.append(np.ascontiguousarray(img[y : y + PHOTO_CROP, x : x + PHOTO_CROP]))
    return {"leaves": [a.transpose(1, 2, 0).copy() for a in leaves], "photos": photos}


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return pad_to_stride(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)


def _to_image(x_hat: torch.Tensor, shape) -> np.ndarray:
    h, w = shape[:2]
    return (x_hat[0, :, :h, :w].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def ceiling(runs, n_leaves: int = 20) -> pd.DataFrame:
    """Mean PSNR on test leaves of each run's transforms at its top level's gains: unquantised (``g_s(g_a(x))``,
    the most any level of these transforms can give) and with the latent rounded."""
    leaves = load_array(test_split(n_leaves), progress=False)
    rows = []
    for run in runs:
        model, step = load_candidate(run)
        top, scores = model.num_levels - 1, {"unquantised": [], "rounded": []}
        with torch.no_grad():
            for img in (a.transpose(1, 2, 0) for a in leaves):
                y = model.gain(model.g_a(_to_tensor(img)), top)
                for name, y_hat in (("unquantised", y), ("rounded", torch.round(y))):
                    x_hat = model.g_s(model.inv_gain(y_hat, top)).clamp(0, 1)
                    scores[name].append(psnr(img, _to_image(x_hat, img.shape)))
        rows.append({"run": run, "steps": step, "leaves": len(leaves), "top_level": top + 1,
                     **{f"psnr_{k}": float(np.mean(v)) for k, v in scores.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def codec_checkpoint(run: str) -> Path:
    """The codec's checkpoint of a run: ``shipped`` is today's model; a run's latest weights are exported next to
    them (``codec.pth.tar``, rANS tables built, ignored by git) whenever they are newer than the export."""
    if run == "shipped":
        return paths.SHIPPED_CHECKPOINT
    last, out = RUNS / run / "last.pth.tar", RUNS / run / "codec.pth.tar"
    if not out.exists() or out.stat().st_mtime < last.stat().st_mtime:
        write_shipped(last, out, name=run)
    return out


def load_candidate(run: str):
    """(model, step) of a run's codec checkpoint (``codec_checkpoint``), in eval mode with its tables built."""
    model, ckpt = load_model(codec_checkpoint(run))
    return model, ckpt.get("step") or 0


def _codecs(leaves: dict[str, LeafCodec]) -> list[Codec]:
    """The study's AVIF 4:4:4 speed 4 (its qualities) and every run's ``LeafCodec`` (by run name), which writes
    ``.leaf`` files."""
    avif = next(c for c in classical_codecs() if c.name == ANCHOR)
    return [avif] + [learned_codec(leaf, name=run) for run, leaf in leaves.items()]


def rd_points(runs, set_name: str, n_leaves: int = 24) -> pd.DataFrame:
    """Mean bpp (of real files), PSNR, MS-SSIM dB and per-call coding times per codec and setting on one
    validation set, through the study's evaluation loop (``evaluate.evaluate``, one thread per image)."""
    images = validation_images(n_leaves)[set_name]
    leaves = {run: LeafCodec(codec_checkpoint(run)) for run in runs}
    per_image = evaluate(_codecs(leaves), images, lpips=False, progress=False)
    points = mean_by_setting(per_image, ["psnr", "ms_ssim_db", "encode_ms", "decode_ms"], std=())
    steps = {run: leaf.step for run, leaf in leaves.items()}
    return points.assign(step=points.codec.map(steps), set=set_name)


def time_large(run: str, level: int = 5) -> dict:
    """Encode and decode seconds of the 12-megapixel benchmark image through the codec (a real file)."""
    from helpers.study.benchmark import large_image

    rgb, leaf = large_image(), LeafCodec(codec_checkpoint(run))
    t0 = time.perf_counter()
    data = leaf.encode(rgb, level)
    t1 = time.perf_counter()
    leaf.decode(data)
    return {"encode_s_12mp": t1 - t0, "decode_s_12mp": time.perf_counter() - t1,
            "bpp_12mp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1])}  # fmt: skip


def _best_times(models: dict, x: torch.Tensor, reps: int) -> dict:
    """(name, "g_a" | "g_s") -> best-of-``reps`` seconds, the models alternated within each repetition so that a
    load on the machine falls on all of them alike."""
    best = {}
    with torch.inference_mode():
        y = {n: m.g_a(x) for n, m in models.items()}
        for _ in range(reps):
            for n, m in models.items():
                for part, f, arg in (("g_a", m.g_a, x), ("g_s", m.g_s, y[n])):
                    t = time.perf_counter()
                    f(arg)
                    best[n, part] = min(best.get((n, part), float("inf")), time.perf_counter() - t)
    return best


def transform_times(names, size: int = 1024, reps: int = 4) -> pd.DataFrame:
    """Wall-clock seconds of each candidate's analysis and synthesis on one ``size``-square image (float32,
    untrained weights: the time does not depend on them) in both memory layouts, beside their kMAC/px."""
    torch.manual_seed(0)
    macs = {n: decoder_kmacs_per_pixel(candidate(n, V2_LAMBDAS)) for n in names}
    rows = []
    for layout, layout_name in (
        (torch.contiguous_format, "contiguous"),
        (torch.channels_last, "channels_last"),
    ):
        x = torch.rand(1, 3, size, size).contiguous(memory_format=layout)
        models = {n: candidate(n, V2_LAMBDAS).eval().to(memory_format=layout) for n in names}
        best = _best_times(models, x, reps)
        rows += [{"candidate": n, "layout": layout_name, "analysis_s": best[n, "g_a"],
                  "synthesis_s": best[n, "g_s"], **{f"{k}_kmac_per_px": v for k, v in macs[n].items()}}
                 for n in names]  # fmt: skip
    return pd.DataFrame(rows).assign(size=size, threads=torch.get_num_threads())


def bd(anchor: pd.DataFrame, test: pd.DataFrame, metric: str) -> float:
    """BD-rate (%) of ``test`` against ``anchor`` inside the study's window; NaN where the curves do not overlap."""
    try:
        return bd_rate(anchor.bpp, anchor[metric], test.bpp, test[metric], rate_range=RATE_WINDOW)
    except ValueError:
        return float("nan")


def summary(points: pd.DataFrame, large: bool = False) -> pd.DataFrame:
    """One row per run: BD-rate vs AVIF 4:4:4 speed 4 and vs today's model on each set, top PSNR, decoder cost."""
    rows = []
    for run, g in points[points.codec != ANCHOR].groupby("codec", sort=False):
        model, step = load_candidate(run)
        row = {"run": run, "candidate": getattr(model, "name", "") or model.architecture, "steps": int(step)}
        for set_name, gs in g.groupby("set"):
            ref = points[points.set == set_name]
            for metric in ("psnr", "ms_ssim_db"):
                row[f"{set_name}_bd_{metric}_vs_avif"] = bd(ref[ref.codec == ANCHOR], gs, metric)
            row[f"{set_name}_bd_psnr_vs_shipped"] = bd(ref[ref.codec == "shipped"], gs, "psnr")
            row[f"{set_name}_top_psnr"] = gs.psnr.max()
        leaves = g[g.set == "leaves"]
        row |= {"encode_ms_256": leaves.encode_ms.median(), "decode_ms_256": leaves.decode_ms.median()}
        row |= {f"{k}_kmac_per_px": v for k, v in decoder_kmacs_per_pixel(model).items()}
        if large:
            torch.set_num_threads(2)
            row |= time_large(run)
        rows.append(row)
    return pd.DataFrame(rows)


def trained_runs(names, start: str) -> list[str]:
    """Today's model ("shipped") and the runs of ``names`` that have weights."""
    return ["shipped"] + [
        run_dir(n, start).name for n in names if (run_dir(n, start) / "last.pth.tar").exists()
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers bakeoff")
    p.add_argument("what", choices=("train", "points", "summary", "ceiling", "transform-speed"))
    p.add_argument(
        "--only", nargs="+", choices=list(CANDIDATES), help="candidates (default: the start's own)"
    )
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--start",
        choices=list(STARTS),
        default="scratch",
        help="where the runs begin: from scratch, the shipped model (warm), codec v3's weights (fork) or from "
        "scratch on v3's campaign recipe (campaign)",
    )
    p.add_argument("--minutes", type=float, default=None, help="train: stop after this long (resumable)")
    p.add_argument("--set", choices=("leaves", "photos"), default="leaves", help="points: validation images")
    p.add_argument("--large", action="store_true", help="summary: also time the 12-megapixel image")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "transform-speed":
        table = transform_times(args.only or SPEED_PAIR)
        save_table(table, "transform_speed", paths.TABLES)
        print(table.round(3).to_string(index=False))
        return 0
    args.only = args.only or list(STARTS[args.start][2])
    if args.what == "train":
        deadline = time.time() + 60 * args.minutes if args.minutes else None
        train_all(args.only, args.steps, args.start, deadline)
    elif args.what == "points":
        runs = trained_runs(args.only, args.start)
        # Other runs' rows stay: a run measured in an earlier session need not be measured again.
        replace_rows(rd_points(runs, args.set), POINTS / f"bakeoff_points_{args.set}.csv")
    elif args.what == "ceiling":
        runs = trained_runs(args.only, args.start)
        table = ceiling(runs)
        save_table(table, "transform_ceiling", paths.TABLES)
        print(table.round(2).to_string(index=False))
    else:
        points = pd.concat([pd.read_csv(p) for p in sorted(POINTS.glob("bakeoff_points_*.csv"))])
        table = summary(points, args.large)
        save_table(table, "bakeoff", paths.TABLES)
        print(table.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
