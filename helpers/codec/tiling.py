"""Running the codec's transforms on a fixed grid of tiles: memory bounded by the tile, not the image.

Two grids, both fixed by the file format (they do not depend on the machine, the thread count or the backend,
so neither do the files and pixels):

* **Transform tiles** of ``TRANSFORM_TILE`` x ``TRANSFORM_TILE`` latents (512 x 512 pixels). ``g_a`` runs on each
  tile's pixels plus ``HALO`` latents (32 pixels) on every side, ``g_s`` on each tile's latents plus ``HALO``
  latents, each layer computed only where the tile's own output depends on it (``regions.region_only``). The
  halo covers the receptive field (``g_a``: +-30 pixels, so a tiled analysis equals the whole-image one up to
  float32 rounding; ``g_s``: +-1.9 latents, likewise), so there are no seams. Where a tile meets the padded
  image's edge it sees the same zero padding as a whole image.
* **Coding tiles** of ``CODING_TILE`` x ``CODING_TILE`` latents (1024 x 1024 pixels): one rANS stream each, and the
  hyper-synthesis that predicts their entropy parameters runs per coding tile on the hyper-latent plus
  ``Z_HALO`` positions (its receptive field is +-1.75). Larger than the transform tiles because the float64
  hyper-synthesis pays for its halo four times over (it upsamples by 4).

An image of at most one transform tile (every PlantVillage leaf) is transformed in two halves, each with its
halo (``transform_tiles``), so that two workers share it, and its latent is one coding tile.

Tiles are computed with PyTorch on one intra-op thread each (oneDNN's float32 results depend on its thread
count, see ``model.single_thread``) and dispatched over up to ``MAX_WORKERS`` Python threads (PyTorch releases
the GIL inside its kernels), as many as the caller's ``torch.get_num_threads()`` allows. Each tile's result
depends only on the tile, so the output is the same with one worker or two.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from helpers.codec.models import STRIDE
from helpers.codec.stage_timer import stage

LATENT_STRIDE = 16  # pixels per latent (g_a's four stride-2 convolutions)
Z_STRIDE = 4  # latents per hyper-latent (h_a's two stride-2 convolutions)
TRANSFORM_TILE = 32  # latents
HALO = 2  # latents
CODING_TILE = 64  # latents; a multiple of Z_STRIDE
Z_HALO = 2  # hyper-latent positions
MAX_WORKERS = 2
SPLIT_MIN_ROWS = 4  # latents: a one-tile image at least twice this tall is transformed in two halves


@dataclass(frozen=True)
class Tile:
    """Rows ``r0:r1`` and columns ``c0:c1`` of a grid (in its units), and the window ``a0:a1, b0:b1`` that is
    computed for it: the tile plus its halo, clipped to the grid."""

    r0: int
    r1: int
    c0: int
    c1: int
    a0: int
    a1: int
    b0: int
    b1: int

    def crop(self, scale: int = 1) -> tuple[slice, slice]:
        """Where the tile lies inside its window's output (``scale`` output units per grid unit)."""
        return (slice(scale * (self.r0 - self.a0), scale * (self.r1 - self.a0)),
                slice(scale * (self.c0 - self.b0), scale * (self.c1 - self.b0)))  # fmt: skip


def grid(rows: int, cols: int, size: int, halo: int, col_size: int | None = None) -> list[Tile]:
    """Tiles of ``size`` (``size`` x ``col_size`` if given) covering ``rows`` x ``cols`` in raster order; the last
    row and column may be smaller."""
    width = size if col_size is None else col_size
    return [Tile(r0, min(r0 + size, rows), c0, min(c0 + width, cols), max(r0 - halo, 0),
                 min(r0 + size + halo, rows), max(c0 - halo, 0), min(c0 + width + halo, cols))
            for r0 in range(0, rows, size) for c0 in range(0, cols, width)]  # fmt: skip


def transform_tiles(rows: int, cols: int) -> list[Tile]:
    """The transform tiles of a latent of ``rows`` x ``cols``. An image of one tile is cut into two halves (by
    rows, halo and all) so that two workers share it; its parts depend on its size only, never on the
    workers, so neither do the results."""
    if rows <= TRANSFORM_TILE and cols <= TRANSFORM_TILE and rows >= 2 * SPLIT_MIN_ROWS:
        return grid(rows, cols, -(-rows // 2), HALO, col_size=cols)
    return grid(rows, cols, TRANSFORM_TILE, HALO)


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Latent rows and columns of an image (padded to a multiple of ``STRIDE``)."""
    return -(-height // STRIDE) * STRIDE // LATENT_STRIDE, -(-width // STRIDE) * STRIDE // LATENT_STRIDE


def coding_tiles(height: int, width: int) -> list[Tile]:
    """The coding tiles of an image (latent units; no halo: see ``z_window``)."""
    return grid(*latent_size(height, width), CODING_TILE, 0)


def parameter_parts(tile: Tile, n_tiles: int) -> list[Tile]:
    """The parts of a coding tile whose side parameters are computed separately: the tile itself, or for an
    image of one coding tile at least ``2 * SPLIT_MIN_ROWS`` latents tall, its two halves by rows (cut on the
    hyper-latent grid), so that two workers share it. They depend on the image's size only, never on the
    workers, so neither do the parameters."""
    rows = tile.r1 - tile.r0
    if n_tiles > 1 or rows < 2 * SPLIT_MIN_ROWS:
        return [tile]
    mid = tile.r0 + rows // 2 // Z_STRIDE * Z_STRIDE
    return [replace(tile, r1=mid, a1=mid), replace(tile, r0=mid, a0=mid)]


def z_window(tile: Tile, z_rows: int, z_cols: int) -> Tile:
    """The hyper-latent window (hyper-latent units) whose hyper-synthesis covers a coding tile."""
    r0, r1, c0, c1 = (v // Z_STRIDE for v in (tile.r0, tile.r1, tile.c0, tile.c1))
    return Tile(r0, r1, c0, c1, max(r0 - Z_HALO, 0), min(r1 + Z_HALO, z_rows), max(c0 - Z_HALO, 0),
                min(c1 + Z_HALO, z_cols))  # fmt: skip


@functools.cache
def return_freed_buffers_to_the_system() -> None:
    """glibc raises its mmap threshold to the largest block freed so far (up to 32 MB); after the first tile,
    tile-sized buffers then come from the heap and stay there when freed, fragmented over the worker threads'
    arenas: a 12 MP decode peaked 540 MB above the loaded model instead of 220 MB. A fixed 1 MB threshold (which
    also ends that adjustment) hands every large buffer back when it is freed. Process-wide and set once, on
    the first tiled transform; a no-op without glibc."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError, TypeError):
        pass


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def workers() -> int:
    """Worker threads for the caller: ``torch.get_num_threads()``, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, torch.get_num_threads()))


def map_ordered(fn: Callable, items: Iterable, n_workers: int) -> Iterator:
    """``fn`` over ``items`` on ``n_workers`` threads (each at one PyTorch thread), results in order. At most
    ``2 * n_workers`` items are in flight, so memory stays that of a few tiles; an exception cancels the rest."""
    if n_workers <= 1:
        yield from map(fn, items)
        return

    def one_thread(item):
        torch.set_num_threads(1)  # per thread: OpenMP's setting is thread-local
        with torch.no_grad():
            return fn(item)

    items, pool = iter(items), _pool()
    pending = [pool.submit(one_thread, it) for it in _take(items, 2 * n_workers)]
    try:
        while pending:
            result = pending.pop(0).result()
            pending += [pool.submit(one_thread, it) for it in _take(items, 1)]
            yield result
    finally:
        for f in pending:
            f.cancel()
        concurrent.futures.wait(pending)  # nothing of this call still runs when it returns


# Who hears of each finished transform tile: (what, tiles done, tiles in all); the command line's progress bar.
_progress: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar(
    "tile_progress", default=None
)


@contextlib.contextmanager
def progress(callback: Callable[[str, int, int], None]):
    """Calls ``callback(what, done, total)`` after each transform tile of the analyses and syntheses run in the
    block ("analysis" or "synthesis"), from the thread that runs them."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def _run_tiles(what: str, fn: Callable, tiles: list[Tile], n_workers: int) -> None:
    callback = _progress.get()
    for done, _ in enumerate(map_ordered(fn, tiles, n_workers), 1):
        if callback is not None:
            callback(what, done, len(tiles))


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The tile workers, started once per process rather than once per image (a batch of small leaves would
    otherwise start two threads, and set up their PyTorch state, for every file)."""
    return concurrent.futures.ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="leaf-tile")


def _take(items: Iterator, n: int) -> list:
    out = []
    for item in items:
        out.append(item)
        if len(out) == n:
            break
    return out


# ----- the two tiled transforms -------------------------------------------------------------------------------
@stage("analysis (g_a)")
def analyse(g_a: Callable[[torch.Tensor, tuple], torch.Tensor], rgb: np.ndarray, channels: int,
            n_workers: int) -> torch.Tensor:  # fmt: skip
    """``g_a`` of a uint8 RGB image, tile by tile: float32 (1, channels, latent rows, latent cols), before the
    level's gain. ``g_a(x, region)`` returns the latents of the (rows, columns) ``region`` of a window. Each
    tile reads its pixels (replicate-padded to a multiple of ``STRIDE``) straight from ``rgb``: the image is
    never held as float."""
    return_freed_buffers_to_the_system()
    h, w = rgb.shape[:2]
    rows, cols = latent_size(h, w)
    y = torch.empty(1, channels, rows, cols)
    s = LATENT_STRIDE

    def one(t: Tile) -> None:
        r = np.minimum(np.arange(s * t.a0, s * t.a1), h - 1)  # replicate padding beyond the image
        c = np.minimum(np.arange(s * t.b0, s * t.b1), w - 1)
        x = torch.from_numpy(rgb[np.ix_(r, c)]).permute(2, 0, 1)[None].float().div(255)
        y[:, :, t.r0 : t.r1, t.c0 : t.c1] = g_a(x, t.crop())

    _run_tiles("analysis", one, transform_tiles(rows, cols), n_workers)
    return y


@stage("synthesis (g_s)")
def synthesise(g_s: Callable[[torch.Tensor, tuple], torch.Tensor], y_hat: torch.Tensor, height: int, width: int,
               n_workers: int) -> np.ndarray:  # fmt: skip
    """Pixels of the decoded latent ``y_hat`` (1, M, rows, cols), tile by tile: uint8 RGB (height, width, 3).
    ``g_s(window, region)`` maps a latent window to the pixels of its (rows, columns) ``region``, in [0, 1]
    (gain, synthesis and clamp)."""
    return_freed_buffers_to_the_system()
    out = np.empty((height, width, 3), np.uint8)
    s = LATENT_STRIDE

    def one(t: Tile) -> None:
        h, w = min(s * t.r1, height) - s * t.r0, min(s * t.c1, width) - s * t.c0
        if h <= 0 or w <= 0:
            return  # a tile of padding only
        r0, c0 = s * (t.r0 - t.a0), s * (t.c0 - t.b0)
        x = g_s(y_hat[:, :, t.a0 : t.a1, t.b0 : t.b1], (slice(r0, r0 + h), slice(c0, c0 + w)))[0]
        px = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        out[s * t.r0 : s * t.r0 + h, s * t.c0 : s * t.c0 + w] = px.numpy()

    _run_tiles("synthesis", one, transform_tiles(*y_hat.shape[-2:]), n_workers)
    return out
