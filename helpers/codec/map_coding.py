"""The region-of-interest weight map of a version-4 file: context-adaptive binary arithmetic coding.

A map is one u8 weight per latent position and mostly a few large regions (leaf, lesions, background), so
nearly every weight equals its left neighbour, and where it does not, its upper one. Raw DEFLATE (version 3)
spends about 41 bytes on a 256 x 256 leaf's 16 x 16 map, a tenth of a level-1 file; this coder about 18
(notebook 07's map-cost table), with no table to send.

The stream: the palette (u8 count - 1, then the distinct weights in increasing order), then the binary
arithmetic code (LZMA's range coder: 32-bit range, 11-bit adaptive probabilities, carries propagated through a
cached byte; its always-zero first byte dropped).
Each position in raster order codes, given its left (W), upper (N), upper-left and upper-right neighbours
(edges take the nearest of them that exists):

* whether it differs from W, in one of 8 contexts (which of N, NW, NE differ from W);
* if it does and N differs from W, whether it equals N;
* if still undetermined, its index among the palette's other weights, in plain bits.

Probabilities start from ``PRIOR`` (the frequency of each decision on leaf and lesion maps of the training
split, ``helpers.study.roi.map_context_prior``) and adapt as the map is coded. Integers only: identical on every
CPU. Decoding trusts nothing: a map must decode to exactly the palette's weights, and re-encoding it must give
back exactly the stream (so every map has one coding, and garbage is refused).
"""

from __future__ import annotations

import numpy as np

from helpers.codec.errors import CodecError

_BITS, _ONE = 11, 1 << 11  # probability precision (of a 0, the "same" outcome)
_ADAPT = 5  # a probability moves 1/32 of the way to each outcome (LZMA's rate)
_TOP = 1 << 24  # renormalise the range below this
# The 11-bit probability that a position equals W, per context (N != W) * 4 + (NW != W) * 2 + (NE != W); then
# that it equals N, given it differs from W and N does.
PRIOR = (1980, 1535, 1955, 1409, 1405, 803, 1730, 817)
PRIOR_EQUALS_N = 1824


class _Encoder:
    encoding = True

    def __init__(self):
        self.low, self.range, self.cache, self.pending, self.out = 0, 0xFFFFFFFF, 0, 1, bytearray()

    def _shift(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry, byte = self.low >> 32, self.cache
            for _ in range(self.pending):
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
            self.pending, self.cache = 0, (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        bound = (self.range >> _BITS) * probs[i]
        if bit:
            self.low += bound
            self.range -= bound
            probs[i] -= probs[i] >> _ADAPT
        else:
            self.range = bound
            probs[i] += (_ONE - probs[i]) >> _ADAPT
        self._normalise()

    def plain(self, value: int, bits: int) -> None:
        for k in reversed(range(bits)):
            self.range >>= 1
            if (value >> k) & 1:
                self.low += self.range
            self._normalise()

    def _normalise(self) -> None:
        while self.range < _TOP:
            self.range <<= 8
            self._shift()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift()
        return bytes(self.out[1:])  # the first byte is always 0


class _Decoder:
    encoding = False

    def __init__(self, data: bytes):
        if len(data) < 4:
            raise CodecError("corrupted ROI map: its code is cut short")
        self.data, self.pos, self.range = data, 4, 0xFFFFFFFF
        self.code = int.from_bytes(data[:4], "big")

    def _next(self) -> int:
        # The decoder reads exactly the bytes the encoder wrote, so reading past them is damage; and since no
        # decision is likelier than 2017/2048, a byte lasts at most ~360 decisions: garbage, or a forged image
        # size, ends in an error within that many decisions per byte of the map.
        if self.pos >= len(self.data):
            raise CodecError("corrupted ROI map: its code is cut short")
        self.pos += 1
        return self.data[self.pos - 1]

    def bit(self, probs: list[int], i: int) -> int:
        bound = (self.range >> _BITS) * probs[i]
        if self.code < bound:
            self.range = bound
            probs[i] += (_ONE - probs[i]) >> _ADAPT
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[i] -= probs[i] >> _ADAPT
            bit = 1
        self._normalise()
        return bit

    def plain(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            self.range >>= 1
            bit = int(self.code >= self.range)
            self.code -= self.range * bit
            value = (value << 1) | bit
            self._normalise()
        return value

    def _normalise(self) -> None:
        while self.range < _TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFFFF


def _code(weights: list[list[int]], palette: list[int], rows: int, cols: int, coder) -> list[list[int]]:
    """Walk the map in raster order, coding (``coder.encoding``) or decoding (appending rows to ``weights``)
    each position's decisions (module docstring)."""
    same, equals_n = list(PRIOR), [PRIOR_EQUALS_N]
    for r in range(rows):
        up = weights[r - 1] if r else None
        if not coder.encoding:  # a row at a time: a forged size errs out before it could fill memory
            weights.append([0] * cols)
        row = weights[r]
        for c in range(cols):
            w = row[c - 1] if c else (up[0] if up else palette[0])
            n = up[c] if up else w
            nw = up[c - 1] if up and c else n
            ne = up[c + 1] if up and c + 1 < cols else n
            v = row[c] if coder.encoding else None
            ctx = (n != w) * 4 + (nw != w) * 2 + (ne != w)
            if not _decision(coder, same, ctx, v != w):
                row[c] = w
                continue
            others = [p for p in palette if p != w]
            if n != w and len(others) > 1:
                if not _decision(coder, equals_n, 0, v != n):
                    row[c] = n
                    continue
                others.remove(n)
            row[c] = others[0] if len(others) == 1 else _index(coder, others, v)
    return weights


def _decision(coder, probs: list[int], ctx: int, outcome: bool) -> int:
    """One binary decision (1: the less likely outcome); ``outcome`` is read only when encoding."""
    if coder.encoding:
        coder.bit(probs, ctx, int(outcome))
        return int(outcome)
    return coder.bit(probs, ctx)


def _index(coder, others: list[int], v: int | None) -> int:
    """A weight none of whose neighbours predicts it: its index among ``others``, in plain bits."""
    bits = (len(others) - 1).bit_length()
    if coder.encoding:
        coder.plain(others.index(v), bits)
        return v
    i = coder.plain(bits)
    if i >= len(others):
        raise CodecError("corrupted ROI map: a weight outside its palette")
    return others[i]


class _Counter:
    """Stands in for the encoder to count each context's outcomes (``context_counts``)."""

    encoding = True

    def __init__(self):
        self.counts = np.zeros((len(PRIOR) + 1, 2), np.int64)

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        self.counts[i if len(probs) > 1 else len(PRIOR), bit] += 1

    def plain(self, value: int, bits: int) -> None:
        pass


def context_counts(weights: np.ndarray) -> np.ndarray:
    """(9, 2) int: how often each decision came out 0 and 1 coding ``weights``: the 8 contexts of "differs
    from W", then "is not N" (how ``PRIOR`` was estimated)."""
    counter, weights = _Counter(), np.asarray(weights, np.uint8)
    palette = np.unique(weights).tolist()
    if len(palette) > 1:
        _code(weights.tolist(), palette, *weights.shape, counter)
    return counter.counts


def encode(weights: np.ndarray) -> bytes:
    """The stream of a u8 map (rows, cols)."""
    weights = np.asarray(weights, np.uint8)
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"expected a non-empty 2-D map, not shape {weights.shape}")
    palette = np.unique(weights).tolist()
    if len(palette) == 1:  # one weight everywhere: the palette says it all
        return bytes([0, *palette])
    coder = _Encoder()
    _code(weights.tolist(), palette, *weights.shape, coder)
    return bytes([len(palette) - 1, *palette]) + coder.finish()


def decode(data: bytes, rows: int, cols: int) -> np.ndarray:
    """The u8 map (rows, cols) of a stream; CodecError unless it is exactly what ``encode`` writes for it."""
    if not data or len(data) < 2 + data[0]:
        raise CodecError("corrupted ROI map: its palette is cut short")
    palette = list(data[1 : 2 + data[0]])
    if any(a >= b for a, b in zip(palette, palette[1:])):
        raise CodecError("corrupted ROI map: its palette is not in increasing order")
    if len(palette) > 1:
        out = np.array(_code([], palette, rows, cols, _Decoder(data[2 + data[0] :])), np.uint8)
    elif len(data) == 2:
        out = np.full((rows, cols), palette[0], np.uint8)
    else:
        raise CodecError(f"corrupted ROI map: it does not hold {rows}x{cols} weights")
    if encode(out) != data:
        raise CodecError(f"corrupted ROI map: it does not hold {rows}x{cols} weights")
    return out
