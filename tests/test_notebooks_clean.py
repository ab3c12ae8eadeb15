"""Committed notebooks carry no outputs (nbstripout keeps them so) and follow the papermill convention."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts (run nbstripout)"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (exactly one expected)"
    assert tagged[0].cell_type == "code"
    assert "profile" in tagged[0].source, f"{path.name}: the parameters cell should set `profile`"
    assert "git clone" in code[0].source, f"{path.name}: the first cell should be the Colab cell (it clones)"
    after = nb.cells[nb.cells.index(tagged[0]) + 1]
    assert "setup(profile, data_dir)" in after.source, (
        f"{path.name}: the cell after the parameters calls setup()"
    )


# Profiles differ only in helpers.study.notebooks.PROFILES.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_does_not_branch_on_the_profile_name(path):
    nb = nbformat.read(path, as_version=4)
    code = [
        c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]
    branches = [
        line.strip() for src in code for line in src.splitlines() if re.search(r"profile\s*[!=]=", line)
    ]
    assert not branches, f"{path.name} branches on the profile's name (use a PROFILES key): {branches}"


def test_profiles_share_their_keys_and_unknown_names_fail_clearly():
    from helpers.codec.errors import LeafCodecError
    from helpers.study.notebooks import PROFILES, profile_settings, run_notebook

    assert set(PROFILES) == {"smoke", "full"} and set(PROFILES["smoke"]) == set(PROFILES["full"])
    with pytest.raises(LeafCodecError, match="unknown profile 'quick'"):
        profile_settings("quick")
    with pytest.raises(LeafCodecError, match="no notebook 99_nothing.ipynb .*01_preprocess"):
        run_notebook("99_nothing")
