"""The codec's command line: ``compress``, ``decompress`` and ``info`` (``python -m helpers <command>``, or the
product alone: ``python -m helpers.codec <command>``). Errors a user can cause print one line and exit 2.

Standard output closed early (``... | head -1``) is not an error: what was printed up to then stands, the rest of
the lines are dropped, and the work goes on (a batch still writes every file) with its usual exit status. A
standard output that cannot be written (a full device) is: one ``error:`` line, exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from pathlib import Path

from helpers.codec.errors import CheckpointError, LeafCodecError, plural, shown


def _progress(items, desc):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 2 or not sys.stderr.isatty(), mininterval=1)


class _Stdout:
    closed = False  # by the reader (a closed pipe): lines are dropped from then on


def _say(message: str, file=None) -> None:
    """A whole line beside a progress bar (which shares the terminal): tqdm clears the bar, prints, redraws it.
    Flushed at once, so that a closed pipe or a full device is met here (module docstring)."""
    from tqdm.auto import tqdm

    stream = file or sys.stdout
    if stream is sys.stdout and _Stdout.closed:
        return
    try:
        tqdm.write(message, file=stream)
        stream.flush()
    except OSError as exc:
        _output_failed(stream, exc)


def _output_failed(stream, exc: OSError) -> None:
    """A write to ``stream`` failed: a closed pipe quietly drops the rest; anything else is an error. Either
    way the stream is pointed at /dev/null, so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    if isinstance(exc, BrokenPipeError):
        if stream is sys.stdout:
            _Stdout.closed = True
        return
    if stream is sys.stdout:
        raise LeafCodecError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _batch_outputs(inputs, out, out_dir, suffix, verb):
    """(source, destination) pairs for the single-file (-o) and batch (--out-dir) forms; no output may be an
    input (``_refuse_inputs_as_outputs``). The --out-dir folder is not created here (``_made_folder``)."""
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
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise LeafCodecError(f"--out-dir {shown(out_dir)} is a file, not a folder")
    pairs = [(Path(i), out_dir / (Path(i).stem + suffix)) for i in inputs]
    first = {}
    for src, dst in pairs:
        if dst in first:
            raise LeafCodecError(
                f"{shown(first[dst])} and {shown(src)} share the file name stem {shown(src.stem)}; both would "
                f"be written to {shown(dst)} (rename one, or code them in two runs)"
            )
        first[dst] = src
    return pairs


class _made_folder:
    """``with _made_folder(dir):`` creates the --out-dir folder (and its parents) when the work starts, and
    removes what it created if it is still empty at the end (every input failed)."""

    def __init__(self, folder):
        self.folder, self.made = None if folder is None else Path(folder), []

    def __enter__(self):
        if self.folder is None:
            return self
        missing = [p for p in (self.folder, *self.folder.parents) if not os.path.lexists(p)]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LeafCodecError(
                f"cannot create output folder {shown(self.folder)}: {exc.strerror or exc}"
            ) from None
        self.made = missing  # deepest first
        return self

    def __exit__(self, *exc):
        for p in self.made:
            try:
                p.rmdir()  # only if empty
            except OSError:
                break


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
    from helpers.codec.fileio import leftover_temporaries

    failures = 0
    for src, dst in _progress(pairs, desc):
        for tmp in leftover_temporaries(dst):
            _say(f"note: {shown(tmp)} was left by an interrupted run; delete it", sys.stderr)
        notes = []
        try:
            with _tile_bar():
                message = work(src, dst, notes)
            _say(message)
        except LeafCodecError as exc:
            failures += 1
            _say(f"error: {shown(src)}: {_one_line(exc)}", sys.stderr)
            continue
        for note in notes:  # only once the file is written: an error stays the one line about its input
            _say(f"note: {shown(src)}: {note}", sys.stderr)
    return 2 if failures else 0


@contextlib.contextmanager
def _tile_bar():
    """A progress bar over the transform tiles of a large image (a 12 MP photo takes seconds, 64 MP tens of
    seconds), on a terminal only."""
    if not sys.stderr.isatty():
        yield
        return
    from tqdm.auto import tqdm

    from helpers.codec import tiling

    bars = {}

    def tick(what: str, done: int, total: int) -> None:
        if total < TILE_BAR_MIN:
            return
        if what not in bars:  # one bar per stage, made at its first tile
            bars[what] = tqdm(total=total, desc=what, unit="tile", leave=False, mininterval=0.5)
        bars[what].update(done - bars[what].n)

    try:
        with tiling.progress(tick):
            yield
    finally:
        for bar in bars.values():
            bar.close()


TILE_BAR_MIN = 8  # transform tiles (512x512 pixels each): images from about 2 megapixels get a bar

_PREFIXES = "KMGT"
# budget.DEFAULT_MAX_MEMORY as --max-memory's default; written out, because budget imports PyTorch and building
# the parser must not (``info`` is light). tests/test_hardening.py checks that the two agree.
DEFAULT_MAX_MEMORY_TEXT = "2G"
BYTE_UNITS = "K, M, G = KiB, MiB, GiB (1024, 1024^2, 1024^3 bytes); KB, MB, GB = 1000, 1000^2, 1000^3 bytes"


def _size(text: str, unit: int, what: str) -> int:
    """``1500000``, ``64M``, ``2G``: a finite count of at least 1, fractions rounded down. ``unit`` 1000: a pixel
    count (K, M, G, T are powers of 1000); 1024: a size in bytes, whose units (any case) are those of GNU tools:
    K, KiB = 1024 and KB = 1000, and so on for M, G, T (``BYTE_UNITS``); B alone is bytes. Infinity and NaN are
    refused (a limit must be a number; for none, give a huge one)."""
    suffix = r"(?:([kmgt])(ib|b)?|(b))?" if unit == 1024 else r"([kmgt])?"
    m = re.fullmatch(r"\s*(.*?)\s*" + suffix + r"\s*", text, re.IGNORECASE)
    try:
        prefix, kind = m.group(2), (m.group(3) or "").lower() if unit == 1024 else ""
        base = 1000 if kind == "b" else unit
        value = float(m.group(1)) * base ** (1 + _PREFIXES.index(prefix.upper()) if prefix else 0)
    except (ValueError, AttributeError):
        raise LeafCodecError(f"{what} must be a number such as 64M or 2G, not {text!r}") from None
    if not math.isfinite(value):
        raise LeafCodecError(f"{what} must be a finite number such as 64M or 2G, not {text!r}")
    if value < 1:
        noun = "byte" if unit == 1024 else "pixel"
        raise LeafCodecError(f"{what} must be at least 1 {noun}, not {text!r}")
    return int(value)


def _codec(args, backend: str = "torch", checkpoint=None):
    from helpers.codec.leaf_codec import LeafCodec

    path = checkpoint or args.checkpoint
    if path is not None and Path(path).is_dir():
        raise CheckpointError(
            f"--checkpoint {shown(path)} is a folder; give the checkpoint file (.pth.tar) in it"
        )
    return LeafCodec(checkpoint or args.checkpoint, backend=backend,
                     max_pixels=_size(args.max_pixels, 1000, "--max-pixels"),
                     max_memory=_size(args.max_memory, 1024, "--max-memory"))  # fmt: skip


def _encoder_checkpoint(args):
    """``--checkpoint`` if given, else the shipped checkpoint of ``--tune``."""
    from helpers.codec.checkpoints import tune_checkpoint

    if args.checkpoint and args.tune:
        raise LeafCodecError("give --checkpoint or --tune, not both")
    return args.checkpoint or tune_checkpoint(args.tune or "mse")


class _Decoders:
    """One codec per checkpoint: ``--checkpoint`` if given, else the shipped one whose model wrote the file (a
    function of the file's header, for ``files.decompress_file``)."""

    def __init__(self, args):
        self.args, self.codecs = args, {}

    def __call__(self, header):
        from helpers.codec.checkpoints import TUNES, tune_of

        path = self.args.checkpoint
        if path is None:
            tune = tune_of(header.model_name)
            # A file of another model falls back to the MSE checkpoint, whose check_model says which one it needs.
            path = TUNES[tune][1] if tune and TUNES[tune][1].is_file() else None
        if path not in self.codecs:
            self.codecs[path] = _codec(self.args, self.args.backend, path)
        return self.codecs[path]


def _level_text(level) -> str:
    return f"{level:.4f}".rstrip("0") if isinstance(level, float) else str(level)


def _typed_level(level: float) -> float:
    """A level as printed (``_level_text``: 4 decimals) back on the file's 1/256 grid: 3.0117 is 3.01171875.
    Other values are left as they are for ``check_level`` to refuse (3.3 lies 0.0008 off the grid)."""
    from helpers.codec.container import LEVEL_UNITS

    if not math.isfinite(level):
        return level
    on_grid = round(level * LEVEL_UNITS) / LEVEL_UNITS
    return on_grid if abs(level - on_grid) <= 0.5e-4 + 1e-12 else level


def _cmd_compress(args) -> int:
    from helpers.codec.container import SUFFIX
    from helpers.codec.files import compress_file

    target = args.target_bpp
    if target is not None and not (math.isfinite(target) and target > 0):
        raise LeafCodecError(f"--target-bpp must be a positive finite number, not {target:g}")
    psnr = args.target_psnr
    if psnr is not None and not (math.isfinite(psnr) and psnr > 0):
        raise LeafCodecError(f"--target-psnr must be a positive finite number of dB, not {psnr:g}")
    max_bytes = None if args.max_bytes is None else _size(args.max_bytes, 1024, "--max-bytes")
    max_ratio = _ratio(args.max_ratio)
    pairs = _batch_outputs(args.inputs, args.output, args.out_dir, SUFFIX, "compress")
    codec = _codec(args, checkpoint=_encoder_checkpoint(args))
    # Checked at this entry point, before any file is read: a wrong level refuses the batch as a whole.
    level = None if args.level is None else codec.check_level(_typed_level(args.level))
    region = _region(args, codec)

    def work(src, dst, notes):
        out = compress_file(
            codec, src, dst, level, args.force, max_bytes, target, notes, max_ratio, region, psnr
        )
        if target is not None:
            notes.extend(_unreachable_target(codec, target, out.bpp, out.level))
        if psnr is not None and out.level == codec.levels[-1]:
            notes.append(f"--target-psnr {psnr:g}: the top level gives the best this model can (it may be below "
                         "the target; --tune high goes higher)")  # fmt: skip
        roi = "" if out.roi_share is None else f", region of interest {out.roi_share:.0%} of the image"
        return (f"{shown(src)} -> {shown(dst)}: {plural(out.size, 'byte')}, {out.bpp:.4f} bpp "
                f"(level {_level_text(out.level)}{roi})")  # fmt: skip

    with _made_folder(args.out_dir):
        return _run_batch(pairs, work, "compress")


def _region(args, codec):
    """``--roi`` and ``--background-level`` as a ``files.Region`` (None: uniform quality), checked (by the
    codec's own ``roi.check_background``) before any file is read."""
    if args.roi is None:
        if args.background_level is not None:
            raise LeafCodecError("--background-level needs --roi (the region whose outside it sets)")
        return None
    from helpers.codec.files import Region
    from helpers.codec.importance import ROI_KINDS
    from helpers.codec.roi import check_background

    background = args.background_level
    if background is not None:
        background = _typed_level(background)
        try:
            check_background(background, codec.levels[-1])
        except LeafCodecError as exc:
            raise LeafCodecError(f"--background-level {args.background_level:g}: {exc}") from None
    if args.roi in ROI_KINDS:
        return Region(args.roi, background)
    mask = Path(args.roi)
    if not mask.is_file():
        raise LeafCodecError(f"--roi {shown(args.roi)}: give {', '.join(ROI_KINDS)} or a mask image file")
    return Region(mask, background)


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LeafCodecError(f"--max-ratio must be a number such as 5000, not {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise LeafCodecError(f"--max-ratio must be a finite number of at least 1, not {text!r}")
    return value


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


def _cmd_decompress(args) -> int:
    from helpers.codec.files import decompress_file

    inputs, out = list(args.inputs), args.output
    # Also accept the short form `decompress FILE OUT.png`.
    if out is None and args.out_dir is None and len(inputs) == 2 and inputs[1].lower().endswith(".png"):
        inputs, out = inputs[:1], inputs[1]
    pairs = _batch_outputs(inputs, out, args.out_dir, ".png", "decompress")
    decoder = _Decoders(args)

    def work(src, dst, notes):
        h = decompress_file(decoder, src, dst, force=args.force)
        roi = (
            ""
            if h.roi is None
            else f" (region of interest; background level {_level_text(h.roi.background)})"
        )
        return f"{shown(src)} -> {shown(dst)}: {h.width}x{h.height}, level {_level_text(h.level)}{roi}"

    with _made_folder(args.out_dir):
        return _run_batch(pairs, work, "decompress")


def _cmd_info(args) -> int:
    """The header, parsed by the container alone: no model, no PyTorch (a light command)."""
    from helpers.codec.container import bpp, parse, read_file, tile_count
    from helpers.codec.imageio import COLOUR_NAMES

    data = read_file(args.file)
    h = parse(data)
    tiles, streams = tile_count(h.height, h.width), len(h.streams) - 1
    coded = plural(tiles, "coding tile") + ("" if streams == tiles else f", {streams} streams")
    lines = [
        f"file:      {shown(args.file)}",
        f"size:      {h.width}x{h.height} ({COLOUR_NAMES[h.colour]})",
        f"model:     {h.model_name} (weights {h.weights_hash.hex()})",
        f"tune:      {_tune_text(h.model_name)}",
        f"level:     {_level_text(h.level)}"
        + ("" if isinstance(h.level, int) else " (between trained levels)"),
        f"bytes:     {len(data)} (hyper-latent {h.z_len}, latent {h.y_len} in {coded})",
        f"bpp:       {bpp(len(data), h.height, h.width):.4f}",
    ]
    if h.roi is not None:
        lines.append(_roi_text(h, len(data)))
    for line in lines:
        _say(line)
    if h.level < 1:
        _say(f"warning: level {_level_text(h.level)} is below 1, the lowest level of every model: the file is "
             "damaged or forged (decompress refuses it)", sys.stderr)  # fmt: skip
    return 0


def _roi_text(h, size: int) -> str:
    """``info``'s line on a region-of-interest file: the background level, how much of the image is at full
    weight, and the map's bytes."""
    from helpers.codec.container import latent_grid

    weights = h.roi.weights(*latent_grid(h.height, h.width))
    full = float((weights == 255).mean())
    n = len(h.roi.coded)
    return (
        f"roi:       region of interest, {full:.0%} of the image at level {_level_text(h.level)}, background "
        f"level {_level_text(h.roi.background)}; map {plural(n, 'byte')} ({n / size:.1%} of the file)"
    )


# checkpoints.TUNES and TUNE_OBJECTIVES repeated without PyTorch, for ``info`` and ``--tune``'s choices (a test
# checks that they agree): model name -> tune, and tune -> what ``info`` says of it.
_TUNE_OF_MODEL = {
    "leaf-hyperprior": "mse",
    "leaf-hyperprior-perceptual": "perceptual",
    "leaf-hyperprior-v3": "high",
}
_TUNE_OBJECTIVES = {
    "mse": "MSE (PSNR-optimised)",
    "perceptual": "LPIPS-tuned (the paper's perceptual objective; its weights in MODEL_CARD_perceptual.md)",
    "high": "MSE, codec v3: photos and high quality, ten levels (MODEL_CARD_v3.md)",
}
TUNE_NAMES = tuple(_TUNE_OBJECTIVES)


def _tune_text(model_name: str) -> str:
    """What ``info`` says of the tune, without importing the checkpoints module (which imports PyTorch)."""
    tune = _TUNE_OF_MODEL.get(model_name)
    return _TUNE_OBJECTIVES[tune] if tune else "not a shipped model (decode with its checkpoint)"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are errors like any other: one line, exit status 2 (argparse's default prints usage)."""

    argv: list[
        str
    ] = []  # the arguments being parsed (``dispatch``), for the hint about names starting with -

    def error(self, message):
        self.exit(2, f"error: {message}{_dash_hint(_Parser.argv)} (see `{self.prog} --help`)\n")


def _dash_hint(argv) -> str:
    """A file name that starts with a dash reads as an option: say how to write it (``./-x.jpg``)."""
    for a in argv:
        if a.startswith("-") and a != "-" and os.path.lexists(a):
            return f"; {a!r} is read as an option: write a file name that starts with - as ./{a}"
    return ""


def _common_coding_options(s) -> None:
    from helpers.codec.imageio import DEFAULT_MAX_PIXELS

    s.add_argument(
        "--checkpoint",
        help="model checkpoint (default: the shipped one; decoding: the one that wrote the file)",
    )
    s.add_argument("--force", action="store_true",
                   help="overwrite existing outputs (regular files only: never folders, links, devices, FIFOs)")  # fmt: skip
    s.add_argument("--max-pixels", default=f"{DEFAULT_MAX_PIXELS // 10**6}M", metavar="N",
                   help="refuse larger images, e.g. 300M; a finite number, at least 1 (default: %(default)s)")  # fmt: skip
    s.add_argument("--max-memory", default=DEFAULT_MAX_MEMORY_TEXT, metavar="SIZE",
                   help="refuse images whose coding needs more working memory, e.g. 4G; a finite size, at "
                        f"least 1 byte; {BYTE_UNITS} (default: %(default)s)")  # fmt: skip


def add_commands(sub) -> None:
    """The product's commands: compress, decompress, info."""
    from helpers.codec.imageio import DEFAULT_MAX_RATIO

    s = sub.add_parser("compress", help="compress images to .leaf files")
    s.add_argument("inputs", nargs="+", metavar="INPUT")
    s.add_argument("-o", "--output", metavar="OUTPUT_FILE",
                   help="the .leaf file to write, or an existing FOLDER/ (trailing slash) for FOLDER/<stem>.leaf")  # fmt: skip
    s.add_argument("--out-dir", metavar="DIR", help="batch mode: write DIR/<stem>.leaf")
    rate = s.add_mutually_exclusive_group()
    rate.add_argument("--level", "--quality", type=float, dest="level",
                      help="quality level 1..K (default: the middle one); fractional levels in 1/256 steps, "
                           "given exactly (3.01171875) or as printed, to 4 decimals (3.0117)")  # fmt: skip
    rate.add_argument("--target-bpp", type=float, metavar="X",
                      help="the level (fractional if need be) whose file is nearest X bits per pixel (a note says when X "
                           "is beyond every level's rate)")  # fmt: skip
    rate.add_argument("--target-psnr", type=float, metavar="DB",
                      help="the lowest level (fractional if need be) whose decoding reaches DB dB PSNR (with --roi: "
                           "over the region at full weight); each try is decoded, so it takes a few times longer")  # fmt: skip
    rate.add_argument(
        "--max-bytes",
        metavar="N",
        help=f"the highest level whose file has at most N bytes (e.g. 50K; at least 1); {BYTE_UNITS}",
    )
    s.add_argument("--max-ratio", default=f"{DEFAULT_MAX_RATIO}", metavar="R",
                   help="refuse input images of over 1 MP whose file is more than R times smaller than their 24-bit "
                        "RGB pixels (photos: under 100; a decompression bomb or a file cut short: far more; flat "
                        "synthetic images may need more) (default: %(default)s)")  # fmt: skip
    s.add_argument("--tune", choices=TUNE_NAMES,
                   help="mse: the PSNR-optimised model (default; best for leaves below ~0.7 bpp); perceptual: tuned for "
                        "LPIPS (the paper's perceptual objective); high: codec v3, for photos and for quality above "
                        "mse's top level (levels 1-10)")  # fmt: skip
    s.add_argument("--roi", metavar="auto|leaf|lesion|MASK",
                   help="code a region of interest at the level and the rest at --background-level: leaf (the leaf "
                        "or vegetation), lesion (lesions at the level, healthy leaf between), auto (lesion or leaf, "
                        "or uniform where no leaf is found), or MASK, an image of the input's size (white: the "
                        "level, black: the background, grey between)")  # fmt: skip
    s.add_argument("--background-level", type=float, metavar="B",
                   help="with --roi: the level outside the region (default 1; 0 is one step below level 1; never "
                        "above the level)")  # fmt: skip
    _common_coding_options(s)
    s.set_defaults(func=_cmd_compress)

    s = sub.add_parser("decompress", help="decode .leaf files to PNG")
    s.add_argument("inputs", nargs="+", metavar="FILE")
    s.add_argument("-o", "--output", metavar="OUTPUT_PNG",
                   help="the PNG to write, or an existing FOLDER/ (trailing slash) for FOLDER/<stem>.png")  # fmt: skip
    s.add_argument("--out-dir", metavar="DIR", help="batch mode: write DIR/<stem>.png")
    s.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the synthesis in PyTorch or ONNX Runtime (see helpers/study/export.py)")  # fmt: skip
    _common_coding_options(s)
    s.set_defaults(func=_cmd_decompress)

    s = sub.add_parser("info", help="print the header of a .leaf file")
    s.add_argument("file")
    s.set_defaults(func=_cmd_info)


def parser(prog: str, description: str | None):
    """(parser, its subcommands): usage mistakes are one-line errors, like every other."""
    p = _Parser(prog=prog, description=description)
    return p, p.add_subparsers(dest="command", required=True)


def dispatch(p: argparse.ArgumentParser, argv) -> int:
    _Parser.argv = list(argv)
    args = p.parse_args(argv)
    return args.func(args)


def run(handler, argv) -> int:
    """``handler(argv)`` with the command line's error convention: a LeafCodecError is one line and exit status 2."""
    import warnings

    # CompressAI imports torch_geometric, which trips a torch.jit deprecation notice on every run: noise on
    # stderr, where a user should see only our one-line errors.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
    try:
        status = handler(argv)
        _flush_stdout()
        return status
    except LeafCodecError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:  # printed without _say, and its reader gone: stop, as Unix tools do
        _output_failed(sys.stdout, exc)
        return 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _flush_stdout() -> None:
    """What a command printed reaches its reader now, where a failure can still be one line (module docstring)."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _output_failed(sys.stdout, exc)


def main(argv=None) -> int:
    """The product alone: ``python -m helpers.codec compress|decompress|info``."""
    prog = "leaf-codec" if Path(sys.argv[0]).name == "leaf-codec" else "python -m helpers.codec"  # installed
    p, sub = parser(prog, __doc__)
    add_commands(sub)
    return run(lambda a: dispatch(p, a), sys.argv[1:] if argv is None else list(argv))
