"""How much memory coding one image takes, estimated *before* anything is allocated, and the limits.

Tiling (``helpers.codec.tiling``) bounds the transforms' memory by the tile; what still grows with the image is its
pixels (uint8) and its latents (float32, M/256 x 4 bytes per pixel), a few times over while they are built.
The estimate below is that model, calibrated on this project's checkpoint with peak-RSS measurements
(tests/test_memory.py runs the codec under a memory cap derived from it). It counts the working memory of one
image beyond the loaded interpreter, PyTorch and model (~0.9 GB of resident memory on their own, most of it
PyTorch's and CompressAI's libraries).
"""

from __future__ import annotations

from helpers.codec.errors import ResourceError
from helpers.codec.imageio import pixel_counts
from helpers.codec.tiling import HALO, LATENT_STRIDE, TRANSFORM_TILE, latent_size

DEFAULT_MAX_MEMORY = 2 * 2**30  # bytes of working memory for one image (``--max-memory``)

# Calibrated on peak RSS above the loaded model (N=64, M=128, two workers), 12 and 64 MP photos: encoding
# 5.2 B/pixel + 270 MB, decoding 4.9 B/pixel + 210 MB, reading a PNG 9.4 B/pixel (12 MP: +330 MB encoding,
# +270 MB decoding; 64 MP: +600 MB and +520 MB). The model below is rounded up from those.
IMAGE_BYTES = 3  # the uint8 RGB image the encoder reads or the decoder writes
READ_BYTES = 9.5  # Pillow's decoded image (RGB is 4 bytes per pixel inside Pillow) and the array made from it
LATENT_SHARE = 1.25  # the float32 latent, and h_a's activations (encoder) or the uint8 output's PNG (decoder)
TILE_COPIES = 7  # one transform tile: its widest activation (N channels at half res.), GDN's temporaries
FIXED = 100 * 2**20  # rANS tables, one coding tile's Python lists and guard, allocator slack


def tile_bytes(N: int, rows: int, cols: int) -> int:
    """Peak working memory of one transform tile (``g_a`` or ``g_s`` on a tile and its halo, in a latent grid of
    ``rows`` x ``cols``): its widest activation (N channels at half resolution) ``TILE_COPIES`` times."""
    side = TRANSFORM_TILE + 2 * HALO
    half = LATENT_STRIDE // 2
    return int(TILE_COPIES * N * min(side, rows) * half * min(side, cols) * half * 4)


def estimate(height: int, width: int, M: int, N: int, workers: int, decode: bool, latents: int = 1) -> int:
    """Estimated peak working memory in bytes to encode (``decode=False``) or decode one image: the pixels, the
    float32 latent of the image padded to a multiple of 64 (M channels at 1/16; ``latents`` of them when the
    encoder keeps the unscaled one to try several levels), and one tile per worker."""
    rows, cols = latent_size(height, width)
    tiles = -(-rows // TRANSFORM_TILE) * -(-cols // TRANSFORM_TILE)
    latent = M * rows * cols * 4
    need = (
        IMAGE_BYTES * height * width + LATENT_SHARE * latent + min(workers, tiles) * tile_bytes(N, rows, cols)
    )
    if not decode:
        need = max(need, READ_BYTES * height * width)
    return int(need + FIXED)


def check(height: int, width: int, need: int, max_memory: int | None, verb: str) -> None:
    """ResourceError naming the size, the estimate and the budget when ``need`` exceeds ``max_memory``."""
    if max_memory is not None and need > max_memory:
        need_text, budget_text = format_bytes(need), format_bytes(max_memory)
        if need_text == budget_text:  # rounded alike: exact counts tell them apart
            need_text, budget_text = f"{need:,} bytes", f"{max_memory:,} bytes"
        raise ResourceError(
            f"cannot {verb} a {width}x{height} image ({pixel_counts(width * height)[0]}) within the memory budget: "
            f"it needs about {need_text}, the budget is {budget_text} (raise it with --max-memory)"
        )


def format_bytes(n: int) -> str:
    """``2.00 GB``, ``100 MB``, ``64 KB``, ``512 bytes``: small budgets are not rounded to ``0 MB``."""
    for unit, name, digits in ((2**30, "GB", 2), (2**20, "MB", 0), (2**10, "KB", 0)):
        if n >= unit:
            return f"{n / unit:.{digits}f} {name}"
    return f"{int(n)} bytes"
