"""PlantVillage data: scanning class folders, the grouped train/val/test split, image loading.

Split rule (documented in README): PlantVillage often has several photos of the same physical leaf. Their
file names share the series code after ``___`` and differ only in a ``.N`` suffix (``GHLB2 Leaf 154.1``,
``GHLB2 Leaf 154.4``), so the *group* of a file is its series code with that suffix (and any `` copy``)
removed. Whole groups are assigned to train/val/test by a seeded hash, so near-duplicates never straddle
the split. Whole classes can be held out as well: by default every Potato class is held out of training and
used to test the codec on a crop it never saw.

Preprocessing: the codec works on RGB in [0, 1] and does not normalise its input (the rate-distortion loss and
PSNR are defined on pixel values); ``normalize=True`` adds ImageNet channel normalisation for models that want
it (a classifier, say). ``make_loader(train=True)`` serves the seed's augmentation (``train_transform``);
``helpers.training.batches`` draws its own random crops from an in-memory array instead (no worker processes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from helpers import paths
from helpers.codec.errors import DataError
from helpers.codec.fileio import atomic_write
from helpers.codec.imageio import read_image  # the project's one image reader (also for metrics and compress)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
HOLDOUT_CLASS_PREFIXES = ("Potato",)  # unseen-crop evaluation set
HOLDOUT = "holdout_class"
MANIFEST_FIELDS = ("path", "class", "group", "split")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def seeded_unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (a seeded hash): splits that no file order or machine can change."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def assign_split(group: str, cls: str, seed: int = 0) -> str:
    if cls.startswith(HOLDOUT_CLASS_PREFIXES):
        return HOLDOUT
    u = seeded_unit(f"{seed}:{group}")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(MANIFEST_FIELDS)
    w.writerows((r.path, r.cls, r.group, r.split) for r in records)
    atomic_write(path, text.getvalue().encode(), force=True)


def read_manifest(path: Path) -> list[Record]:
    if not Path(path).is_file():
        raise DataError(f"split manifest not found: {path} (run notebooks/01_preprocess or `make manifest`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(MANIFEST_FIELDS) - set(rows[0]):
        raise DataError(f"{path} is not a split manifest (columns {', '.join(MANIFEST_FIELDS)} expected)")
    return [Record(r["path"], r["class"], r["group"], r["split"]) for r in rows]


def test_split(limit: int | None = None) -> list[Path]:
    """The committed manifest's test images under ``DATA_DIR`` (``limit``: an even spread across classes)."""
    return split_paths(read_manifest(paths.MANIFEST), "test", paths.data_dir(), limit)


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
            return np.array(arr)  # a writable copy in memory
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(tqdm(paths, desc="decode", disable=not progress, mininterval=2)):
        img = read_image(p)
        if img.shape[:2] != (size, size):
            img = np.asarray(ImageOps.fit(Image.fromarray(img), (size, size), Image.BICUBIC))
        out[i] = img.transpose(2, 0, 1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda f: np.save(f, out), force=True)
    return out


def compare_manifests(committed, rescanned) -> dict:
    """What differs between a manifest and a fresh scan: ``missing`` (in the manifest, not found/readable now),
    ``changed`` (same file, other class/group/split) and ``extra`` (new images the manifest does not list;
    harmless, e.g. a downloaded PlantVillage holds more images than the study uses)."""
    old, new = {r.path: r for r in committed}, {r.path: r for r in rescanned}
    return {
        "missing": sorted(set(old) - set(new)),
        "changed": sorted(p for p in set(old) & set(new) if old[p] != new[p]),
        "extra": sorted(set(new) - set(old)),
    }


# -- training/evaluation tensors ----------------------------------------------------------------------------


def train_transform(size: int = 256, normalize: bool = False):
    """The seed's augmentation: RandomResizedCrop (torchvision's default scale 0.08-1), horizontal flip with
    p=0.3, rotation within +-10 degrees (corners filled black, as in the seed), brightness/contrast jitter 0.2,
    then float [0, 1]. Geometry and jitter run on uint8 and are converted last (ToTensor first gives the same
    up to rounding, at four times the memory traffic)."""
    from torchvision.transforms import v2

    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(p=0.3),
        v2.RandomRotation(10),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
        v2.ToDtype(torch.float32, scale=True),
    ]
    return v2.Compose(steps + ([v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else []))


def eval_transform(size: int = 256, normalize: bool = False):
    """Deterministic: resize the short side to ``size``, centre-crop, float [0, 1] (identity on 256x256
    PlantVillage apart from the dtype)."""
    from torchvision.transforms import v2

    steps = [
        v2.ToImage(),
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
    ]
    return v2.Compose(steps + ([v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else []))


class LeafDataset(torch.utils.data.Dataset):
    """Images of one split of the manifest as ``(float tensor (3, H, W), class index)``.

    ``records`` defaults to the committed manifest; ``limit`` keeps an even spread (as ``split_paths``).
    Class indices follow the sorted class names of all records, so they are the same for every split.
    """

    def __init__(self, split: str, root: Path | None = None, transform=None, records=None,
                 limit: int | None = None):  # fmt: skip
        records = read_manifest(paths.MANIFEST) if records is None else list(records)
        self.root = check_data_dir(Path(root) if root is not None else paths.data_dir())
        self.classes = sorted({r.cls for r in records})
        chosen = [r for r in records if r.split == split]
        if not chosen:
            splits = sorted({r.split for r in records})
            raise DataError(f"split {split!r} has no images (manifest splits: {', '.join(splits)})")
        if limit is not None and limit < len(chosen):
            idx = np.linspace(0, len(chosen) - 1, limit).round().astype(int)
            chosen = [chosen[i] for i in idx]
        self.records = chosen
        self.transform = transform if transform is not None else eval_transform()
        self._label = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        return self.transform(read_image(self.root / r.path)), self._label[r.cls]


def make_loader(split: str, batch_size: int, train: bool, num_workers: int | None = None,
                root: Path | None = None, records=None, limit: int | None = None, size: int = 256,
                normalize: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:  # fmt: skip
    """DataLoader over one split: augmented, shuffled and without a ragged last batch when ``train``,
    otherwise in manifest order. Workers default to min(2, CPUs); memory is pinned only when a GPU exists."""
    tf = train_transform(size, normalize) if train else eval_transform(size, normalize)
    ds = LeafDataset(split, root=root, transform=tf, records=records, limit=limit)
    workers = min(2, os.cpu_count() or 1) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(ds) >= batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),  # same shuffle and augmentation order per seed
    )


# -- natural photographs at camera scale (codec v2 training material) ---------------------------------------
PHOTO_VAL_SHARE = 0.15  # of the Wikimedia photos, held out for validation (seeded, by file name)


def photo_split(split: str, root: Path | None = None, seed: int = 0) -> list[Path]:
    """The ``train`` or ``val`` share of the Wikimedia photos in ``photos_dir()/wikipedia`` (a seeded hash of
    each file name decides, as for PlantVillage groups). Kodak is never training material."""
    folder = (Path(root) if root is not None else paths.photos_dir()) / "wikipedia"
    if not folder.is_dir():
        raise DataError(f"photo folder not found: {folder} (set PHOTOS_DIR to the folder holding wikipedia/)")
    chosen = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if (seeded_unit(f"{seed}:photo:{p.name}") < PHOTO_VAL_SHARE) == (split == "val"):
            chosen.append(p)
    if not chosen:
        raise DataError(f"no {split} photos in {folder}")
    return chosen


def photo_pyramid(image_paths, scales=(1, 2, 4)) -> list[torch.Tensor]:
    """Each photo as uint8 (3, H, W) tensors at full resolution and reduced by each factor in ``scales``
    (area-averaged, as a camera's downscaler would), so crops cover detail at several scales."""
    out = []
    for p in image_paths:
        im = Image.fromarray(read_image(p))
        for s in scales:
            small = im if s == 1 else im.resize((im.width // s, im.height // s), Image.BOX)
            out.append(torch.from_numpy(np.asarray(small).transpose(2, 0, 1).copy()))
    return out
