"""Committed notebooks carry no outputs (nbstripout keeps them so) and follow the papermill convention."""

from __future__ import annotations

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
    assert "google.colab" in code[0].source, f"{path.name}: the first cell should be the Colab set-up cell"


def test_profiles_share_their_keys_and_unknown_names_fail_clearly():
    from helpers.errors import LeafCodecError
    from helpers.notebooks import PROFILES, profile_settings, run_notebook

    assert set(PROFILES) == {"smoke", "full"} and set(PROFILES["smoke"]) == set(PROFILES["full"])
    with pytest.raises(LeafCodecError, match="unknown profile 'quick'"):
        profile_settings("quick")
    with pytest.raises(LeafCodecError, match="no notebook 99_nothing.ipynb .*01_preprocess"):
        run_notebook("99_nothing")
