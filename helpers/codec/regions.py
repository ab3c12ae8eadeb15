"""A convolutional net's output on a region only: the layers computed where that region depends on them.

A transform run on a tile with a halo computes the halo's outputs only to crop them away; ``region_only``
computes each layer on just the inputs the kept outputs sum, which is exactly what the whole run sums for them.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_geometry(layer: nn.Module, dim: int) -> tuple[int, int, int]:
    return layer.kernel_size[dim], layer.stride[dim], layer.padding[dim]


def _kind(layer: nn.Module) -> str:
    """ "conv", "transposed" (a layer that declares a transposed convolution's geometry, as PyTorch's own
    convolutions do with ``transposed``) or "pointwise"."""
    transposed = getattr(layer, "transposed", None)
    return "pointwise" if transposed is None else "transposed" if transposed else "conv"


def _output_size(layer: nn.Module, n: int, dim: int) -> int:
    if _kind(layer) == "conv":
        k, s, p = _conv_geometry(layer, dim)
        return (n + 2 * p - k) // s + 1
    if _kind(layer) == "transposed":
        k, s, p = _conv_geometry(layer, dim)
        return (n - 1) * s - 2 * p + k + layer.output_padding[dim]
    return n


def _needed(layer: nn.Module, lo: int, hi: int, size: int, dim: int) -> tuple[int, int]:
    """The input positions ``[lo', hi')`` (of ``size``) that outputs ``[lo, hi)`` of ``layer`` sum; a strided
    convolution's start rounded down to its stride, so that the outputs stay on the whole run's grid."""
    if _kind(layer) == "conv":
        k, s, p = _conv_geometry(layer, dim)
        lo, hi = lo * s - p, (hi - 1) * s - p + k
        lo = max(lo, 0) // s * s
    elif _kind(layer) == "transposed":
        k, s, p = _conv_geometry(layer, dim)
        lo, hi = -((k - 1 - lo - p) // s), (hi - 1 + p) // s + 1  # ceil((lo + p - k + 1) / s)
    return max(lo, 0), min(hi, size)


def _output_start(layer: nn.Module, start: int, dim: int) -> int:
    """Where the output of ``layer`` run on inputs from ``start`` on lies in the whole run's output."""
    if _kind(layer) == "conv":
        return start // layer.stride[dim]
    if _kind(layer) == "transposed":
        return start * layer.stride[dim]
    return start


def _flattened(net: nn.Module):
    for layer in net:
        yield from _flattened(layer) if isinstance(layer, nn.Sequential) else (layer,)


def region_only(net: nn.Sequential, x: torch.Tensor, region: tuple[slice, slice]) -> torch.Tensor:
    """``net(x)[..., rows, cols]``, each layer run only on the inputs that region depends on (a window with a
    halo otherwise spends much of its work on the halo). Each kept output sums the same inputs as in the whole
    run, and sees zero padding only where the whole input ends too. Layers other than convolutions must be
    pointwise; ``region``'s slices have explicit bounds."""
    layers, sizes = list(_flattened(net)), [tuple(x.shape[-2:])]
    for layer in layers:
        sizes.append(tuple(_output_size(layer, sizes[-1][d], d) for d in (0, 1)))
    need = [[(sl.start, sl.stop) for sl in region]]
    for layer, size in zip(reversed(layers), reversed(sizes[:-1])):
        need.insert(0, [_needed(layer, *need[0][d], size[d], d) for d in (0, 1)])
    start = (0, 0)
    for layer, ((r0, r1), (c0, c1)) in zip(layers + [None], need):
        x = x[..., r0 - start[0] : r1 - start[0], c0 - start[1] : c1 - start[1]]
        if layer is not None:
            x, start = layer(x), (_output_start(layer, r0, 0), _output_start(layer, c0, 1))
    return x
