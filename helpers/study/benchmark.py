"""Speed and memory benchmark (a script, not a test): ``python -m helpers benchmark``.

Prints encode/decode milliseconds per 256x256 test image and per 12-megapixel image for our codec and the
classical codecs at one mid-rate setting each and the peak memory of the large case (the command then adds the
training step's speed: ``helpers.training.loop.train_step_speed``). Each large-image measurement runs in a fresh
process, so its peak resident memory is its own. Numbers depend on the machine and its load; they are printed,
never asserted.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import paths

# One operating point per codec near 0.4-0.6 bpp on these leaves (JPEG cannot go lower; see 03_rd_curves).
MID_SETTINGS = {"jpeg": 10, "jpeg2000": 50, "webp": 10, "avif": 25, "avif_fast": 25}
CODECS = ("ours", "jpeg", "jpeg2000", "webp", "avif", "avif_fast")
LARGE_SIZE = (4000, 3000)  # width, height: a 12-megapixel phone photo


def _codec(name: str, checkpoint=None):
    """The codec ``name`` at its one benchmark setting (ours: the middle level of ``checkpoint``)."""
    from dataclasses import replace

    from helpers.study.evaluate import learned_codec

    if name == "ours":
        from helpers.codec.leaf_codec import LeafCodec

        leaf = LeafCodec(checkpoint)
        return learned_codec(leaf, levels=[leaf.default_level])
    from helpers.study.baselines import classical_codecs

    return replace({c.name: c for c in classical_codecs()}[name], settings=(MID_SETTINGS[name],))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a child started by a large process would report the parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def measure(name: str, images, checkpoint=None) -> dict:
    """Median encode/decode ms over ``images`` (uint8 RGB arrays, one call each, timed by
    ``evaluate.evaluate``), the mean bpp, and this process's peak resident memory before and after."""
    from helpers.study.evaluate import evaluate

    codec = _codec(name, checkpoint)
    base_rss = peak_rss_mb()
    rows = evaluate([codec], images, quality=False, progress=False)
    return {
        "codec": name, "setting": codec.settings[0], "encode_ms": float(rows.encode_ms.median()),
        "decode_ms": float(rows.decode_ms.median()), "bpp": float(rows.bpp.mean()),
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": base_rss,
    }  # fmt: skip


def large_image(seed: int = 0) -> np.ndarray:
    """A 4000x3000 mosaic of upscaled test leaves: leaf-like content at phone resolution (no real
    full-resolution leaf photos are available offline; see README)."""
    from helpers.data.dataset import read_image, test_split

    w, h = LARGE_SIZE
    tiles = test_split(limit=48)
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (w, h))
    tile = 512
    for i, (y, x) in enumerate((y, x) for y in range(0, h, tile) for x in range(0, w, tile)):
        im = Image.fromarray(read_image(tiles[(i + int(rng.integers(0, 48))) % len(tiles)]))
        canvas.paste(im.resize((tile, tile), Image.BICUBIC), (x, y))
    return np.asarray(canvas)


def save_large_image(folder: Path) -> Path:
    """``large_image()`` as ``folder/large.png``: the 12-megapixel input every large-image timing reads."""
    path = folder / "large.png"
    Image.fromarray(large_image()).save(path)
    return path


def _child(name: str, image_path: str, checkpoint=None) -> dict:
    """Run ``measure`` on one image in a fresh interpreter; return its JSON result."""
    args = [sys.executable, "-m", "helpers.study.benchmark", "--child", name, image_path]
    if checkpoint:
        args += ["--checkpoint", str(checkpoint)]
    proc = subprocess.run(args, cwd=paths.ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"codec": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(n_small: int = 8, large: bool = True, checkpoint=None, against=None, codecs=CODECS) -> dict:
    """Times ``codecs`` (``ours``: ``checkpoint``); ``against`` adds a second checkpoint of ours, timed in the
    same run (row ``against``), so two models' speeds compare on one machine under one load."""
    import pandas as pd

    from helpers.data.dataset import read_image, test_split

    # (row label, codec, checkpoint)
    runs = [(n, n, checkpoint if n == "ours" else None) for n in codecs]
    runs += [("against", "ours", against)] if against else []
    small = [read_image(p) for p in test_split(limit=n_small)]
    res = {"small": pd.DataFrame([{**measure(n, small, c), "codec": label} for label, n, c in runs])}
    print(f"\n256x256 test images ({len(small)} images, median ms):")
    print(res["small"][["codec", "setting", "bpp", "encode_ms", "decode_ms"]].round(3).to_string(index=False))
    if large:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_large_image(Path(tmp))
            res["large"] = pd.DataFrame([{**_child(n, str(path), c), "codec": label} for label, n, c in runs])
        print(f"\n{LARGE_SIZE[0]}x{LARGE_SIZE[1]} image (one run each, fresh process; peak resident memory):")
        print(res["large"].round(3).to_string(index=False))
    return res


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=2, metavar=("CODEC", "IMAGE"))
    p.add_argument("--checkpoint")
    a = p.parse_args()
    from helpers.data.dataset import read_image

    print(json.dumps(measure(a.child[0], [read_image(a.child[1])], checkpoint=a.checkpoint)))
