"""The product stands apart from the study: nothing under helpers/codec imports from training, the study or the
data pipeline (only from helpers.codec itself and helpers.paths), so the codec can ship without them."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from codec_samples import ROOT

ALLOWED = ("helpers.codec", "helpers.paths")


def _imported(path: Path, package: str) -> list[str]:
    """Every module a file imports, at any depth (function-level imports too), relative ones resolved."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def forbidden_imports(codec_dir: Path) -> list[str]:
    """``file: module`` for every import of a helpers module outside ``ALLOWED`` under ``codec_dir``."""
    bad = []
    for path in sorted(codec_dir.rglob("*.py")):
        for name in _imported(path, "helpers.codec"):
            if (name == "helpers" or name.startswith("helpers.")) and not name.startswith(ALLOWED):
                bad.append(f"{path.name}: {name}")
    return bad


def test_the_codec_imports_nothing_from_training_or_the_study():
    assert forbidden_imports(ROOT / "helpers" / "codec") == []


def test_the_rule_catches_an_import_from_training_or_the_study(tmp_path):
    codec = shutil.copytree(ROOT / "helpers" / "codec", tmp_path / "codec")
    (codec / "leaf_codec.py").write_text(
        (codec / "leaf_codec.py").read_text() + "\nfrom helpers.training import engine\n"
    )
    (codec / "tiling.py").write_text(
        (codec / "tiling.py").read_text() + "\ndef f():\n    from ..study import metrics\n"
    )
    (codec / "budget.py").write_text((codec / "budget.py").read_text() + "\nimport helpers.data.dataset\n")
    assert forbidden_imports(codec) == [
        "budget.py: helpers.data.dataset",
        "leaf_codec.py: helpers.training.engine",
        "tiling.py: helpers.study.metrics",
    ]


_PRODUCT_ONLY = """
import sys
import numpy as np
from PIL import Image
from helpers.codec.cli import main
src, leaf, png = sys.argv[1:]
Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(src)
assert main(["compress", src, "-o", leaf]) == 0 and main(["decompress", leaf, "-o", png]) == 0
print("loaded:", *(m for m in sys.modules if m.startswith(("helpers.training", "helpers.study", "helpers.data"))))
"""


def test_compressing_and_decompressing_load_nothing_but_the_codec(tmp_path):
    """At run time too: a compress and a decompress through the product's own command line leave no module of
    training, the study or the data pipeline loaded."""
    args = [tmp_path / "a.png", tmp_path / "a.leaf", tmp_path / "b.png"]
    proc = subprocess.run([sys.executable, "-c", _PRODUCT_ONLY, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.png").is_file() and proc.stdout.splitlines()[-1] == "loaded:"
