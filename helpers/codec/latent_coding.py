"""Coding a latent: the hyper-latent of a whole image, and each coding tile's latent given its side parameters.

Two tile codecs implement the same two calls, in the style of CompressAI's latent codecs:
``compress(y, params) -> (streams, symbols)`` and ``decompress(streams, params, shape) -> (y_hat, symbols)``, where
``params`` is the float64 hyper-synthesis output over the tile and ``symbols`` the bytes the file's symbol CRC
covers.

* ``GaussianTiles``: a mean-scale Gaussian conditional, one stream per tile. Means are rounded to a 1/256 grid
  (identical on every platform) and the symbols are the int32 ``round(y - means)``.
* ``ContextTiles``: any CompressAI latent codec (channel groups, checkerboard, ELIC) run on the tile, one stream
  per pass. Its symbols are internal to its passes, so the CRC covers the dequantised latent (float32); its
  context networks run in float32, so its files decode on the kind of CPU that wrote them.

Decoding trusts no stream (see ``helpers.codec.leaf_codec``): each is handed to the rANS decoder followed by zero
words (``guarded``), decoded values must stay within ``LATENT_LIMIT``, and the streams must be exactly what the
encoder writes for what they decoded to.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import GaussianConditional

from helpers.codec.errors import CodecError
from helpers.codec.stage_timer import stage

# |latent symbol| bound: far beyond what g_a/h_a produce from [0, 1] pixels (below ~100), far below the 2^27 at
# which CompressAI's rANS encoder never terminates (its escape-length loop shifts an int32 by 32 bits).
LATENT_LIMIT = 2**20


def guarded(stream: bytes, n_symbols: int) -> bytes:
    """``stream`` followed by zero words for CompressAI's rANS decoder, which does not check where its input
    ends: on garbage it went on reading up to 0.44 words per symbol past the end (a Python emulation over
    random, truncated and bit-flipped streams). A symbol reads at most one word, plus escape codes (4-bit
    groups), whose length the stream itself can inflate to ~15 bytes per stream byte; zeros end them."""
    return stream + bytes(8 * n_symbols + 16 * len(stream) + 4096)


def check_range(values: torch.Tensor, what: str) -> None:
    if values.numel() and not (values.min() > -LATENT_LIMIT and values.max() < LATENT_LIMIT):
        raise CodecError(f"corrupted {what} stream: it decodes to implausible values")


def is_allocation_failure(exc: BaseException) -> bool:
    """MemoryError, or PyTorch's RuntimeError for a failed allocation ("DefaultCPUAllocator: can't allocate")."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "alloc" in str(exc).lower())


def checked_stream(stream: bytes, decode, encode, values: str, name: str):
    """Decode one stream (or a tile's streams) and prove it: every value within LATENT_LIMIT, and the stream
    exactly what the encoder writes for those values. Anything else is a CodecError naming the stream (an
    allocation failure stays one). ``decode`` returns (values, result); ``encode(values)`` the stream again."""
    try:
        decoded, result = decode(stream)
        check_range(decoded, values)
        canonical = encode(decoded) == stream
    except (RuntimeError, ValueError, OverflowError, IndexError, AssertionError) as exc:
        if is_allocation_failure(exc):
            raise
        raise CodecError(f"corrupted {name}: {exc.__class__.__name__}: {exc}") from None
    if not canonical:
        raise CodecError(f"corrupted {name}: it is not what the encoder writes for its symbols")
    return result


def symbols_bytes(symbols: torch.Tensor) -> bytes:
    return symbols.numpy().astype("<i4").tobytes()


def scale_indexes(gc: GaussianConditional, scales: torch.Tensor) -> torch.Tensor:
    """CompressAI's ``build_indexes`` (int32: how many of the scale table's entries but the last lie below each
    lower-bounded scale), as one binary search instead of a pass per table entry: the same float32 comparisons,
    so the same indexes, 10x faster. A NaN scale gets the last index, as CompressAI's comparisons give it."""
    scales = gc.lower_bound_scale(scales.float())
    table = gc.scale_table[:-1].to(scales.dtype).contiguous()
    indexes = torch.searchsorted(table, scales.contiguous(), side="left", out_int32=True)
    return indexes.masked_fill_(scales.isnan(), len(gc.scale_table) - 1)


class RansTables:
    """A Gaussian conditional's rANS tables as the C++ coder takes them (Python lists), built once instead of per
    stream, and the coder called on int32 arrays directly: CompressAI's own ``compress``/``decompress`` spend
    most of their time converting tensors to and from lists. Same coder, same calls, same streams."""

    def __init__(self, gc: GaussianConditional):
        self.coder = gc.entropy_coder
        self.tables = (gc._quantized_cdf.tolist(), gc._cdf_length.reshape(-1).int().tolist(),
                       gc._offset.reshape(-1).int().tolist())  # fmt: skip

    @stage("rANS")
    def encode(self, symbols: torch.Tensor, indexes: torch.Tensor) -> bytes:
        return self.coder.encode_with_indexes(_ints(symbols), _ints(indexes), *self.tables)

    @stage("rANS")
    def decode(self, stream: bytes, indexes: torch.Tensor) -> torch.Tensor:
        values = self.coder.decode_with_indexes(stream, _ints(indexes), *self.tables)
        return torch.from_numpy(np.array(values, dtype=np.int32)).reshape(indexes.shape)


def _ints(t: torch.Tensor) -> list[int]:
    return t.reshape(-1).int().numpy().tolist()


# ----- the hyper-latent -----------------------------------------------------------------------------------------
@stage("hyper-latent z")
def compress_hyper(entropy_bottleneck, z: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    """The hyper-latent's stream and ``z_hat`` as the decoder will see it."""
    stream = entropy_bottleneck.compress(z)[0]
    return stream, entropy_bottleneck.decompress([stream], z.shape[-2:])


@stage("hyper-latent z")
def decompress_hyper(entropy_bottleneck, stream: bytes, shape: tuple[int, int]) -> torch.Tensor:
    n = entropy_bottleneck.channels * shape[0] * shape[1]

    def decode(s):
        z_hat = entropy_bottleneck.decompress([guarded(s, n)], shape)
        return z_hat, z_hat

    return checked_stream(stream, decode, lambda v: entropy_bottleneck.compress(v)[0], "hyper-latent",
                          "hyper-latent stream")  # fmt: skip


# ----- tile codecs ----------------------------------------------------------------------------------------------
class GaussianTiles:
    """Mean-scale Gaussian conditional on a tile: one rANS stream, int32 symbols ``round(y - means)``."""

    streams_per_tile = 1

    def __init__(self, gaussian_conditional: GaussianConditional):
        self.gc = gaussian_conditional
        self.rans = RansTables(gaussian_conditional)

    def parameters(self, params: torch.Tensor):
        """Means (float64, on a 1/256 grid so they are identical across platforms) and scale indexes."""
        means, scales = params.chunk(2, 1)
        means = torch.round(means * 256) / 256
        return means, scale_indexes(self.gc, scales)

    supports_roi = True

    @staticmethod
    def rescaled(params: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
        """The side parameters of a latent whose every element is scaled by ``ratios`` (float64, the shape of
        the means): a Gaussian's mean and scale scale with it (``helpers.codec.roi``)."""
        means, scales = params.chunk(2, 1)
        return torch.cat([means * ratios, scales * ratios], 1)

    def compress(self, y: torch.Tensor, params: torch.Tensor) -> tuple[list[bytes], bytes]:
        means, indexes = self.parameters(params)
        symbols = torch.round(y.double() - means).int()
        check_range(symbols, "latent")  # never a file the decoder refuses (real |y| stays below ~100)
        return [self.rans.encode(symbols, indexes)], symbols_bytes(symbols)

    def decompress(self, streams, params: torch.Tensor, shape, name: str) -> tuple[torch.Tensor, bytes]:
        means, indexes = self.parameters(params)

        def decode(stream):
            symbols = self.rans.decode(guarded(stream, indexes.numel()), indexes)
            return symbols, symbols

        symbols = checked_stream(streams[0], decode, lambda v: self.rans.encode(v, indexes), "latent", name)
        return (symbols.double() + means).float(), symbols_bytes(symbols)

    def symbol_bits(self, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Ideal code length in bits (-log2 p) of every element of ``y`` under what the coder uses: the rounded
        symbols, the float64 means and the *quantised* scales of the scale table."""
        means, indexes = self.parameters(params)
        symbols = torch.round(y.double() - means)
        likelihoods = self.gc._likelihood(symbols.float(), self.gc.scale_table[indexes.long()].float())
        if self.gc.use_likelihood_bound:
            likelihoods = self.gc.likelihood_lower_bound(likelihoods)
        return -torch.log2(likelihoods)


class BoundedGaussianConditional(GaussianConditional):
    """CompressAI's Gaussian conditional that refuses symbols beyond ``LATENT_LIMIT`` instead of handing them to
    the rANS encoder (which never terminates on 2^27 or more). Inside a context codec the means come from
    networks fed with decoded values, so a garbled stream could otherwise make the decoder's re-encoding hang."""

    def compress(self, inputs, indexes, means=None):
        check_range(torch.round(inputs if means is None else inputs - means), "latent")
        return super().compress(inputs, indexes, means)

    def build_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        return scale_indexes(self, scales)


class ContextTiles:
    """A CompressAI latent codec (``y`` given side parameters) on a tile: one stream per pass, as it orders them.

    ``shape_of(rows, cols)`` is the ``shape`` argument its ``decompress`` expects for a tile of that size."""

    # Region-of-interest coding rescales the hyperprior's Gaussians per position; a context model's networks
    # also read decoded neighbours at their own positions' scales, which it was not trained on.
    supports_roi = False

    def __init__(self, latent_codec, streams_per_tile: int, shape_of):
        self.codec, self.streams_per_tile, self.shape_of = latent_codec, streams_per_tile, shape_of

    def _compress(self, y: torch.Tensor, params: torch.Tensor):
        out = self.codec.compress(y.float(), params.float())
        streams = [s[0] for s in out["strings"]]
        if len(streams) != self.streams_per_tile:
            raise CodecError(f"the latent codec wrote {len(streams)} streams, not {self.streams_per_tile}")
        return streams, out["y_hat"].float()

    def compress(self, y: torch.Tensor, params: torch.Tensor) -> tuple[list[bytes], bytes]:
        streams, y_hat = self._compress(y, params)
        return streams, y_hat.numpy().tobytes()

    def decompress(self, streams, params: torch.Tensor, shape, name: str) -> tuple[torch.Tensor, bytes]:
        n = params.shape[1] * shape[0] * shape[1]  # more than any one stream's symbols

        def decode(streams):
            strings = [[guarded(s, n)] for s in streams]
            y_hat = self.codec.decompress(strings, self.shape_of(*shape), params.float())["y_hat"].float()
            return y_hat, y_hat

        y_hat = checked_stream(list(streams), decode, lambda v: self._compress(v, params)[0], "latent", name)
        return y_hat, y_hat.numpy().tobytes()
