"""Command line: ``python -m helpers <command> ...``. Errors a user can cause print one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import paths
from .errors import LeafCodecError


def _cmd_manifest(args) -> int:
    from .data import scan_dataset, write_manifest

    records, skipped = scan_dataset(Path(args.data_dir) if args.data_dir else paths.data_dir(), seed=args.seed)
    for rel, why in skipped:
        print(f"skipped {rel}: {why}", file=sys.stderr)
    write_manifest(records, Path(args.out))
    counts = {}
    for r in records:
        counts[r.split] = counts.get(r.split, 0) + 1
    print(f"wrote {args.out}: {len(records)} images, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def _cmd_train(args) -> int:
    import json

    from .train import TrainConfig, train

    cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else TrainConfig()
    for kv in args.set or []:
        key, _, value = kv.partition("=")
        if key not in TrainConfig.__dataclass_fields__:
            raise LeafCodecError(f"unknown training option {key!r}")
        setattr(cfg, key, type(getattr(cfg, key))(json.loads(value)) if getattr(cfg, key) is not None
                else json.loads(value))  # fmt: skip
    last = train(Path(args.run_dir), cfg, max_steps_this_call=args.max_steps,
                 init_from=Path(args.init_from) if args.init_from else None)  # fmt: skip
    print(f"checkpoint: {last}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

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
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LeafCodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
