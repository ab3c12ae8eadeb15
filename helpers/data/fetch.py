"""Download PlantVillage when no ``DATA_DIR`` is given: a sparse, shallow, blobless git checkout of the public
dataset repository, so only the colour images of the classes we use are transferred (not the grayscale and
segmented copies, nor the other 23 classes).

The repository names its class folders ``Pepper,_bell___Bacterial_spot``, ``Tomato___Bacterial_spot``...;
the copy this study was built on (and the committed split manifest) uses ``Pepper__bell___Bacterial_spot``,
``Tomato_Bacterial_spot``... File names are the same in both, so each checked-out folder is linked into
``dest`` under our name and the manifest's paths resolve unchanged. The repository holds more images per class
than the study's 12,001; the manifest lists the ones used and the rest are ignored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from helpers import paths
from helpers.codec.errors import DataError

PLANTVILLAGE_REPO = "https://github.com/spMohanty/PlantVillage-Dataset"
# our class folder name -> the repository's folder under raw/color
CLASS_FOLDERS = {
    "Pepper__bell___Bacterial_spot": "Pepper,_bell___Bacterial_spot",
    "Pepper__bell___healthy": "Pepper,_bell___healthy",
    "Potato___Early_blight": "Potato___Early_blight",
    "Potato___Late_blight": "Potato___Late_blight",
    "Potato___healthy": "Potato___healthy",
    "Tomato_Bacterial_spot": "Tomato___Bacterial_spot",
    "Tomato_Early_blight": "Tomato___Early_blight",
    "Tomato_Late_blight": "Tomato___Late_blight",
    "Tomato_Leaf_Mold": "Tomato___Leaf_Mold",
    "Tomato_Septoria_leaf_spot": "Tomato___Septoria_leaf_spot",
    "Tomato_Spider_mites_Two_spotted_spider_mite": "Tomato___Spider_mites Two-spotted_spider_mite",
    "Tomato__Target_Spot": "Tomato___Target_Spot",
    "Tomato__Tomato_YellowLeaf__Curl_Virus": "Tomato___Tomato_Yellow_Leaf_Curl_Virus",
    "Tomato__Tomato_mosaic_virus": "Tomato___Tomato_mosaic_virus",
    "Tomato_healthy": "Tomato___healthy",
}
_OUR_NAME = {repo: ours for ours, repo in CLASS_FOLDERS.items()}


def class_pairs(classes=None) -> list[tuple[str, str]]:
    """(our folder name, repository folder name) for each class; a name of either spelling is accepted, and
    a name in neither table is used as is on both sides (any PlantVillage class can be fetched)."""
    if classes is None:
        return list(CLASS_FOLDERS.items())
    return [(c, CLASS_FOLDERS[c]) if c in CLASS_FOLDERS else (_OUR_NAME.get(c, c), c) for c in classes]


def _git(*args: str, cwd: Path | None = None) -> str:
    # No credential prompt: a wrong or private URL must fail, not hang waiting for a password.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataError(
            "git is not installed; it is needed to download PlantVillage (or set DATA_DIR)"
        ) from None
    if done.returncode:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        # the first fatal line names the cause; later ones are generic ("Could not read from remote ...")
        why = next((ln for ln in lines if ln.lower().startswith(("fatal", "error"))), None)
        raise DataError(f"git {args[0]} failed: {why or (lines[-1] if lines else f'exit {done.returncode}')}")
    return done.stdout


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def fetch_plantvillage(dest: Path = paths.DOWNLOADED_DATA, repo_url: str = PLANTVILLAGE_REPO,
                       subdir: str = "raw/color", classes=None, checkout: Path | None = None,
                       log=print) -> Path:  # fmt: skip
    """Make ``dest/<class>/`` hold each class's images; returns ``dest``.

    The checkout lives in ``checkout`` (default ``<dest's parent>/third_party/<repo name>``) and each class
    folder is symlinked into ``dest`` (copied where links are not allowed). Classes already present are
    skipped, so a second call does nothing; an interrupted call resumes.
    """
    dest = Path(dest)
    pairs = class_pairs(classes)
    todo = [(ours, theirs) for ours, theirs in pairs if not _has_images(dest / ours)]
    if not todo:
        log(f"PlantVillage already present in {dest} ({len(pairs)} classes); nothing to fetch")
        return dest
    name = repo_url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1] or "PlantVillage-Dataset"
    checkout = Path(checkout) if checkout else dest.parent / "third_party" / name
    wanted = [f"{subdir}/{theirs}" for _, theirs in todo]
    if shutil.which("git") is None:
        raise DataError("git is not installed; it is needed to download PlantVillage (or set DATA_DIR)")
    if not (checkout / ".git").is_dir():
        if checkout.exists():
            shutil.rmtree(checkout)  # a clone that died before git wrote anything usable
        checkout.parent.mkdir(parents=True, exist_ok=True)
        log(f"cloning {repo_url} (shallow, blobless, sparse) into {checkout}")
        try:
            _git(
                "clone", "--quiet", "--depth", "1", "--filter=blob:none", "--sparse", repo_url, str(checkout)
            )
        except DataError as exc:
            raise DataError(f"cannot download PlantVillage from {repo_url}: {exc}") from None
        _git("sparse-checkout", "set", *wanted, cwd=checkout)  # cone mode: whole folders
    else:
        log(f"adding {len(todo)} class folder(s) to the existing checkout {checkout}")
        _git("sparse-checkout", "add", *wanted, cwd=checkout)
    dest.mkdir(parents=True, exist_ok=True)
    for ours, theirs in todo:
        src = checkout / subdir / theirs
        if not _has_images(src):
            raise DataError(f"{repo_url} has no images in {subdir}/{theirs} (class {ours})")
        target = dest / ours
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)  # present but empty
        try:
            target.symlink_to(src.resolve(), target_is_directory=True)
        except OSError:
            shutil.copytree(src, target)
        log(f"  {ours}: {sum(1 for _ in src.iterdir())} files")
    log(f"PlantVillage ready in {dest}; skipped {len(pairs) - len(todo)} class(es) already present")
    return dest
