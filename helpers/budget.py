"""How much memory coding one image takes, estimated *before* anything is allocated, and the limits.

Tiling (``helpers.tiling``) bounds the transforms' memory by the tile; what still grows with the image is its
pixels (uint8) and its latents (float32, M/256 x 4 bytes per pixel), a few times over while they are built.
The estimate below is that model, calibrated on this project's checkpoint with peak-RSS measurements (see
tests/test_memory.py, which checks it against real runs under a memory cap). It counts the working memory of
one image beyond the loaded interpreter, PyTorch and model (~0.9 GB of resident memory on their own).
"""

from __future__ import annotations

from .errors import ResourceError
from .tiling import CODING_TILE, HALO, LATENT_STRIDE, TRANSFORM_TILE

DEFAULT_MAX_MEMORY = 2 * 2**30  # bytes of working memory for one image (``--max-memory``)

# Calibrated (bytes): per pixel of the image while encoding/decoding, and per float32 activation element of
# one transform tile (GDN holds three tensors of its input's size; oneDNN adds scratch).
_ENCODE_PER_PIXEL = {"image": 3.0, "latent": 3.0}
_DECODE_PER_PIXEL = {"image": 7.0, "latent": 1.0}
_TILE_OVERHEAD = 4.0
_FIXED = 64 * 2**20  # entropy-coding tables, Python lists of one coding tile, allocator slack


def _tile_bytes(channels: int) -> int:
    """Peak of one transform tile: the widest activation (``channels`` at half resolution) a few times over."""
    side = (TRANSFORM_TILE + 2 * HALO) * LATENT_STRIDE
    return int(_TILE_OVERHEAD * channels * (side // 2) ** 2 * 4)


def _coding_tile_bytes(M: int) -> int:
    """One coding tile: float64 hyper-synthesis output (2M channels), means, symbols, rANS lists and guard."""
    return int((CODING_TILE + 8) ** 2 * M * (3 * 8 + 4 * 8))


def estimate(height: int, width: int, M: int, N: int, workers: int, decode: bool) -> int:
    """Estimated peak working memory in bytes to encode (``decode=False``) or decode one image."""
    per_px = _DECODE_PER_PIXEL if decode else _ENCODE_PER_PIXEL
    pixels = height * width
    latent = M / LATENT_STRIDE**2 * 4  # bytes of one float32 latent per pixel
    per_pixel = per_px["image"] + per_px["latent"] * latent
    return int(pixels * per_pixel + workers * _tile_bytes(N) + 2 * workers * _coding_tile_bytes(M) + _FIXED)


def check(height: int, width: int, need: int, max_memory: int | None, verb: str) -> None:
    """ResourceError naming the size, the estimate and the budget when ``need`` exceeds ``max_memory``."""
    if max_memory is not None and need > max_memory:
        raise ResourceError(
            f"cannot {verb} a {width}x{height} image ({width * height / 1e6:.1f} MP) within the memory budget: "
            f"it needs about {format_bytes(need)}, the budget is {format_bytes(max_memory)} (raise it with --max-memory)"
        )


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
