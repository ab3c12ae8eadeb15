"""Google Colab set-up. A notebook's first cell clones the project on Colab (a notebook opened from GitHub has
nothing else); ``helpers.notebooks.setup()`` then calls ``setup_colab()``, which installs what the clone needs.
Locally and under papermill it touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import paths


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def setup_colab(data: bool = True, checkout: Path = paths.ROOT) -> bool:
    """On Colab: install the project's requirements and OpenJPEG (for the JPEG 2000 baseline), download
    PlantVillage unless ``DATA_DIR`` is set, and work in ``notebooks/`` as Jupyter and papermill do.
    Returns True if it set anything up, False elsewhere (where it touches nothing)."""
    if not in_colab():
        return False

    def sh(*cmd: str) -> None:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)

    # Colab already ships torch for its GPU; pip keeps what satisfies the pins and fills in the rest.
    sh(sys.executable, "-m", "pip", "install", "--quiet", "-r", str(Path(checkout) / "requirements.txt"))
    sh("apt-get", "install", "-y", "-qq", "libopenjp2-7")
    os.chdir(Path(checkout) / "notebooks")
    if data and not os.environ.get("DATA_DIR"):
        from .fetch import fetch_plantvillage

        fetch_plantvillage()
    return True
