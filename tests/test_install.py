"""The codec a user installs (issue 34): ``pip install .`` builds a wheel of the product alone (helpers.codec,
helpers.paths, the shipped checkpoints as package data) whose only requirements are what helpers/codec imports,
with a ``leaf-codec`` command that works from any folder.

The wheel is built from a copy of the repository's files in a temporary folder (no build/ or *.egg-info left in
the checkout), offline and without build isolation (setuptools from the project's environment)."""

from __future__ import annotations

import ast
import email.parser
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from codec_samples import ROOT, leaves
from packaging.requirements import Requirement
from PIL import Image

from helpers import paths

# helpers/codec's third-party imports -> the distributions that provide them.
DISTRIBUTIONS = {"torch": "torch", "compressai": "compressai", "numpy": "numpy", "PIL": "pillow", "tqdm": "tqdm",
                 "scipy": "scipy", "onnx": "onnx", "onnxruntime": "onnxruntime"}  # fmt: skip
PRODUCT = {"torch", "compressai", "numpy", "pillow", "tqdm", "scipy"}  # scipy: the ROI maps' morphology
OPTIONAL = {"onnx": {"onnx", "onnxruntime"}}  # extra -> its requirements (the --backend onnx decoder)
# The study's packages: none may be a requirement of the codec, nor be imported when it runs.
STUDY = {"papermill", "lpips", "matplotlib", "glymur", "pandas", "torchvision", "pytorch-msssim",
         "opencv-python-headless", "ipykernel", "nbformat", "nbstripout", "ruff", "pytest", "pre-commit"}  # fmt: skip
# (pandas is not among them: CompressAI imports it, through torch_geometric, whenever it is imported.)
STUDY_MODULES = ("matplotlib", "lpips", "papermill", "glymur", "cv2", "nbformat", "onnx", "onnxruntime")
SHIPPED = ("leaf_hyperprior.pth.tar", "leaf_hyperprior_perceptual.pth.tar", "leaf_hyperprior_v3.pth.tar")


def _name(requirement: str) -> str:
    """The distribution name of a Requires-Dist line, normalised (lower case, ``_`` -> ``-``)."""
    for stop in "<>=!~;[ (":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


def _third_party_imports(folder: Path) -> set[str]:
    """Top-level names of every module the files under ``folder`` import (any depth), bar the stdlib and helpers."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"helpers", "__future__"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``pip install .`` builds, from a copy of the sources (so the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(paths.CHECKPOINTS, src / "outputs" / "checkpoints")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(tmp / "dist"), str(src)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (found,) = (tmp / "dist").glob("leaf_codec-*.whl")
    return found


def _metadata(whl: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in whl.namelist() if n.endswith(f".dist-info/{name}")]
    return whl.read(path).decode()


def test_the_wheel_requires_what_the_codec_imports_and_nothing_of_the_study(wheel):
    with zipfile.ZipFile(wheel) as whl:
        meta = email.parser.Parser().parsestr(_metadata(whl, "METADATA"))
    requires = meta.get_all("Requires-Dist")
    plain = {_name(r) for r in requires if ";" not in r}
    extras = {
        e: {_name(r) for r in requires if f'extra == "{e}"' in r} for e in meta.get_all("Provides-Extra")
    }
    assert plain == PRODUCT, requires
    assert extras == OPTIONAL, requires
    assert not (plain | set().union(*extras.values())) & STUDY
    imported = _third_party_imports(ROOT / "helpers" / "codec")
    assert {DISTRIBUTIONS.get(m, m) for m in imported} <= PRODUCT | OPTIONAL["onnx"], imported
    # The study's pinned environment (requirements.txt) is one the installed codec accepts.
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().split() if "==" in line)
    for requirement in map(Requirement, requires):
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])


def test_the_wheel_holds_the_codec_the_checkpoints_and_the_command_only(wheel):
    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        weights = {
            name: hashlib.sha256(whl.read(f"helpers/codec/weights/{name}")).hexdigest() for name in SHIPPED
        }
        entry_points = _metadata(whl, "entry_points.txt")
    codec = {p.relative_to(ROOT).as_posix() for p in (ROOT / "helpers" / "codec").rglob("*.py")}
    assert codec <= files and {"helpers/__init__.py", "helpers/paths.py"} <= files
    # Not the study's packages, nor its front door (python -m helpers), whose commands need them.
    modules = {f for f in files if f.endswith(".py")}
    assert modules == codec | {"helpers/__init__.py", "helpers/paths.py"}
    for name in SHIPPED:
        assert weights[name] == hashlib.sha256((paths.CHECKPOINTS / name).read_bytes()).hexdigest()
    assert "[console_scripts]\nleaf-codec = helpers.codec.cli:main" in entry_points
    from helpers.codec import cli

    assert callable(cli.main)


_PRODUCT_RUN = """
import importlib.util, sys
from pathlib import Path
import helpers.paths
from helpers.codec.cli import main
src, leaf, png = sys.argv[1:]
assert main(["compress", src, "-o", leaf, "--tune", "perceptual"]) == 0 and main(["decompress", leaf, "-o", png]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {study!r})
assert not loaded, loaded
for part in ("study", "training", "data", "commands"):
    assert importlib.util.find_spec("helpers." + part) is None, part
print(Path(helpers.paths.__file__).parent, helpers.paths.SHIPPED_CHECKPOINT, helpers.paths.PERCEPTUAL_CHECKPOINT,
      helpers.paths.V3_CHECKPOINT)
"""


@pytest.mark.slow
def test_the_installed_command_compresses_and_decompresses_a_leaf_from_any_folder(wheel, tmp_path):
    """``pip install`` of the wheel into a fresh virtualenv (its dependencies from the project's environment, as
    a .pth file, rather than a multi-GB download), then ``leaf-codec`` from a folder outside the repository: the
    installed package and its own copy of the checkpoints are used, and nothing of the study is imported."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (Path(purelib) / "project-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
               str(wheel)]  # fmt: skip
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    leaf = leaves(1)[0]
    Image.fromarray(leaf).save(elsewhere / "leaf.jpg", quality=95)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATA_DIR")}
    command = venv / "bin" / "leaf-codec"

    def run(*args):
        proc = subprocess.run(
            [command, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "leaf.leaf" in run("compress", "leaf.jpg", "-o", "leaf.leaf")
    run("decompress", "leaf.leaf", "-o", "leaf.png")
    assert np.asarray(Image.open(elsewhere / "leaf.png")).shape == leaf.shape
    assert "leaf-hyperprior" in run("info", "leaf.leaf")
    run("compress", "leaf.jpg", "-o", "v3.leaf", "--tune", "high", "--level", "10")  # codec v3 (issue 35)
    run("decompress", "v3.leaf", "-o", "v3.png")
    assert "leaf-hyperprior-v3" in run("info", "v3.leaf") and (elsewhere / "v3.png").is_file()

    script = _PRODUCT_RUN.replace("{study!r}", repr(set(STUDY_MODULES)))
    args = ["leaf.jpg", "perceptual.leaf", "perceptual.png"]
    proc = subprocess.run([python, "-c", script, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    package, mse, perceptual, v3 = (Path(p) for p in proc.stdout.splitlines()[-1].split())
    assert package == Path(purelib) / "helpers"
    assert mse == package / "codec" / "weights" / SHIPPED[0] and mse.is_file()
    assert perceptual == package / "codec" / "weights" / SHIPPED[1] and perceptual.is_file()
    assert v3 == package / "codec" / "weights" / SHIPPED[2] and v3.is_file()
    assert (elsewhere / "perceptual.png").is_file()
