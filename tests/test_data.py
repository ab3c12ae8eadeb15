"""Data: the grouping rule, the split, error messages, transforms, the loader, and notebook 01 (smoke)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import paths
from helpers.codec.errors import DataError
from helpers.data import dataset as data

DATA_DIR = os.environ.get("DATA_DIR")
needs_data = pytest.mark.skipif(
    not (DATA_DIR and Path(DATA_DIR).is_dir()), reason="DATA_DIR (PlantVillage) is not set or not a folder"
)


def _jpeg(path: Path, seed: int = 0, size: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def tiny_dataset(tmp_path):
    """Two classes, four leaves each, one leaf photographed twice."""
    root = tmp_path / "pv"
    for c, cls in enumerate(("Tomato_healthy", "Potato___healthy")):
        for i in range(4):
            _jpeg(root / cls / f"{c}{i:03d}abc___TST Leaf {i}.JPG", seed=10 * c + i)
        _jpeg(root / cls / f"{c}999abc___TST Leaf 0.2.JPG", seed=99 + c)
    return root


@pytest.mark.parametrize(
    "name, group",
    [
        ("x___GHLB2 Leaf 154.4.JPG", "GHLB2 Leaf 154"),
        ("x___GHLB2 Leaf 154.1.JPG", "GHLB2 Leaf 154"),
        ("0022d6b7-d47c-4ee2-ae9a-392a53f48647___JR_B.Spot 8964.JPG", "JR_B.Spot 8964"),
        ("abc___RS_HL 1234 copy.jpg", "RS_HL 1234"),
        ("abc___UF.GRC_YLCV_Lab 01755.JPG", "UF.GRC_YLCV_Lab 01755"),
        ("no_series_code.png", "no_series_code"),
    ],
)
def test_group_key(name, group):
    assert data.group_key(name) == group


def test_split_is_a_function_of_names_and_seed():
    splits = [data.assign_split(f"Tomato_healthy/leaf {i}", "Tomato_healthy") for i in range(2000)]
    assert splits == [data.assign_split(f"Tomato_healthy/leaf {i}", "Tomato_healthy") for i in range(2000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["val"] < 0.13 and 0.07 < share["test"] < 0.13
    other_seed = [
        data.assign_split(f"Tomato_healthy/leaf {i}", "Tomato_healthy", seed=1) for i in range(2000)
    ]
    assert other_seed != splits
    assert data.assign_split("Potato___Early_blight/x", "Potato___Early_blight") == data.HOLDOUT


def test_committed_manifest_follows_the_rule_and_no_group_straddles_splits():
    records = data.read_manifest(paths.MANIFEST)
    assert len(records) == 12001
    splits_of = defaultdict(set)
    for r in records:
        cls, name = r.path.split("/", 1)
        assert cls == r.cls and r.group == data.group_key(name), r
        assert r.split == data.assign_split(f"{r.cls}/{r.group}", r.cls), r
        splits_of[(r.cls, r.group)].add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {r.split for r in records} == {"train", "val", "test", data.HOLDOUT}
    assert {r.cls for r in records if r.split == data.HOLDOUT} == {
        r.cls for r in records if r.cls.startswith("Potato")
    }


def test_scan_is_deterministic_and_keeps_series_together(tiny_dataset):
    first, _ = data.scan_dataset(tiny_dataset, progress=False)
    second, _ = data.scan_dataset(tiny_dataset, progress=False)
    assert first == second and len(first) == 10
    by_name = {Path(r.path).name: r for r in first}
    a, b = by_name["0000abc___TST Leaf 0.JPG"], by_name["0999abc___TST Leaf 0.2.JPG"]
    assert a.group == b.group == "TST Leaf 0" and a.split == b.split
    assert all(r.split == data.HOLDOUT for r in first if r.cls.startswith("Potato"))


def test_manifest_roundtrip_and_compare(tiny_dataset, tmp_path):
    records, _ = data.scan_dataset(tiny_dataset, progress=False)
    data.write_manifest(records, tmp_path / "m.csv")
    assert data.read_manifest(tmp_path / "m.csv") == records
    diff = data.compare_manifests(records[1:], records)
    assert diff == {"missing": [], "changed": [], "extra": [records[0].path]}
    moved = [
        records[0].__class__(records[0].path, records[0].cls, records[0].group, "elsewhere"),
        *records[1:],
    ]
    assert data.compare_manifests(moved, records)["changed"] == [records[0].path]


@needs_data
def test_rescanning_a_real_class_reproduces_the_manifest(tmp_path):
    # One small real class (89 images) linked into a scratch root: scanning it must give the committed rows.
    cls = "Potato___healthy"
    (tmp_path / cls).symlink_to(Path(DATA_DIR) / cls, target_is_directory=True)
    scanned, skipped = data.scan_dataset(tmp_path, progress=False)
    committed = [r for r in data.read_manifest(paths.MANIFEST) if r.cls == cls]
    assert not skipped and scanned == committed


def test_missing_dataset_folder_names_the_folder(tmp_path):
    missing = tmp_path / "no_such_plantvillage"
    with pytest.raises(DataError, match="no_such_plantvillage"):
        data.scan_dataset(missing, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        data.check_data_dir(tmp_path / "empty")


def test_corrupt_and_non_image_files_are_skipped_and_reported(tmp_path):
    root = tmp_path / "pv"
    good = _jpeg(root / "Tomato_healthy" / "good___A 1.JPG")
    bad = root / "Tomato_healthy" / "bad___A 2.JPG"
    bad.write_bytes(good.read_bytes()[:300])  # truncated mid-way through the compressed data
    (root / "Tomato_healthy" / "notes.txt").write_text("not a leaf")
    records, skipped = data.scan_dataset(root, progress=False)
    assert [r.path for r in records] == ["Tomato_healthy/good___A 1.JPG"]
    reasons = dict(skipped)
    assert set(reasons) == {"Tomato_healthy/bad___A 2.JPG", "Tomato_healthy/notes.txt"}
    assert "cannot read image" in reasons["Tomato_healthy/bad___A 2.JPG"]
    assert reasons["Tomato_healthy/notes.txt"] == "not an image file"


def test_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "x.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DataError, match="no readable images"):
        data.scan_dataset(tmp_path, progress=False)


def test_unreadable_paths_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="image not found"):
        data.read_image(tmp_path / "missing.jpg")
    with pytest.raises(DataError, match="folder"):
        data.read_image(tmp_path)
    (tmp_path / "junk.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        data.read_image(tmp_path / "junk.jpg")
    with pytest.raises(DataError, match="split manifest not found"):
        data.read_manifest(tmp_path / "none.csv")


def test_transforms_shapes_and_range():
    img = np.random.default_rng(0).integers(0, 256, (300, 240, 3), dtype=np.uint8)
    torch.manual_seed(0)
    for tf in (data.train_transform(), data.eval_transform()):
        x = tf(img)
        assert x.shape == (3, 256, 256) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert data.train_transform(128)(img).shape == (3, 128, 128)
    # eval is deterministic and the identity (up to dtype) on 256x256 input
    square = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    torch.testing.assert_close(data.eval_transform()(square), torch.from_numpy(square).permute(2, 0, 1) / 255)
    assert data.train_transform(normalize=True)(img).min() < 0  # normalised values leave [0, 1]


def test_loader_yields_batches(tiny_dataset):
    records, _ = data.scan_dataset(tiny_dataset, progress=False)
    records = [r.__class__(r.path, r.cls, r.group, "train") for r in records]  # all in one split
    loader = data.make_loader("train", 4, train=True, root=tiny_dataset, records=records, size=64)
    assert loader.num_workers == min(2, os.cpu_count()) and loader.pin_memory == torch.cuda.is_available()
    batches = list(loader)
    assert len(batches) == 2  # 10 images, drop_last for training
    x, y = batches[0]
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and y.shape == (4,)
    ev = data.make_loader("train", 4, train=False, num_workers=0, root=tiny_dataset, records=records, size=64)
    assert [len(b[0]) for b in ev] == [4, 4, 2]  # evaluation keeps every image, in manifest order
    with pytest.raises(DataError, match="no images"):
        data.make_loader("val", 4, train=False, root=tiny_dataset, records=records)


@needs_data
def test_loader_on_real_data():
    loader = data.make_loader("test", 3, train=False, num_workers=0, root=Path(DATA_DIR), limit=6)
    x, y = next(iter(loader))
    assert x.shape == (3, 3, 256, 256) and len(loader.dataset) == 6
    assert len(loader.dataset.classes) == 15


@needs_data
@pytest.mark.slow
def test_preprocess_notebook_smoke(tmp_path):
    from helpers.study.notebooks import run_notebook

    out = run_notebook("01_preprocess", profile="smoke", out_dir=tmp_path, data_dir=DATA_DIR)
    import nbformat

    nb = nbformat.read(out, as_version=4)  # run_notebook raised if a cell failed
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "no group straddles two splits" in text and "batches of (2, 3, 256, 256)" in text
