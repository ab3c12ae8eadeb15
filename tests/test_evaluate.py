"""The one evaluation loop (every codec, ours included, coded and timed alike; our bytes are the command line's),
R-D summaries, BD tables and crossings on synthetic curves with known answers, and the Kodak inputs."""

import json

import numpy as np
import pandas as pd
import pytest
from codec_samples import synthetic_leaf
from PIL import Image

from helpers.codec.errors import CodecError, DataError
from helpers.study import evaluate
from helpers.study.baselines import Codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(codec, bpps, psnrs):
    rows = []
    for setting, (b, p) in enumerate(zip(bpps, psnrs)):
        for image in range(2):
            ms = 1 - 10 ** (-p / 20)
            rows.append({"image": f"i{image}", "codec": codec, "setting": setting, "bpp": b, "psnr": p,
                         "ms_ssim": ms, "ms_ssim_db": -10 * np.log10(1 - ms), "lpips": 1 / p})  # fmt: skip
    return rows


@pytest.fixture
def summary():
    bpps = np.array([0.06, 0.12, 0.25, 0.5, 0.9])
    psnr = 30 + 4 * np.log2(bpps / 0.06)
    per_image = pd.DataFrame(_rows("anchor", bpps, psnr) + _rows("test", 0.8 * bpps, psnr))
    return evaluate.summarise(per_image)


def test_summary_and_bd_table(summary):
    assert summary["ms_ssim_db"].notna().all()
    assert list(summary.columns) == ["codec", "setting", "bpp", "psnr", "ms_ssim", "ms_ssim_db", "lpips", "bpp_std",
                                     "psnr_std", "ms_ssim_db_std", "lpips_std", "images"]  # fmt: skip
    assert (summary.images == 2).all() and (summary.psnr_std == 0).all()
    bd = evaluate.bd_table(summary, anchors=("anchor",), tests=["test"], rate_window=(0.05, 1.0))
    assert bd.loc[0, "bd_rate_psnr"] == pytest.approx(-20, abs=0.01)
    assert bd.loc[0, "bd_rate_ms_ssim_db"] == pytest.approx(-20, abs=0.5)
    assert np.isfinite(bd.loc[0, "bd_rate_lpips"])


def test_bd_table_leaves_missing_curves_empty(summary):
    """A codec without a metric (published points have no LPIPS) or outside the window gets NaN, not an error."""
    extra = pd.DataFrame({"codec": "published", "bpp": [0.1, 0.3, 0.8], "psnr": [31.0, 35.0, 38.0]})
    far = pd.DataFrame({"codec": "far", "bpp": [3.0, 4.0], "psnr": [40.0, 41.0], "lpips": [0.1, 0.05]})
    bd = evaluate.bd_table(
        pd.concat([summary, extra, far]), anchors=("anchor", "missing"), tests=["published", "far"]
    )
    assert list(bd.codec) == ["published", "far"] and (bd.anchor == "anchor").all()
    assert np.isfinite(bd.bd_rate_psnr[0]) and bd.bd_rate_lpips.isna().all() and np.isnan(bd.bd_rate_psnr[1])


def test_delta_at_equal_rate(summary):
    # "test" reaches each PSNR at 0.8x the rate: at equal rate it is 4 * log2(1 / 0.8) dB better everywhere.
    assert evaluate.delta_at_equal_rate(summary, "anchor", "test", "psnr") == pytest.approx(4 * np.log2(1.25))
    assert evaluate.delta_at_equal_rate(summary, "test", "anchor", "psnr") == pytest.approx(
        -4 * np.log2(1.25)
    )
    far = pd.DataFrame({"codec": "far", "bpp": [3.0, 4.0], "psnr": [40.0, 41.0]})
    assert np.isnan(evaluate.delta_at_equal_rate(pd.concat([summary, far]), "anchor", "far", "psnr"))


def test_fidelity_columns_are_measured_on_request():
    img = synthetic_leaf(0)
    half = Codec(
        "half",
        (1,),
        lambda x, s: x.tobytes(),
        lambda b: (np.frombuffer(b, np.uint8).reshape(img.shape) // 2) * 2,
    )
    plain = evaluate.evaluate([half], [img], lpips=False, progress=False)
    assert "hf_error" not in plain
    rich = evaluate.evaluate([half], [img], lpips=False, fidelity=True, progress=False)
    assert list(rich.columns)[: len(plain.columns)] == list(plain.columns)
    assert 0 < rich.hf_error[0] < 0.5 and 0 < rich.edge_precision[0] <= 1


def test_crossings(summary):
    assert evaluate.crossings(summary, ours="test").empty  # a uniformly better curve never crosses
    crossing = summary.copy()
    worse = crossing.codec == "test"
    crossing.loc[worse, "psnr"] -= np.linspace(-2, 2, worse.sum())  # better at low rates, worse at high
    rows = evaluate.crossings(crossing, ours="test")
    assert len(rows) == 1 and not rows.loc[0, "ours_better_above"]


def test_value_at_rate(summary):
    v = evaluate.value_at_rate(summary, "psnr", 0.12)
    assert v["anchor"] == pytest.approx(34) and np.isnan(evaluate.value_at_rate(summary, "psnr", 5)["anchor"])


# ----- the evaluation loop --------------------------------------------------------------------------------
def _grey_codec(name="grey", settings=(1, 2)):
    """Setting s writes s bytes per pixel and decodes to mid-grey."""
    return Codec(name, settings, lambda img, s: bytes(img.shape[0] * img.shape[1] * s),
                 lambda data: np.full((24, 32, 3), 128, np.uint8))  # fmt: skip


def test_evaluate_rows_columns_and_rates(tmp_path):
    img = synthetic_leaf(0, size=32)[:24]
    (tmp_path / "cls").mkdir()
    Image.fromarray(img).save(tmp_path / "cls" / "a.png")
    out_csv = tmp_path / "results" / "rd.csv"
    df = evaluate.evaluate([_grey_codec(), _grey_codec("other", (3,))], [tmp_path / "cls" / "a.png", img],
                           out_csv, lpips=False, data_root=tmp_path, progress=False)  # fmt: skip
    assert list(df.columns) == list(evaluate.CSV_COLUMNS)
    assert list(zip(df.image, df.codec, df.setting)) == [("cls/a.png", "grey", 1), ("cls/a.png", "grey", 2),
        ("cls/a.png", "other", 3), ("image1", "grey", 1), ("image1", "grey", 2), ("image1", "other", 3)]  # fmt: skip
    assert list(df.bpp) == [8, 16, 24] * 2 and list(df.bytes) == [768, 1536, 2304] * 2
    grey = np.full_like(img, 128)
    assert df.psnr[0] == pytest.approx(10 * np.log10(255**2 / np.mean((img - grey.astype(float)) ** 2)))
    assert (df.ms_ssim_db > 0).all() and df.lpips.isna().all()
    assert (
        (df.encode_ms >= 0).all()
        and (df.decode_ms >= 0).all()
        and (df[["height", "width"]] == (24, 32)).all().all()
    )
    assert pd.read_csv(out_csv).shape == df.shape
    timing_only = evaluate.evaluate([_grey_codec()], [img], quality=False, progress=False)
    assert timing_only[list(evaluate.QUALITY_COLUMNS)].isna().all().all() and len(timing_only) == 2


def test_evaluate_in_forked_workers_gives_the_same_rows_in_order():
    images = [synthetic_leaf(i, size=32)[:24] for i in range(5)]
    codecs = [_grey_codec(), _grey_codec("other", (3,))]
    alone = evaluate.evaluate(codecs, images, lpips=False, progress=False)
    forked = evaluate.evaluate(codecs, images, lpips=False, workers=2, progress=False)
    same = [c for c in evaluate.CSV_COLUMNS if not c.endswith("_ms")]
    assert len(forked) == 5 * 3 and forked[same].equals(alone[same])
    assert evaluate.forked_map(len, list(range(37)), 2, progress=False) == [3] * 12 + [1]


def test_evaluate_rejects_a_codec_that_decodes_the_wrong_size():
    broken = Codec("broken", (1,), lambda img, s: b"x", lambda data: np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(CodecError, match="broken at setting 1 decoded to uint8"):
        evaluate.evaluate([broken], [synthetic_leaf(0, 16)], lpips=False, progress=False)


@pytest.fixture(scope="module")
def leaf_codec():
    from helpers.codec.leaf_codec import LeafCodec

    return LeafCodec()


def test_evaluate_ours_uses_the_codec_itself(leaf_codec):
    """Ours through the loop: every level of the checkpoint, rates and PSNR of the real file, in level order."""
    img = synthetic_leaf(1, size=64)
    df = evaluate.evaluate([evaluate.learned_codec(leaf_codec)], [img], lpips=False, progress=False)
    assert list(df.setting) == leaf_codec.levels and (df.codec == "ours").all()
    data = leaf_codec.encode(img, leaf_codec.levels[0])
    assert df.bytes[0] == len(data) and df.bpp[0] == pytest.approx(8 * len(data) / 64**2)
    from helpers.measures.metrics import psnr

    assert df.psnr[0] == pytest.approx(psnr(img, leaf_codec.decode(data)))
    assert df.bytes.is_monotonic_increasing and df.psnr.is_monotonic_increasing
    assert list(evaluate.learned_codec(leaf_codec, [2]).settings) == [2]


def test_command_line_writes_the_bytes_evaluate_measures(leaf_codec, tmp_path):
    from helpers.commands import main

    img = synthetic_leaf(2, size=48)
    Image.fromarray(img).save(tmp_path / "leaf.png")
    level = leaf_codec.levels[1]
    assert (
        main(
            [
                "compress",
                str(tmp_path / "leaf.png"),
                "-o",
                str(tmp_path / "leaf.leaf"),
                "--quality",
                str(level),
            ]
        )
        == 0
    )
    (row,) = evaluate.coded_images([evaluate.learned_codec(leaf_codec, [level])], [tmp_path / "leaf.png"],
                                   progress=False)  # fmt: skip
    name, ref, (coded,) = row
    assert coded.data == (tmp_path / "leaf.leaf").read_bytes()
    assert main(["decompress", str(tmp_path / "leaf.leaf"), "-o", str(tmp_path / "out.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), coded.decoded)


# ----- Kodak ------------------------------------------------------------------------------------------------
def test_kodak_paths(tmp_path, monkeypatch):
    (tmp_path / "kodak").mkdir()
    for i in (2, 1, 3):
        Image.fromarray(synthetic_leaf(i, 8)).save(tmp_path / "kodak" / f"kodim{i:02d}.png")
    monkeypatch.setenv("PHOTOS_DIR", str(tmp_path))
    assert [p.name for p in evaluate.kodak_paths()] == ["kodim01.png", "kodim02.png", "kodim03.png"]
    assert [p.name for p in evaluate.kodak_paths(2)] == ["kodim01.png", "kodim02.png"]
    monkeypatch.setenv("PHOTOS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="set PHOTOS_DIR") as err:
        evaluate.kodak_paths()
    assert "\n" not in str(err.value)


def test_published_kodak_points_and_their_source():
    raw = json.loads(evaluate.PUBLISHED_KODAK.read_text())
    assert raw["source"]["repository"].endswith("InterDigitalInc/CompressAI")
    for entry in raw["codecs"].values():  # every curve says where it was copied from
        assert entry["path"].startswith("results/image/kodak/") and len(entry["commit"]) == 40
    pub = evaluate.published_kodak()
    assert {"bmshj2018-hyperprior", "mbt2018-mean", "ELIC"} <= set(pub.codec)
    for _, d in pub.groupby("codec"):
        assert (
            d.bpp.is_monotonic_increasing and d.psnr.is_monotonic_increasing and d.psnr.between(25, 45).all()
        )
    assert (
        pub[pub.codec == "ELIC"].ms_ssim_db.isna().all()
        and pub[pub.codec == "mbt2018-mean"].ms_ssim_db.notna().all()
    )
