"""Google Colab set-up: every notebook's first cell clones the project and calls ``setup_colab()`` when (and
only when) it runs on Colab; locally and under papermill the cell does nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Placeholder until the project has a public home; set LEAF_CODEC_REPO to use a fork.
REPO_URL = os.environ.get("LEAF_CODEC_REPO", "https://github.com/OWNER/leaf-codec-study")
COLAB_CHECKOUT = Path("/content/leaf-codec-study")


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def setup_colab(repo_url: str = REPO_URL, data: bool = True, checkout: Path = COLAB_CHECKOUT) -> bool:
    """On Colab: clone the project (unless present), install its requirements and OpenJPEG (for the JPEG 2000
    baseline), download PlantVillage unless ``DATA_DIR`` is set, and make the checkout the working directory.
    Returns True if it set anything up, False elsewhere (where it touches nothing)."""
    if not in_colab():
        return False
    checkout = Path(checkout)

    def sh(*cmd: str) -> None:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)

    if not (checkout / "helpers").is_dir():
        sh("git", "clone", "--quiet", "--depth", "1", repo_url, str(checkout))
    # Colab already ships torch for its GPU; pip keeps what satisfies the pins and fills in the rest.
    sh(sys.executable, "-m", "pip", "install", "--quiet", "-r", str(checkout / "requirements.txt"))
    sh("apt-get", "install", "-y", "-qq", "libopenjp2-7")
    os.chdir(checkout)
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    if data and not os.environ.get("DATA_DIR"):
        from .fetch import fetch_plantvillage

        fetch_plantvillage()
    return True
