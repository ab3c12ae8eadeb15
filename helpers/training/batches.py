"""Training batches: random crops with flips from images held in memory (PlantVillage leaves, and natural photos
for ``photo_share``), and the validation images of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from helpers import paths
from helpers.data.dataset import load_array, photo_pyramid, photo_split, read_manifest, split_paths
from helpers.training.config import TrainConfig


class CropSampler:
    """Random crops + flips from uint8 (3, H, W) images of any sizes (one (N, 3, H, W) array, or a list), held in
    memory: no worker processes, so both CPU cores train. Images smaller than a crop are left out."""

    def __init__(self, images, crop: int, batch_size: int, generator: torch.Generator):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        self.images = [im for im in images if min(im.shape[1:]) >= crop]
        self.crop, self.batch_size, self.g = crop, batch_size, generator

    def __call__(self) -> torch.Tensor:
        n, c = self.batch_size, self.crop
        picks = torch.randint(len(self.images), (n,), generator=self.g).tolist()
        corners = torch.rand(
            n, 2, generator=self.g, dtype=torch.float64
        ).tolist()  # where in each image, 0..1
        flips = (torch.rand(n, 2, generator=self.g) < 0.5).tolist()
        out = []
        for i, (v, u), (flip_x, flip_y) in zip(picks, corners, flips):
            im = self.images[i]
            y, x = int(v * (im.shape[1] - c + 1)), int(u * (im.shape[2] - c + 1))
            crop = im[:, y : y + c, x : x + c]
            crop = crop.flip(-1) if flip_x else crop
            out.append(crop.flip(-2) if flip_y else crop)
        return torch.stack(out).float().div_(255)


class MixedSampler:
    """A batch of PlantVillage crops followed by photo crops."""

    def __init__(self, *samplers):
        self.samplers = [s for s in samplers if s.batch_size > 0]

    def __call__(self) -> torch.Tensor:
        return torch.cat([s() for s in self.samplers])


def build_data(cfg: TrainConfig, data_root: Path, manifest: Path, g: torch.Generator, progress: bool):
    """The batch sampler (PlantVillage crops, plus photo crops when ``photo_share`` > 0) and validation images."""
    records = read_manifest(manifest)
    cache_tag = f"{manifest.stem}_{cfg.train_images or 'all'}"
    train_arr = load_array(split_paths(records, "train", data_root, cfg.train_images),
                           cache=paths.CACHE / f"train_{cache_tag}.npy", progress=progress)  # fmt: skip
    val_arr = torch.from_numpy(
        load_array(split_paths(records, "val", data_root, cfg.val_images), progress=False)
    )
    n_photo = round(cfg.photo_share * cfg.batch_size)
    sampler = CropSampler(train_arr, cfg.crop, cfg.batch_size - n_photo, g)
    if n_photo:
        photos = CropSampler(photo_pyramid(photo_split("train")), cfg.crop, n_photo, g)
        sampler = MixedSampler(sampler, photos)
    return sampler, val_arr
