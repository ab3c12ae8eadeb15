"""The bake-off has no coding loop of its own: its points are the study's evaluation loop on real ``.leaf`` files
written by each run's exported codec checkpoint, beside the study's AVIF."""

import os

import numpy as np
import pytest
import torch

from helpers.codec.leaf_codec import LeafCodec
from helpers.experiments import bakeoff
from helpers.training.candidates import candidate
from helpers.training.shipping import shipped

STEP = 123


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A run folder whose codec export is newer than its training checkpoint (so nothing is re-exported)."""
    run = tmp_path / "tiny"
    run.mkdir()
    (run / "last.pth.tar").write_bytes(b"")
    os.utime(run / "last.pth.tar", (1, 1))
    torch.manual_seed(0)
    torch.save(shipped(candidate("base", (0.002, 0.02)).eval(), "tiny", STEP), run / "codec.pth.tar")
    monkeypatch.setattr(bakeoff, "RUNS", tmp_path)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    monkeypatch.setattr(bakeoff, "validation_images", lambda n: {"leaves": images})
    return run, images


def test_points_come_from_real_files_beside_the_studys_avif(tiny_run):
    run, images = tiny_run
    points = bakeoff.rd_points(["tiny"], "leaves")
    assert set(points.codec) == {bakeoff.ANCHOR, "tiny"}
    ours = points[points.codec == "tiny"].set_index("setting")
    assert list(ours.index) == [1, 2] and (ours.step == STEP).all() and (ours.images == 2).all()
    leaf = LeafCodec(run / "codec.pth.tar")
    for level in (1, 2):
        file_bpp = np.mean([8 * len(leaf.encode(img, level)) / (64 * 96) for img in images])
        assert ours.loc[level, "bpp"] == pytest.approx(file_bpp, rel=1e-12)
    assert points[points.codec == bakeoff.ANCHOR].step.isna().all()


def test_transform_speed_times_each_candidate_in_both_layouts_with_its_macs():
    table = bakeoff.transform_times(["wide", "dwsep"], size=64, reps=1)
    assert sorted(zip(table.candidate, table.layout)) == [
        ("dwsep", "channels_last"),
        ("dwsep", "contiguous"),
        ("wide", "channels_last"),
        ("wide", "contiguous"),
    ]
    assert (table.analysis_s > 0).all() and (table.synthesis_s > 0).all()
    # the MAC count is the model's, not the layout's: at the same N the depthwise-separable synthesis does fewer
    macs = table.groupby("candidate").synthesis_kmac_per_px.agg(["min", "max"])
    assert (macs["min"] == macs["max"]).all() and macs.loc["dwsep", "min"] < macs.loc["wide", "min"] / 2
