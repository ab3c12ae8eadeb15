"""Downloading PlantVillage: a sparse checkout of a local stand-in for the GitHub repository (file:// URL)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from helpers.codec.errors import DataError
from helpers.data import dataset as data
from helpers.data import fetch

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# Repository folder names with the awkward characters of the real ones (comma, space, hyphen).
REPO_CLASSES = [
    "Pepper,_bell___healthy",
    "Tomato___Spider_mites Two-spotted_spider_mite",
    "Apple___Apple_scab",
]


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory) -> str:
    """A git repository laid out like spMohanty/PlantVillage-Dataset: raw/{color,grayscale}/<class>/*.JPG."""
    repo = tmp_path_factory.mktemp("remote") / "PlantVillage-Dataset"
    rng = np.random.default_rng(0)
    for kind in ("color", "grayscale"):
        for cls in REPO_CLASSES:
            (repo / "raw" / kind / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(repo / "raw" / kind / cls / f"{i:04d}-abc___TST {i}.JPG")
    (repo / "README.md").write_text("stand-in\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "images", cwd=repo)
    return repo.as_uri()  # file:// so that --depth and --filter go through the git transport


def test_fetch_places_mapped_classes_and_is_idempotent(repo_url, tmp_path):
    dest = tmp_path / "plantvillage"
    wanted = ["Pepper__bell___healthy", "Tomato_Spider_mites_Two_spotted_spider_mite"]  # our spelling
    messages = []
    fetch.fetch_plantvillage(dest, repo_url=repo_url, classes=wanted, log=messages.append)
    for cls in wanted:
        files = sorted(p.name for p in (dest / cls).iterdir())
        assert files == [f"{i:04d}-abc___TST {i}.JPG" for i in range(3)]
    checkout = tmp_path / "third_party" / "PlantVillage-Dataset"
    assert not (checkout / "raw" / "grayscale").exists()  # sparse: only the requested colour folders
    assert not (checkout / "raw" / "color" / "Apple___Apple_scab").exists()
    records, skipped = data.scan_dataset(dest, progress=False)  # the linked folders scan like real ones
    assert len(records) == 6 and not skipped and {r.cls for r in records} == set(wanted)

    before = {p: p.lstat().st_mtime_ns for p in dest.iterdir()}
    messages.clear()
    fetch.fetch_plantvillage(dest, repo_url=repo_url, classes=wanted, log=messages.append)
    assert messages == [f"PlantVillage already present in {dest} (2 classes); nothing to fetch"]
    assert before == {p: p.lstat().st_mtime_ns for p in dest.iterdir()}

    # A further class reuses the checkout; a repository spelling is accepted as is.
    fetch.fetch_plantvillage(
        dest, repo_url=repo_url, classes=[*wanted, "Apple___Apple_scab"], log=messages.append
    )
    assert len(list((dest / "Apple___Apple_scab").iterdir())) == 3
    assert any("existing checkout" in m for m in messages)


def test_default_classes_are_ours_mapped_to_the_repository():
    pairs = fetch.class_pairs()
    assert len(pairs) == 15 and len({theirs for _, theirs in pairs}) == 15
    assert ("Tomato__Tomato_YellowLeaf__Curl_Virus", "Tomato___Tomato_Yellow_Leaf_Curl_Virus") in pairs
    assert fetch.class_pairs(["Tomato___Leaf_Mold"]) == [("Tomato_Leaf_Mold", "Tomato___Leaf_Mold")]


def test_default_classes_match_the_committed_manifest():
    from helpers import paths

    assert {r.cls for r in data.read_manifest(paths.MANIFEST)} == set(fetch.CLASS_FOLDERS)


def test_unreachable_url_is_one_clear_error(tmp_path):
    bad = (tmp_path / "nowhere").as_uri()
    with pytest.raises(
        DataError,
        match=r"cannot download PlantVillage from file://.*nowhere: git clone failed: fatal: .*nowhere",
    ):
        fetch.fetch_plantvillage(
            tmp_path / "pv", repo_url=bad, classes=["Tomato_healthy"], log=lambda m: None
        )


def test_missing_class_in_repository(repo_url, tmp_path):
    with pytest.raises(DataError, match="has no images in raw/color/Nope___nothing"):
        fetch.fetch_plantvillage(
            tmp_path / "pv", repo_url=repo_url, classes=["Nope___nothing"], log=lambda m: None
        )


def test_missing_git_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="git is not installed"):
        fetch.fetch_plantvillage(tmp_path / "pv", classes=["Tomato_healthy"], log=lambda m: None)


def test_cli_fetch(repo_url, tmp_path, capsys):
    from helpers.commands import main

    dest = tmp_path / "pv"
    assert (
        main(["fetch", "--dest", str(dest), "--repo-url", repo_url, "--classes", "Pepper,_bell___healthy"])
        == 0
    )
    assert len(list((dest / "Pepper__bell___healthy").iterdir())) == 3
    assert main(["fetch", "--dest", str(dest), "--repo-url", "file:///no/such/repo", "--classes", "X"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot download PlantVillage from file:///no/such/repo")
