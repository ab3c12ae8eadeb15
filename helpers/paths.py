"""Where things live. Every notebook and command resolves paths here, once."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OUTPUTS = ROOT / "outputs"
CHECKPOINTS = OUTPUTS / "checkpoints"
FIGURES = OUTPUTS / "figures"
TABLES = OUTPUTS / "tables"
RESULTS = OUTPUTS / "results"
CACHE = DATA / "cache"  # decoded-image caches; never committed
MANIFEST = DATA / "split_manifest.csv"
# Where `make data` puts PlantVillage when DATA_DIR is not given.
DOWNLOADED_DATA = DATA / "plantvillage"
# Installed as the codec alone (`pip install .`, pyproject.toml), the shipped checkpoints travel inside the package.
INSTALLED_CHECKPOINTS = Path(__file__).resolve().parent / "codec" / "weights"


def _shipped(name: str) -> Path:
    """A shipped checkpoint: the repository's (outputs/checkpoints, where training writes it) in a checkout, else
    the installed package's copy."""
    repo = CHECKPOINTS / name
    return repo if repo.is_file() or not INSTALLED_CHECKPOINTS.is_dir() else INSTALLED_CHECKPOINTS / name


SHIPPED_CHECKPOINT = _shipped("leaf_hyperprior.pth.tar")
# The perceptually tuned checkpoint (issue 11: the paper's perceptual objective), used by the study when it exists.
PERCEPTUAL_CHECKPOINT = _shipped("leaf_hyperprior_perceptual.pth.tar")
# Codec v3 (issue 19's campaign, shipped by issue 35 as `--tune high`): wider latent, ten levels, photos in training.
V3_CHECKPOINT = _shipped("leaf_hyperprior_v3.pth.tar")
PERCEPTUAL_RUN = OUTPUTS / "runs" / "perceptual" / "final"
# The training run that produced the shipped checkpoint (its config.json names the run it was fine-tuned from).
SHIPPED_RUN = OUTPUTS / "runs" / "leaf_hyperprior_ft"


def relative_name(path: str | Path, root: str | Path | None = ROOT) -> str:
    """``path`` relative to ``root`` in POSIX form; the path as given when it lies outside ``root``. Paths shown in
    tables, figure links, model cards and run configs go through it, so they read the same everywhere."""
    path = Path(path)
    if root is None:
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def data_dir() -> Path:
    """PlantVillage root (``<class>/<image>``): ``$DATA_DIR`` if set, else the downloaded copy."""
    return Path(os.environ.get("DATA_DIR") or DOWNLOADED_DATA).expanduser().resolve()


def photos_dir() -> Path:
    """Natural photographs (``kodak/`` test only, ``wikipedia/`` for training): ``$PHOTOS_DIR`` if set, else
    ``photos`` beside the PlantVillage folder (the shared data layout: ``shared/data/{plantvillage,photos}``)."""
    default = data_dir().parent / "photos"
    return Path(os.environ.get("PHOTOS_DIR") or default).expanduser().resolve()
