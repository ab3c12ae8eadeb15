"""Writes the golden .leaf files and the PNG each decodes to (run once, by the commit named in README.md here).

    PYTHONPATH=. python tests/golden/write_golden.py              # every case
    PYTHONPATH=. python tests/golden/write_golden.py NAME ...     # only these (a new model's cases)

The sources are synthetic (tests/codec_samples.py), so nothing from the data sets is committed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codec_samples import synthetic_leaf  # noqa: E402

HERE = Path(__file__).resolve().parent
# name -> (source image, compress arguments)
CASES = {
    "leaf_level1": ("leaf", ["--level", "1"]),
    "leaf_level4": ("leaf", ["--level", "4"]),
    "leaf_level7": ("leaf", ["--level", "7"]),
    "grey_level4": ("grey", ["--level", "4"]),
    "multitile_level3": (
        "wide",
        ["--level", "3"],
    ),  # 1100 px wide: two 1024-px coding tiles, three 512-px ones
    "perceptual_level4": ("leaf", ["--level", "4", "--tune", "perceptual"]),
    # codec v3 (issue 35): a level both models have, and its top level, above the MSE model's
    "v3_level4": ("leaf", ["--level", "4", "--tune", "high"]),
    "v3_level10": ("leaf", ["--level", "10", "--tune", "high"]),
    "v3_multitile_level6": ("wide", ["--level", "6", "--tune", "high"]),
    # region of interest (format version 3, issue 31): a user's three-valued mask; v3 on two coding tiles with
    # the leaf map and a background below level 1. Written by the commit that introduced version 3; this encoder
    # writes version 4 for them (only the map's coding differs).
    "roi_level6": ("leaf", ["--level", "6", "--roi", str(HERE / "source_mask.png")]),
    "v3_roi_multitile_level8": (
        "wide",
        ["--level", "8", "--tune", "high", "--roi", "leaf", "--background-level", "0"],
    ),
    # format version 4 (the map context-coded): the same mask as roi_level6, and the lesion map on two tiles
    "v4_roi_level6": ("leaf", ["--level", "6", "--roi", str(HERE / "source_mask.png")]),
    "v4_roi_lesion_multitile_level5": (
        "wide",
        ["--level", "5", "--roi", "lesion", "--background-level", "0.5"],
    ),
}


def sources() -> dict[str, np.ndarray]:
    leaf = synthetic_leaf(7, 96)[:, :80]  # 96x80: not a multiple of the model's stride
    grey = synthetic_leaf(8, 64).mean(2).round().astype(np.uint8)
    wide = np.concatenate([synthetic_leaf(9, 64)] * 18, axis=1)[:40, :1100]
    mask = np.zeros((96, 80), np.uint8)  # the leaf's: white on the left, grey in a band on the right
    mask[:, :40], mask[30:60, 40:] = 255, 128
    return {"leaf": leaf, "grey": grey, "wide": wide, "mask": mask}


def main(names=None) -> None:
    for name, img in sources().items():
        Image.fromarray(img).save(HERE / f"source_{name}.png")
    for name, (source, args) in CASES.items():
        if names and name not in names:
            continue
        leaf, png = HERE / f"{name}.leaf", HERE / f"{name}.png"
        run = [sys.executable, "-m", "helpers"]
        subprocess.run(
            [*run, "compress", HERE / f"source_{source}.png", "-o", leaf, *args, "--force"], check=True
        )
        subprocess.run([*run, "decompress", leaf, "-o", png, "--force"], check=True)
        print(name, leaf.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
