"""Google Colab set-up. A notebook's first cell clones the project on Colab (a notebook opened from GitHub has
nothing else); ``helpers.study.notebooks.setup()`` then calls ``setup_colab()``, which installs what Colab lacks.
Locally and under papermill it touches nothing.

Colab ships its own CUDA torch, numpy, pandas, matplotlib, pillow, scipy...: the set-up keeps them (replacing
one in a running kernel needs a restart), so it does not use requirements.txt. It installs
``requirements-colab.txt`` (what Colab lacks, pins with wheels for its Python 3.12 and 3.13 runtimes), then
``requirements-colab-nodeps.txt`` with ``--no-deps``: CompressAI 1.2.8 declares numpy<2 but writes the same
files with Colab's numpy 2; pip builds it from its sdist where it has no wheel (Python 3.13). pip runs under
constraints that hold Colab's core packages at their versions, and the imports are checked in this kernel.
``python -m helpers colab-check`` checks the plan offline against Colab's published package lists."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from helpers import paths
from helpers.codec.errors import LeafCodecError

# The repository the notebooks clone on Colab; a fork sets LEAF_CODEC_REPO (README, "Colab").
DEFAULT_REPO = "https://github.com/OWNER/leaf-codec-study"
CLONE = Path("/content/leaf-codec-study")
REQUIREMENTS = "requirements-colab.txt"
NO_DEPS = "requirements-colab-nodeps.txt"
# Colab's own packages: pip must not replace them.
CORE = ("torch", "torchvision", "torchaudio", "numpy", "pandas", "matplotlib", "pillow", "scipy", "jax", "jaxlib",
        "tensorflow", "opencv-python", "opencv-python-headless", "opencv-contrib-python")  # fmt: skip
# What the study imports from the packages installed here (compressai.ans: its C++ rANS coder).
IMPORTS = ("compressai", "compressai.ans", "pytorch_msssim", "lpips", "glymur", "papermill", "onnx",
           "onnxruntime")  # fmt: skip


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def repo_url() -> str:
    return os.environ.get("LEAF_CODEC_REPO") or DEFAULT_REPO


def _sh(*cmd: str) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure_checkout(root: Path = paths.ROOT) -> Path:
    """``root`` if it is a checkout of the project, else a clone of ``repo_url()`` in /content (made once)."""
    if (Path(root) / REQUIREMENTS).is_file():
        return Path(root)
    if not (CLONE / REQUIREMENTS).is_file():
        _sh("git", "clone", "-q", "--depth=1", repo_url(), str(CLONE))
    return CLONE


def installed_versions(names=CORE) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def install(root: Path) -> None:
    """pip-install what Colab lacks, Colab's core packages held at their versions, and import it here."""
    core = installed_versions()
    with tempfile.NamedTemporaryFile("w", prefix="colab-core-", suffix=".txt", delete=False) as held:
        held.write("".join(f"{name}=={version}\n" for name, version in core.items()))
    pip = (sys.executable, "-m", "pip", "install", "--quiet", "--constraint", held.name)
    try:
        _sh(*pip, "--requirement", str(Path(root) / REQUIREMENTS))
        # compressai: a wheel on Python 3.12, else its sdist, built with the pybind11/setuptools/wheel here
        _sh(*pip, "--no-deps", "--no-build-isolation", "--requirement", str(Path(root) / NO_DEPS))
    finally:
        os.unlink(held.name)
    check_imports(core)


def check_imports(core: dict[str, str]) -> None:
    """Import what the study needs in the running kernel (no restart): Colab's core packages unchanged."""
    importlib.invalidate_caches()
    changed = [f"{n} {v} -> {now}" for n, now in installed_versions(core).items() if (v := core[n]) != now]
    if changed:
        raise LeafCodecError(f"pip replaced {', '.join(changed)}: Runtime > Restart session, then run again")
    for module in IMPORTS:
        importlib.import_module(module)
    print(
        "imports ok: " + ", ".join(f"{n} {v}" for n, v in installed_versions(("compressai", *core)).items())
    )


def setup_colab(data: bool = True, checkout: Path = paths.ROOT) -> bool:
    """On Colab: install what the project needs (``install``) and OpenJPEG (for the JPEG 2000 baseline),
    download PlantVillage unless ``DATA_DIR`` is set, and work in ``notebooks/`` as Jupyter and papermill do.
    Returns True if it set anything up, False elsewhere (where it touches nothing)."""
    if not in_colab():
        return False
    root = ensure_checkout(checkout)
    install(root)
    _sh("apt-get", "install", "-y", "-qq", "libopenjp2-7")
    os.chdir(root / "notebooks")
    if data and not os.environ.get("DATA_DIR"):
        from helpers.data.fetch import fetch_plantvillage

        fetch_plantvillage()
    return True
