"""The disease classifier of notebook 06 (helpers/study/diagnosis.py): split, scores, head, checkpoint, decoded loop."""

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import paths
from helpers.codec.errors import LeafCodecError
from helpers.data import dataset as data
from helpers.study import diagnosis as diagnose
from helpers.study.baselines import Codec

DATA_DIR = os.environ.get("DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA_DIR or not Path(DATA_DIR).is_dir(), reason="needs DATA_DIR (PlantVillage)"
)


def test_potato_is_split_by_group_and_the_other_classes_keep_the_codecs_split():
    records = data.read_manifest(paths.MANIFEST)
    split = {r.path: diagnose.classifier_split(r) for r in records}
    assert all(split[r.path] == r.split for r in records if r.split != data.HOLDOUT)
    potato = [r for r in records if r.split == data.HOLDOUT]
    assert {split[r.path] for r in potato} == {"train", "val", "test"}
    groups = pd.DataFrame(
        {"group": [f"{r.cls}/{r.group}" for r in potato], "split": [split[r.path] for r in potato]}
    )
    assert (groups.groupby("group")["split"].nunique() == 1).all(), "a Potato leaf straddles two splits"
    assert {diagnose.part(r) for r in potato} == {diagnose.UNSEEN}


def test_split_records_deals_a_balanced_subset():
    records = data.read_manifest(paths.MANIFEST)
    n_classes = len({r.cls for r in records})
    two_each = diagnose.split_records(records, "test", 2 * n_classes)
    assert pd.Series([r.cls for r in two_each]).value_counts().eq(2).all() and len(two_each) == 2 * n_classes
    three = diagnose.split_records(records, "test", 3)
    assert len({r.cls for r in three}) == 3
    assert all(diagnose.classifier_split(r) == "test" for r in two_each)
    assert len(diagnose.split_records(records, "test")) == sum(
        diagnose.classifier_split(r) == "test" for r in records
    )


def test_scores_and_confusion_by_hand():
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    m = diagnose.confusion(y_true, y_pred, 4)
    assert m.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    s = diagnose.scores(y_true, y_pred, 4)
    # F1: class 0 = 2*1/(2+2) = 0.5, class 1 = 2*2/(3+2) = 0.8, class 2 = 0 (never hit); class 3 absent
    assert s["accuracy"] == pytest.approx(60.0) and s["macro_f1"] == pytest.approx(100 * 1.3 / 3)


def test_bits_for_diagnosis_needs_every_higher_setting_within_the_tolerance():
    summary = pd.DataFrame({
        "codec": ["original", "a", "a", "a", "a", "b", "b"],
        "setting": ["file", 1, 2, 3, 4, 1, 2],
        "bpp": [2.0, 0.1, 0.2, 0.3, 0.4, 0.1, 0.5],
        "accuracy": [100.0, 80.0, 99.5, 97.0, 99.8, 50.0, 90.0],
        "macro_f1": [100.0, 70.0, 99.0, 96.0, 99.0, 40.0, 88.0],
    })  # fmt: skip
    bits = diagnose.bits_for_diagnosis(summary, reference=100.0, tolerance=1.0).set_index("codec")
    assert bits.loc["a", "setting"] == "4" and bits.loc["a", "bpp"] == pytest.approx(0.4)  # 0.2 is a fluke
    assert np.isnan(bits.loc["b", "bpp"]) and bits.loc["b", "lowest_bpp_tried"] == pytest.approx(0.1)
    assert "original" not in bits.index


def _toy(n=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, d)).astype(np.float32) * 5 + 100  # far from zero-mean, unit spread: standardised
    x[np.arange(n), y] += 20
    return x, y


def test_the_head_learns_is_deterministic_and_fine_tunes_from_a_head():
    x, y = _toy()
    recipe = {**diagnose.RECIPE, "steps": 200, "batch_size": 16, "lr": 0.05}
    head = diagnose.fit_head(x, y, 3, recipe)
    assert (diagnose.predict(head, x) == y).mean() == 1.0
    again = diagnose.fit_head(x, y, 3, recipe)
    assert all(np.array_equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))
    tuned = diagnose.fit_head(x[:6], y[:6], 3, {**recipe, "steps": 5}, init=head)
    assert np.array_equal(tuned.mean, head.mean) and not np.array_equal(
        tuned.linear.weight, head.linear.weight
    )


def test_classifier_checkpoint_round_trip_and_clear_errors(tmp_path):
    x, y = _toy(d=diagnose.N_FEATURES)
    clf = diagnose.Classifier(
        diagnose.fit_head(x, y, 3, {**diagnose.RECIPE, "steps": 20}), ["a", "b", "c"], {"k": 1}
    )
    clf.save(tmp_path / "clf.pt")
    back = diagnose.Classifier.load(tmp_path / "clf.pt")
    assert back.classes == ["a", "b", "c"] and back.meta == {"k": 1}
    assert np.array_equal(back.predict_features(x), clf.predict_features(x))
    with pytest.raises(LeafCodecError, match="no classifier at"):
        diagnose.Classifier.load(tmp_path / "missing.pt")
    import torch

    state = torch.load(tmp_path / "clf.pt", weights_only=True)
    torch.save({**state, "features": "something else"}, tmp_path / "other.pt")
    with pytest.raises(LeafCodecError, match="other features"):
        diagnose.Classifier.load(tmp_path / "other.pt")


def test_features_of_any_size():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (100, 130, 3), dtype=np.uint8) for _ in range(2)]
    f = diagnose.features(imgs)
    assert f.shape == (2, diagnose.N_FEATURES) and f.dtype == np.float32 and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])


def _png_codec():
    def encode(img, level):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG", compress_level=level)
        return buf.getvalue()

    return Codec("png", (1, 9), encode, lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")))


def _tiny_dataset(root: Path, n: int = 3) -> list[data.Record]:
    rng = np.random.default_rng(1)
    records = []
    for i in range(n):
        cls = ("Tomato_healthy", "Potato___healthy")[i % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
        records.append(
            data.Record(f"{cls}/{i}.png", cls, str(i), data.HOLDOUT if "Potato" in cls else "test")
        )
    return records


def assert_same_features(x: np.ndarray, ref: np.ndarray) -> None:
    """Features of the same images computed in other batches: batches of other sizes take other float32
    convolution kernels, so they agree to float32 rounding over the network's sums (relative 1e-3 of the largest
    feature), not bit for bit; the features are square roots, which turn a rounding of 1e-9 near zero into
    3e-5, so they are compared squared."""
    np.testing.assert_allclose(x**2, ref**2, rtol=1e-3, atol=1e-3 * float((ref**2).max()))


def test_decoded_features_rows_rates_and_workers_agree(tmp_path):
    records = _tiny_dataset(tmp_path)
    rows, x = diagnose.decoded_features([_png_codec()], records, tmp_path, progress=False)
    assert len(rows) == len(x) == 2 * len(records)
    assert list(rows.setting) == [1, 9] * len(records) and set(rows.part) == {diagnose.SEEN, diagnose.UNSEEN}
    assert np.allclose(rows.bpp, 8 * rows.bytes / (64 * 64))
    orig_rows, orig_x = diagnose.original_features(records, tmp_path)
    assert_same_features(x[::2], orig_x)  # PNG is lossless: the classifier sees the original
    assert (orig_rows.codec == "original").all()
    rows2, x2 = diagnose.decoded_features([_png_codec()], records, tmp_path, workers=2)
    pd.testing.assert_frame_equal(rows, rows2)
    assert_same_features(x, x2)


@needs_data
def test_the_shipped_classifier_recognises_original_test_leaves():
    records = data.read_manifest(paths.MANIFEST)
    clf = diagnose.Classifier.load()
    picks = diagnose.split_records(records, "test", 2 * len(clf.classes))
    pred = clf.predict([data.read_image(Path(DATA_DIR) / r.path) for r in picks])
    assert np.mean(pred == diagnose.labels([r.cls for r in picks], clf.classes)) >= 0.9


def test_degrade_is_seeded_keeps_the_shape_and_changes_the_image():
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for seed in range(3):  # blur, rescaling, noise
        out = diagnose.degrade(img, seed)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
        assert np.array_equal(out, diagnose.degrade(img, seed))


def test_cached_features_resume_and_keep_degraded_apart(tmp_path):
    records = _tiny_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    x = diagnose.cached_features(records, tmp_path / "data", cache=cache, chunk=2, log=lambda s: None)
    chunks = sorted(cache.rglob("*.npy"))
    assert len(chunks) == 2
    assert_same_features(x, diagnose.original_features(records, tmp_path / "data")[1])
    chunks[1].unlink()  # a run killed before its last chunk
    assert np.array_equal(
        diagnose.cached_features(records, tmp_path / "data", cache=cache, chunk=2, log=lambda s: None), x
    )
    xd = diagnose.cached_features(
        records, tmp_path / "data", degraded=True, cache=cache, chunk=2, log=lambda s: None
    )
    assert len(list(cache.iterdir())) == 2 and not np.allclose(xd, x)
