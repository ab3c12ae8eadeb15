"""R-D summaries, BD tables and crossings on synthetic curves with known answers."""

import numpy as np
import pandas as pd
import pytest

from helpers import study


def _rows(codec, bpps, psnrs, with_db_column):
    rows = []
    for setting, (b, p) in enumerate(zip(bpps, psnrs)):
        for image in range(2):
            row = {"image": f"i{image}", "codec": codec, "setting": setting, "bpp": b, "psnr": p,
                   "ms_ssim": 1 - 10 ** (-p / 20), "lpips": 1 / p}  # fmt: skip
            if with_db_column:
                row["ms_ssim_db"] = -10 * np.log10(1 - row["ms_ssim"])
            rows.append(row)
    return rows


@pytest.fixture
def summary():
    bpps = np.array([0.06, 0.12, 0.25, 0.5, 0.9])
    psnr = 30 + 4 * np.log2(bpps / 0.06)
    # One evaluator writes ms_ssim_db, the other does not: the summary must still have it for both.
    per_image = pd.DataFrame(_rows("anchor", bpps, psnr, True) + _rows("test", 0.8 * bpps, psnr, False))
    return study.summarise(per_image)


def test_summary_and_bd_table(summary):
    assert summary["ms_ssim_db"].notna().all()
    bd = study.bd_table(summary, anchors=("anchor",), tests=["test"], rate_window=(0.05, 1.0))
    assert bd.loc[0, "bd_rate_psnr"] == pytest.approx(-20, abs=0.01)
    assert bd.loc[0, "bd_rate_ms_ssim_db"] == pytest.approx(-20, abs=0.5)
    assert np.isfinite(bd.loc[0, "bd_rate_lpips"])


def test_crossings(summary):
    assert study.crossings(summary, ours="test").empty  # a uniformly better curve never crosses
    crossing = summary.copy()
    worse = crossing.codec == "test"
    crossing.loc[worse, "psnr"] -= np.linspace(-2, 2, worse.sum())  # better at low rates, worse at high
    rows = study.crossings(crossing, ours="test")
    assert len(rows) == 1 and not rows.loc[0, "ours_better_above"]


def test_enlarged_copies(tmp_path):
    from PIL import Image

    src = tmp_path / "leaf.jpg"
    img = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(img).save(src, quality=95)
    (out,) = study.enlarged_copies([src], 3, tmp_path / "big")
    assert out == tmp_path / "big" / "leaf.png"
    big = np.asarray(Image.open(out))
    assert big.shape == (18, 30, 3)
    # Enlarging keeps the content: shrinking back lands near the source.
    small = np.asarray(Image.open(out).resize((10, 6), Image.Resampling.BOX)).astype(float)
    assert np.abs(small - np.asarray(Image.open(src)).astype(float)).mean() < 20
    with pytest.raises(study.LeafCodecError):
        study.enlarged_copies([src], 0, tmp_path / "none")
