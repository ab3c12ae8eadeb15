"""This tree's codec timed against another commit's, side by side in one run (``benchmark --against-commit REF``).

The other commit's ``helpers/`` and shipped checkpoints are extracted with ``git archive`` into a temporary folder;
each measurement runs in a fresh interpreter that imports the codec of one tree or the other, and the two trees
alternate, so that a change in the machine's load falls on both. Each run codes through ``LeafCodec`` in-process
(encode, then decode, of the same image at the middle level): 8 PlantVillage test leaves of 256x256 (median of
the 8) and one 12-megapixel image (``benchmark.large_image``; its peak resident memory too). Each tree then
decodes the other's 12-megapixel file: the file format is unchanged if both decode and agree with each other.
``stage_table`` (``benchmark --stages``) splits this tree's compress and decompress of both images into stages
(``helpers.codec.stage_timer``). Prints, never asserts.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import paths

# Runs in a fresh interpreter: argv = tree, mode, file, image paths...; prints one JSON line. Mode "time": encode
# and decode each image, the last file kept in ``file``; mode "decode": decode ``file`` into the .npy image path;
# mode "levels": every image at every level, the file's size and hash and the decoded PSNR.
# It imports the tree's codec before anything imports torch (the codec may set torch's allocator options).
_CHILD = r"""
import json, statistics, sys, time
tree, mode, file, *images = sys.argv[1:]
sys.path.insert(0, tree)
from helpers.codec.leaf_codec import LeafCodec
import numpy as np
from PIL import Image
codec = LeafCodec()
level = codec.default_level
if mode == "decode":
    np.save(images[0], codec.decode(open(file, "rb").read()))
    print(json.dumps({}))
    raise SystemExit
if mode == "levels":
    import hashlib
    rows = []
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for lv in codec.levels:
            data = codec.encode(rgb, lv)
            mse = np.mean((codec.decode(data).astype(float) - rgb) ** 2)
            rows.append({"image": path, "level": lv, "bytes": len(data), "sha": hashlib.sha256(data).hexdigest(),
                         "psnr": float(10 * np.log10(255**2 / max(mse, 1e-10)))})
    print(json.dumps(rows))
    raise SystemExit
enc, dec = [], []
for path in images:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    t = time.perf_counter(); data = codec.encode(rgb, level); enc.append(time.perf_counter() - t)
    t = time.perf_counter(); out = codec.decode(data); dec.append(time.perf_counter() - t)
open(file, "wb").write(data)
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"encode_s": statistics.median(enc), "decode_s": statistics.median(dec), "bytes": len(data),
                  "peak_rss_mb": peak}))
"""


def cpu_description() -> str:
    """The CPU's model name, its widest vector extension and the cores this process may use."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    name = fields.get("model name\t", "unknown CPU").strip()
    flags = set(fields.get("flags\t\t", "").split())
    vector = next((f for f in ("amx_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return f"{name} ({vector}), {len(os.sched_getaffinity(0))} cores"


def extract(ref: str, dest: Path) -> str:
    """``helpers/`` and the shipped checkpoints of commit ``ref`` into ``dest``; the commit's short hash."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=paths.ROOT, capture_output=True, text=True
    )
    if commit.returncode != 0:
        raise SystemExit(f"error: no commit {ref!r} in {paths.ROOT}")
    archive = subprocess.run(["git", "archive", "--format=tar", commit.stdout.strip(), "helpers", "outputs/checkpoints"],
                             cwd=paths.ROOT, capture_output=True, check=True)  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return commit.stdout.strip()


def _child(tree: Path, mode: str, file: Path, *images: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tree), mode, str(file), *images], capture_output=True,
                          text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"error: timing {tree} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cross_check(trees: dict[str, Path], files: dict[str, Path]) -> list[str]:
    """Each tree decodes each tree's 12-megapixel file (``files``); the two decodes of each file compared."""
    lines = []
    for writer, leaf in files.items():
        decoded = []
        for reader_tree in trees.values():
            _child(reader_tree, "decode", leaf, str(leaf.with_suffix(".npy")))
            decoded.append(np.load(leaf.with_suffix(".npy")).astype(int))
        diff = np.abs(decoded[0] - decoded[1])
        lines.append(f"{writer}'s file: both trees decode it; their pixels differ by at most {diff.max()} grey "
                     f"levels ({(diff > 0).mean():.2e} of them)")  # fmt: skip
    return lines


def run(ref: str, rounds: int = 3, n_small: int = 8) -> dict:
    """Times this tree against commit ``ref`` (see the module docstring); prints the table and returns it."""
    from helpers.data.dataset import test_split
    from helpers.study.benchmark import LARGE_SIZE, save_large_image

    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        trees = {"this tree": paths.ROOT, f"commit {extract(ref, other)}": other}
        small = [str(p) for p in test_split(limit=n_small)]
        large = str(save_large_image(Path(tmp)))
        rows, files = [], {label: Path(tmp) / f"{k}.leaf" for k, label in enumerate(trees)}
        large_size = "{}x{}".format(*LARGE_SIZE)
        for r in range(rounds):  # alternate the trees, so that a change of load falls on both
            for label, tree in list(trees.items())[:: 1 if r % 2 == 0 else -1]:
                rows.append(
                    {"tree": label, "size": "256x256", **_child(tree, "time", Path(tmp) / "s.leaf", *small)}
                )
                rows.append({"tree": label, "size": large_size, **_child(tree, "time", files[label], large)})
        cross = _cross_check(trees, files)
    table = pd.DataFrame(rows).groupby(["size", "tree"], sort=False).agg(
        encode_s=("encode_s", "median"), decode_s=("decode_s", "median"), bytes=("bytes", "first"),
        peak_rss_mb=("peak_rss_mb", "max"), runs=("encode_s", "size"))  # fmt: skip
    print(
        f"\n{cpu_description()}; median over {rounds} alternating runs (256x256: median of {len(small)} leaves):"
    )
    print(table.round(3).to_string())
    for size in table.index.get_level_values(0).unique():
        this, that = table.loc[size].iloc[0], table.loc[size].iloc[1]
        print(f"{size}: encode {that.encode_s / this.encode_s:.2f}x, decode {that.decode_s / this.decode_s:.2f}x "
              "faster than the other commit")  # fmt: skip
    print(*cross, sep="\n")
    return {"table": table, "cross": cross, "cpu": cpu_description()}


def stages(repeats: int = 3) -> pd.DataFrame:
    """``stage_table`` of a 256x256 test leaf and the 12-megapixel image."""
    from helpers.data.dataset import test_split
    from helpers.study.benchmark import save_large_image

    with tempfile.TemporaryDirectory() as tmp:
        images = {"256x256": str(test_split(limit=1)[0]), "12 MP": str(save_large_image(Path(tmp)))}
        return stage_table(images, repeats)


def stage_table(images: dict[str, str], repeats: int = 5) -> pd.DataFrame:
    """Seconds per stage of ``compress_file`` and ``decompress_file`` of each image (median of ``repeats`` runs
    after a warm-up, in this process); stages on the tile workers in thread-seconds (see ``stage_timer``)."""
    from helpers.codec import stage_timer
    from helpers.codec.files import compress_file, decompress_file
    from helpers.codec.leaf_codec import LeafCodec

    codec, columns = LeafCodec(), {}
    with tempfile.TemporaryDirectory() as tmp:
        leaf, png = Path(tmp) / "a.leaf", Path(tmp) / "a.png"
        for label, path in images.items():
            runs = {"encode": [], "decode": []}
            for _ in range(repeats + 1):
                with stage_timer.recording() as enc:
                    compress_file(codec, Path(path), leaf, force=True)
                with stage_timer.recording() as dec:
                    decompress_file(codec, leaf, png, force=True)
                runs["encode"].append(enc)
                runs["decode"].append(dec)
            for verb, records in runs.items():
                columns[f"{label} {verb}"] = pd.DataFrame(records[1:]).fillna(0).median()
    table = pd.DataFrame(columns).fillna(0)
    order = [s for s in STAGES if s in table.index] + [s for s in table.index if s not in STAGES]
    print(
        f"\nstages of compress/decompress, seconds ({cpu_description()}; thread-seconds on the tile workers):"
    )
    print(table.loc[order].round(3).to_string())
    return table.loc[order]


STAGES = (
    "read image",
    "analysis (g_a)",
    "hyper-latent z",
    "hyper-synthesis (float64)",
    "rANS",
    "synthesis (g_s)",
    "write file",
    "total",
)


def parity(ref: str, n_images: int = 100) -> pd.DataFrame:
    """Are this tree's files those of commit ``ref``? ``n_images`` test leaves at every level through both trees:
    per level, the mean bytes and PSNR of each, their relative differences and the share of identical files."""
    from helpers.data.dataset import test_split

    images = [str(p) for p in test_split(limit=n_images)]
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        commit = extract(ref, other)
        this, that = (
            pd.DataFrame(_child(tree, "levels", Path(tmp) / "x.leaf", *images))
            for tree in (paths.ROOT, other)
        )
    both = this.merge(that, on=["image", "level"], suffixes=("", "_other"))
    both["identical"] = both.sha == both.sha_other
    table = both.groupby("level").agg(bytes=("bytes", "mean"), bytes_other=("bytes_other", "mean"), psnr=("psnr", "mean"),
                                      psnr_other=("psnr_other", "mean"), identical=("identical", "mean"))  # fmt: skip
    table["bytes_diff_%"] = 100 * (table.bytes / table.bytes_other - 1)
    table["psnr_diff_%"] = 100 * (table.psnr / table.psnr_other - 1)
    print(f"\nthis tree against commit {commit}: {len(images)} test leaves at every level (mean per level)")
    print(table.round(4).to_string())
    print(f"identical files: {both.identical.mean():.1%}")
    return table
