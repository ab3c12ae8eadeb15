"""Importance maps for region-of-interest coding: one weight in [0, 1] per 16 x 16 block (one latent position),
made from the leaf and its lesions, or read from a user's mask.

Everything is decided on a *work image*: the photo reduced by box averaging by a power of two ``f`` (1 to 16)
until its long side is at most ``WORK_SIDE`` pixels (a PlantVillage leaf: f = 1; a 12 MP phone photo: f = 8).
``f`` divides ``BLOCK``, so each work pixel lies in one block, and the rules see an image of about the same size
whatever the camera (measured on one core: 85-130 ms for a 4000 x 3000 photo, ~20 ms for a 256 x 256 leaf).

**Leaf** (``leaf_mask``). The seed is *vegetation colour*: hue above 60 (green above red: yellow-green) up to
170 degrees (blue-green), chroma (max - min of R, G, B) at least 12 of 255 and HSV saturation at least 0.18 on a
plain backdrop, 0.28 in a scene; opened 2 x 2. A *plain backdrop* is a border ring (1/32 of the short side)
that is at least 70 % within 0.03 of its median chromaticity (|dr| + |dg|, r = R / (R + G + B)) with a median
saturation under 0.45: PlantVillage's grey and bluish fabrics (297 of 300 test leaves), a sheet of paper, a wall.

* On a plain backdrop the photo shows one subject, so whatever is coloured like a plant and connected to the
  seed is leaf as well: brown, tan and yellow tissue at the leaf's margin (early and late blight, a dried leaf).
  Coloured like a plant: hue 20..170, chroma at least 15, saturation at least the ring's median + 0.08 (and at
  least 0.15), yellower than the backdrop ((G - B) / value at least the ring's median + 0.11) and not darker
  than 0.4 of the ring's median value. The greyish-olive mould of late blight (saturation ~0.18) just passes;
  a backdrop's warmer corner (0.10-0.15) and cast shadows (dark, reddish or purplish grey) do not. Dark
  necrotic tissue at the margin is as dark as a shadow and is lost unless enclosed (then it is a hole).
* In a scene (a field, a street, a landscape) brown is soil, bark, rust or brick as often as leaf, so the leaf
  is the vegetation colour alone; the higher saturation floor keeps out what a colour cast tints green (Kodak's
  pale yellow-green clouds, sea and sand sit at 0.18-0.25; foliage at 0.3-0.7).

Then a 3 x 3 closing, holes filled (dark and brown lesions inside a leaf, specular highlights; in a scene only
holes under ``SCENE_HOLE_SHARE`` of the image, so that a house enclosed by trees stays background) and regions
under ``MIN_AREA_SHARE`` of the image dropped (specks of green in a city).

**Lesions** (``lesion_mask``): inside the leaf eroded by ``LESION_INSET`` work pixels (the outline mixes leaf
and background), relative to the leaf's own healthy colour, the 75th percentile of its hue (its greenest
quarter: a median would land on the lesions of a half-necrotic leaf). A lesion pixel is

* chromatic (chroma >= 10) with a hue at least ``LESION_HUE_SHIFT`` degrees below that reference *and* under
  ``LESION_HUE_CAP`` (70, yellow): necrotic brown, tan and chlorotic yellow tissue. The cap keeps out the pale
  yellow-green midribs and veins (hue ~100 on a leaf of ~130), which a shift alone marks on every healthy leaf;
* or grey (saturation under 0.15 or chroma under 10) between 0.4 and 1.2 times the leaf's median value: the
  grey and tan centres of spots. Brighter is a specular highlight; darker, a fold's shadow.

Opened 2 x 2 (single pixels are noise). A block is a lesion block when lesions cover ``LESION_BLOCK_SHARE`` of it.

**Maps** (``importance_map``): "leaf" is 1 on every block holding any leaf pixel (max pooling, see
``block_map``), 0 elsewhere; "lesion" is 1 on lesion blocks, ``LEAF_WEIGHT`` on the other leaf blocks, 0
elsewhere; "auto" (``auto_kind``) is "lesion" when lesions cover ``AUTO_LESION_SHARE`` of the leaf's pixels,
else "leaf", and all ones (uniform coding) when the leaf covers less than ``MIN_LEAF_SHARE`` of the image: a
photo without a leaf must not lose its whole content to the background.

Known failures (seen on the sets): a very dark, hairy leaf on dark fabric (chroma under 12 almost everywhere) is
found in pieces; in scenes, anything green is vegetation (a green dress, green-lit glass or smoke, teal sea), and
dry or autumn foliage (yellow, orange, brown) is not; on a plain backdrop a coloured object that touches
something green is taken whole (a ceiling medallion); tiny dark spots (tomato bacterial spot at 256 px) are
missed; dark necrotic margins (above).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from helpers.codec.container import latent_grid
from helpers.codec.errors import DataError, shown
from helpers.codec.stage_timer import stage

ROI_KINDS = ("auto", "leaf", "lesion")  # what `compress --roi` accepts besides a mask file
BLOCK = 16  # pixels per latent position: one map value per 16 x 16 block

LEAF_WEIGHT = 0.6  # "lesion" maps: the healthy leaf's blocks
MIN_LEAF_SHARE = 0.02  # "auto": less leaf than this share of the image codes uniformly
# "auto": lesions on this share of the leaf's pixels make a "lesion" map. Measured on 20 test leaves per class:
# healthy leaves (60) 0-0.01 but one at 0.04; early and late blight medians 0.08-0.17; Septoria 0.05, pepper
# bacterial spot 0.06, tomato bacterial spot 0.02, leaf mould 0.015, target spot and spider mites under 0.01.
AUTO_LESION_SHARE = 0.03
LESION_BLOCK_SHARE = 0.03  # a block with this share of lesion pixels is a lesion block

WORK_SIDE = 512  # the work image's long side is at most this many pixels (module docstring)
GREEN_HUE = (60.0, 170.0)  # degrees: vegetation colour (above the first)
GREEN_MIN_CHROMA, GREEN_MIN_SATURATION, SCENE_GREEN_MIN_SATURATION = 12.0, 0.18, 0.28
PLANT_HUE = (20.0, 170.0)  # degrees: plant colours (brown to blue-green), on a plain backdrop
PLANT_MIN_SATURATION, PLANT_SATURATION_MARGIN, PLANT_MIN_CHROMA, PLANT_MIN_YELLOW = 0.15, 0.08, 15.0, 0.11
PLANT_MIN_VALUE = 0.4  # of the backdrop's median value: darker is a cast shadow (or, if enclosed, a hole)
PLAIN_SHARE, PLAIN_DISTANCE, PLAIN_MAX_SATURATION = 0.7, 0.03, 0.45  # what a plain backdrop is
MIN_AREA_SHARE = 0.002  # leaf regions smaller than this share of the image are dropped
SCENE_HOLE_SHARE = 0.05  # in scenes, holes in the vegetation up to this share of the image are filled
LESION_HUE_SHIFT, LESION_HUE_CAP = 25.0, 70.0  # degrees
LESION_INSET = 2  # work pixels: lesions are looked for this far inside the leaf's outline
LESION_MIN_CHROMA, LESION_GREY_SATURATION = 10.0, 0.15
LESION_GREY_VALUE = (0.4, 1.2)  # grey lesions: this range times the leaf's median value

_SQUARE2, _SQUARE3 = np.ones((2, 2), bool), np.ones((3, 3), bool)


# Rows and columns of an image's map: its latent size (the image padded to a multiple of 64 pixels).
map_shape = latent_grid


def _work_image(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """The work image (float32 (h, w, 3), 0..255; h = ceil(H / f)) and its reduction factor ``f``."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    f = 1
    while f < BLOCK and max(rgb.shape[:2]) > WORK_SIDE * f:
        f *= 2
    if f == 1:
        return rgb.astype(np.float32), 1
    small = Image.fromarray(np.ascontiguousarray(rgb)).reduce(f)  # box means; a partial last box included
    return np.asarray(small, dtype=np.float32), f


def _features(a: np.ndarray) -> dict[str, np.ndarray]:
    """Per work pixel: hue (degrees), HSV saturation, chroma, value (max of R, G, B), G - B, chromaticities."""
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    mx, mn = a.max(axis=-1), a.min(axis=-1)
    chroma = mx - mn
    c = np.maximum(chroma, 1e-3)
    hue = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4)) * 60
    total = np.maximum(r + g + b, 1)
    return {"hue": hue, "saturation": chroma / np.maximum(mx, 1), "chroma": chroma, "value": mx,
            "yellow": (g - b) / np.maximum(mx, 1), "r": r / total, "g": g / total}  # fmt: skip


def _in(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return (x >= bounds[0]) & (x <= bounds[1])


def _plain_backdrop(ft: dict) -> tuple[bool, dict[str, float]]:
    """Whether the border ring is a plain backdrop (module docstring); and its median saturation, value and
    yellowness."""
    h, w = ft["hue"].shape
    k = max(1, min(h, w) // 32)
    ring = np.zeros((h, w), bool)
    ring[:k], ring[-k:], ring[:, :k], ring[:, -k:] = True, True, True, True
    r, g = ft["r"][ring], ft["g"][ring]
    near = np.abs(r - np.median(r)) + np.abs(g - np.median(g)) < PLAIN_DISTANCE
    medians = {name: float(np.median(ft[name][ring])) for name in ("saturation", "value", "yellow")}
    return bool(near.mean() >= PLAIN_SHARE and medians["saturation"] < PLAIN_MAX_SATURATION), medians


def _morphology(operation, mask: np.ndarray, structure: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``operation`` (a scipy.ndimage binary morphology) with the mask continued beyond the image's edges (edge
    values repeated): the image's border is not an outline (scipy would erode a leaf that touches it)."""
    k = iterations * max(structure.shape)
    padded = np.pad(mask, k, mode="edge")
    return operation(padded, structure, iterations=iterations)[k:-k, k:-k]


def _regions(mask: np.ndarray, area: float, small: bool) -> np.ndarray:
    """The connected regions of ``mask`` under ``area`` pixels (``small``), or those of at least that."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, np.arange(1, n + 1))
    keep = np.concatenate([[False], (sizes < area) if small else (sizes >= area)])
    return keep[labels]


def _leaf_small(ft: dict) -> np.ndarray:
    """The leaf mask of the work image (module docstring)."""
    hue, saturation, chroma = ft["hue"], ft["saturation"], ft["chroma"]
    plain, ring = _plain_backdrop(ft)
    leaf = (_in(hue, GREEN_HUE) & (hue > GREEN_HUE[0]) & (chroma >= GREEN_MIN_CHROMA)
            & (saturation >= (GREEN_MIN_SATURATION if plain else SCENE_GREEN_MIN_SATURATION)))  # fmt: skip
    leaf = _morphology(ndimage.binary_opening, leaf, _SQUARE2)
    if plain and leaf.any():
        plant = (_in(hue, PLANT_HUE) & (chroma >= PLANT_MIN_CHROMA)
                 & (saturation >= max(PLANT_MIN_SATURATION, ring["saturation"] + PLANT_SATURATION_MARGIN))
                 & (ft["yellow"] >= ring["yellow"] + PLANT_MIN_YELLOW)
                 & (ft["value"] >= PLANT_MIN_VALUE * ring["value"]))  # fmt: skip
        leaf = ndimage.binary_propagation(leaf, mask=plant | leaf)
    leaf = _morphology(ndimage.binary_closing, leaf, _SQUARE3)
    holes = ndimage.binary_fill_holes(leaf) & ~leaf
    if not plain:
        holes = _regions(holes, SCENE_HOLE_SHARE * leaf.size, small=True)
    return _regions(leaf | holes, MIN_AREA_SHARE * leaf.size, small=False)


def _lesion_small(ft: dict, leaf: np.ndarray) -> np.ndarray:
    """The lesion mask of the work image, inside ``leaf`` (module docstring)."""
    inner = _morphology(ndimage.binary_erosion, leaf, _SQUARE3, LESION_INSET)
    chromatic = ft["chroma"] >= LESION_MIN_CHROMA
    if not (inner & chromatic).any():
        return np.zeros_like(leaf)
    hue, value = ft["hue"], ft["value"]
    healthy_hue = float(np.percentile(hue[inner & chromatic], 75))
    leaf_value = float(np.median(value[inner]))
    shifted = chromatic & (hue < min(healthy_hue - LESION_HUE_SHIFT, LESION_HUE_CAP))
    grey = (ft["saturation"] < LESION_GREY_SATURATION) | ~chromatic
    grey &= _in(value / leaf_value, LESION_GREY_VALUE)
    return _morphology(ndimage.binary_opening, inner & (shifted | grey), _SQUARE2)


def _masks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Leaf and lesion masks of the work image, and its factor."""
    a, f = _work_image(rgb)
    ft = _features(a)
    leaf = _leaf_small(ft)
    return leaf, _lesion_small(ft, leaf), f


def _full_size(small: np.ndarray, f: int, height: int, width: int) -> np.ndarray:
    if f == 1:
        return small
    return np.repeat(np.repeat(small, f, axis=0), f, axis=1)[:height, :width]


def masks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(leaf_mask(rgb), lesion_mask(rgb, leaf))`` computed once: bool (H, W) each."""
    leaf, lesion, f = _masks(rgb)
    height, width = np.shape(rgb)[:2]
    return _full_size(leaf, f, height, width), _full_size(lesion, f, height, width)


def leaf_mask(rgb: np.ndarray) -> np.ndarray:
    """Leaf / vegetation pixels of a uint8 RGB image (H, W, 3): bool (H, W), decided on the work image (so its
    outline follows the work pixels: ``f`` x ``f`` squares on a large photo)."""
    leaf, _, f = _masks(rgb)
    return _full_size(leaf, f, *np.shape(rgb)[:2])


def lesion_mask(rgb: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """Necrotic, chlorotic and spotted tissue: bool (H, W), inside ``leaf`` (bool (H, W), e.g. ``leaf_mask``;
    on the work image a work pixel is leaf when most of its pixels are)."""
    a, f = _work_image(rgb)
    leaf = np.asarray(leaf, dtype=bool)
    if leaf.shape != np.shape(rgb)[:2]:
        raise ValueError(f"the leaf mask's shape {leaf.shape} is not the image's {np.shape(rgb)[:2]}")
    small = leaf if f == 1 else _pool(leaf, f, "mean") >= 0.5
    found = _lesion_small(_features(a), small)
    return _full_size(found, f, *leaf.shape) & leaf


def auto_kind(leaf: np.ndarray, lesion: np.ndarray) -> str:
    """What "auto" makes of an image with these leaf and lesion masks (any resolution): "uniform", "leaf" or
    "lesion" (module docstring)."""
    leaf_pixels = int(np.count_nonzero(leaf))
    if leaf_pixels < MIN_LEAF_SHARE * np.size(leaf):
        return "uniform"
    return "lesion" if np.count_nonzero(lesion) >= AUTO_LESION_SHARE * leaf_pixels else "leaf"


def _pool(mask: np.ndarray, step: int, how: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``mask`` (h, w) pooled over ``step`` x ``step`` squares (the last ones partial: only pixels of the mask
    count): float32 of ``shape`` (at least the squares' grid; squares beyond it take the nearest one's value).
    ``how``: "max" (in the mask's own dtype: no float copy of a 12 MP mask) or "mean"."""
    h, w = mask.shape
    br, bc = -(-h // step), -(-w // step)
    rows, cols = shape or (br, bc)
    if rows < br or cols < bc:
        raise ValueError(f"a {h}x{w} mask has {br}x{bc} blocks of {step} pixels, more than {rows}x{cols}")
    if how == "max":
        padded = np.zeros((br * step, bc * step), mask.dtype)
        padded[:h, :w] = mask
        pooled = padded.reshape(br, step, bc, step).max(axis=(1, 3)).astype(np.float32)
    else:
        padded = np.zeros((br * step, bc * step), np.float32)
        padded[:h, :w] = mask
        heights = np.diff(np.minimum(np.arange(br + 1) * step, h))
        counts = np.outer(heights, np.diff(np.minimum(np.arange(bc + 1) * step, w)))
        pooled = padded.reshape(br, step, bc, step).sum(axis=(1, 3)) / counts
    out = pooled[np.minimum(np.arange(rows), br - 1)][:, np.minimum(np.arange(cols), bc - 1)]
    return np.ascontiguousarray(out, dtype=np.float32)


def block_map(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """float32 (rows, cols) in [0, 1]: the largest value of ``mask`` (bool or float in [0, 1], (H, W)) in each
    16 x 16 block; blocks wholly in the padding (``map_shape``) take the value of the nearest block inside the
    image. ValueError if the mask has more blocks than (rows, cols).

    Max pooling, not the mean: a block is coded at one quality, so a block holding a sliver of leaf (the
    outline, a tip, a petiole) codes those leaf pixels at the block's quality, and the leaf's quality
    (leaf-region PSNR) is measured on every leaf pixel: such a block must count as leaf. The mean would code the
    leaf's outline at the background's quality. The price is a margin of up to one block of background coded
    as leaf."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a mask (H, W), got shape {mask.shape}")
    return _pool(mask.astype(np.float32) if mask.dtype.kind == "f" else mask, BLOCK, "max", (rows, cols))


@stage("importance map")
def importance_map(rgb: np.ndarray, kind: str) -> np.ndarray:
    """float32 (rows, cols) = ``map_shape(H, W)`` in [0, 1] of a uint8 RGB image (H, W, 3), ``kind`` one of
    ``ROI_KINDS`` (module docstring)."""
    if kind not in ROI_KINDS:
        raise ValueError(f"unknown importance map kind {kind!r} (one of {', '.join(ROI_KINDS)})")
    leaf, lesion, f = _masks(rgb)
    shape = map_shape(*np.shape(rgb)[:2])
    if kind == "auto":
        kind = auto_kind(leaf, lesion)
        if kind == "uniform":
            return np.ones(shape, np.float32)
    leaf_blocks = _pool(leaf, BLOCK // f, "max", shape)
    if kind == "leaf":
        return leaf_blocks
    lesion_blocks = _pool(lesion, BLOCK // f, "mean", shape) >= LESION_BLOCK_SHARE
    return np.where(lesion_blocks, np.float32(1), np.float32(LEAF_WEIGHT) * leaf_blocks).astype(np.float32)


def read_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """A user's mask for a ``height`` x ``width`` image, as a block map (``block_map``, float32 ``map_shape``):
    any file the image reader reads (``imageio.load_image``: EXIF orientation applied, as to the image), grey or
    RGB taken as luminance (ITU-R 601, as Pillow's "L"), 0..255 -> 0..1, alpha ignored. DataError (one line)
    for a missing or unreadable file, or a size other than the image's (read from the header, before the pixels
    are decoded)."""
    from helpers.codec.imageio import load_image

    def same_size(w: int, h: int) -> None:
        if (w, h) != (width, height):
            raise _OtherSize(f"ROI mask {shown(path)} is {w}x{h} pixels but the image is {width}x{height}")

    try:
        # Its size must be the image's, which passed the reader's limits, so no limits of its own (a flat mask
        # may well compress beyond the decompression-bomb ratio).
        rgb, _ = load_image(path, max_pixels=None, check_size=same_size, max_ratio=None)
    except _OtherSize as exc:
        raise DataError(str(exc)) from None
    except DataError as exc:
        raise DataError(f"ROI mask: {exc}") from None
    luminance = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    return _pool(luminance, BLOCK, "max", map_shape(height, width)) / np.float32(255)


class _OtherSize(Exception):
    """A mask of another size: raised through the image reader, which would report a DataError as damage."""
