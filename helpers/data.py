"""PlantVillage data: scanning class folders, the grouped train/val/test split, image loading.

Split rule (documented in README): PlantVillage often has several photos of the same physical leaf. Their
file names share the series code after ``___`` and differ only in a ``.N`` suffix (``GHLB2 Leaf 154.1``,
``GHLB2 Leaf 154.4``), so the *group* of a file is its series code with that suffix (and any `` copy``)
removed. Whole groups are assigned to train/val/test by a seeded hash, so near-duplicates never straddle
the split. Whole classes can be held out as well: by default every Potato class is held out of training and
used to test the codec on a crop it never saw.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
HOLDOUT_CLASS_PREFIXES = ("Potato",)  # unseen-crop evaluation set
HOLDOUT = "holdout_class"
MANIFEST_FIELDS = ("path", "class", "group", "split")


@dataclass(frozen=True)
class Record:
    path: str  # relative to the data root, posix separators
    cls: str
    group: str
    split: str


def group_key(filename: str) -> str:
    """Photo-series code shared by near-duplicate photos of one leaf (see module docstring)."""
    stem = Path(filename).stem
    code = stem.rsplit("___", 1)[-1]
    code = re.sub(r"(\s*copy)?(\.\d+)?$", "", code, flags=re.IGNORECASE).strip()
    return code or stem


def assign_split(group: str, cls: str, seed: int = 0) -> str:
    if cls.startswith(HOLDOUT_CLASS_PREFIXES):
        return HOLDOUT
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if u < edge:
            return split
    return "test"


def check_data_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset folder not found: {root} (set DATA_DIR to a PlantVillage-style <class>/<image> "
            "folder, or run `make data` to download PlantVillage)"
        )
    if not any(p.is_dir() for p in root.iterdir()):
        raise DataError(f"dataset folder {root} has no class sub-folders (<class>/<image> expected)")
    return root


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3), applying its EXIF orientation."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"not an image file but a folder: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def scan_dataset(root: Path, seed: int = 0, verify: bool = True, progress: bool = True):
    """Records for every readable image under ``root/<class>/``, and (path, reason) for skipped files."""
    from tqdm.auto import tqdm

    root = check_data_dir(root)
    candidates = sorted(p for p in root.glob("*/*") if p.is_file())
    records, skipped = [], []
    for p in tqdm(candidates, desc="scan", disable=not progress, mininterval=2):
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((rel, "not an image file"))
            continue
        if verify:
            try:
                read_image(p)
            except DataError as exc:
                skipped.append((rel, str(exc)))
                continue
        cls = p.parent.name
        group = group_key(p.name)
        records.append(Record(rel, cls, group, assign_split(f"{cls}/{group}", cls, seed)))
    if not records:
        raise DataError(f"no readable images under {root}")
    return records, skipped


def write_manifest(records, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_FIELDS)
        for r in records:
            w.writerow((r.path, r.cls, r.group, r.split))
    tmp.replace(path)


def read_manifest(path: Path) -> list[Record]:
    if not Path(path).is_file():
        raise DataError(f"split manifest not found: {path} (run notebooks/01_preprocess or `make manifest`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(MANIFEST_FIELDS) - set(rows[0]):
        raise DataError(f"{path} is not a split manifest (columns {', '.join(MANIFEST_FIELDS)} expected)")
    return [Record(r["path"], r["class"], r["group"], r["split"]) for r in rows]


def split_paths(records, split: str, root: Path, limit: int | None = None) -> list[Path]:
    """Absolute paths of one split, in manifest order (``limit`` keeps an even spread across classes)."""
    chosen = [r for r in records if r.split == split]
    if limit is not None and limit < len(chosen):
        idx = np.linspace(0, len(chosen) - 1, limit).round().astype(int)
        chosen = [chosen[i] for i in idx]
    return [Path(root) / r.path for r in chosen]


def load_array(paths, cache: Path | None = None, size: int = 256, progress: bool = True) -> np.ndarray:
    """Stack images (centre-cropped/resized to ``size``) as uint8 (N, 3, size, size), cached as .npy."""
    from tqdm.auto import tqdm

    if cache is not None and cache.is_file():
        arr = np.load(cache, mmap_mode="r")
        if arr.shape[0] == len(paths):
            return np.asarray(arr)
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(tqdm(paths, desc="decode", disable=not progress, mininterval=2)):
        img = read_image(p)
        if img.shape[:2] != (size, size):
            img = np.asarray(ImageOps.fit(Image.fromarray(img), (size, size), Image.BICUBIC))
        out[i] = img.transpose(2, 0, 1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)
    return out
