"""``make help`` lists every target a user runs (issue 34), and .PHONY names exactly the Makefile's targets."""

import re
import shutil
import subprocess

import pytest
from codec_samples import ROOT


def _targets() -> set[str]:
    """The Makefile's explicit rules (not its stamp files, which are variables)."""
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_phony_names_exactly_the_targets():
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, re.M)
    assert set(phony.split()) == _targets()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_help_lists_every_target():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    listed = set(re.findall(r"\bmake ([a-z0-9][a-z0-9-]*)", out))
    assert _targets() - {"help"} <= listed, _targets() - listed
