"""The transforms as coding runs them on a CPU: the same functions, rewritten for speed.

A model's ``g_a``/``g_s`` are written for training. Coding runs a copy of them (``coding_copy``) that computes the
same function, up to float32 rounding, in fewer passes over memory:

* **channels-last tensors**: oneDNN's convolutions work in that layout; given the default NCHW they reorder
  every layer's input and output (measured here: 1.3-1.7x on a transform tile).
* **GDN/IGDN in three passes** (``FusedGDN``): ``x * rsqrt(beta + gamma x^2)`` with the normalisation computed
  in place, instead of CompressAI's separate square, reparametrisation, root and product on every call.
* **a transposed convolution to three channels as a sub-pixel convolution** (``SubPixelConv``): the last layer
  of ``g_s`` (5x5, stride 2, to RGB) is oneDNN's slowest kernel (three output channels); the same sums as a
  3x3 convolution to 12 channels followed by a pixel shuffle run 3-4x faster.

The hyper-synthesis (float64, bit-exactness) is not touched here: ``CodingModel.hyper_synthesis`` computes only
the positions a tile needs. Nothing here changes a file's format: the rewrites are checked against the model's
own modules in the tests (pixels within one grey level, the golden files).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import nn

from helpers.codec.regions import region_only


class FusedGDN(nn.Module):
    """A trained GDN (or IGDN) with its reparametrised ``beta`` and ``gamma`` computed once."""

    def __init__(self, gdn: GDN):
        super().__init__()
        self.inverse = gdn.inverse
        with torch.no_grad():
            gamma = gdn.gamma_reparam(gdn.gamma)
            self.register_buffer("gamma", gamma[:, :, None, None].clone())
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x * x, self.gamma, self.beta)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(x)


def _is_doubling(layer: nn.Module) -> bool:
    """A ConvTranspose2d(5, stride 2, padding 2, output_padding 1): CompressAI's ``deconv``, which doubles."""
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and layer.kernel_size == (5, 5)
        and layer.stride == (2, 2)
        and layer.padding == (2, 2)
        and layer.output_padding == (1, 1)
        and layer.groups == 1
        and layer.dilation == (1, 1)
    )


class SubPixelConv(nn.Module):
    """A doubling transposed convolution as a 3x3 convolution to 4x the channels and a pixel shuffle.

    Output pixel ``2m + r`` of the transposed convolution sums input ``m + d`` (d in -1, 0, 1) with kernel tap
    ``r + 2 - 2d`` (where that tap exists): each of the four output phases is a 3x3 convolution whose taps are
    a subset of the 5x5 kernel. The same products, summed in another order."""

    # The geometry of the transposed convolution it computes (``regions.region_only`` reads it).
    transposed, kernel_size, stride, padding, output_padding = True, (5, 5), (2, 2), (2, 2), (1, 1)

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        w = deconv.weight.detach()  # (in, out, 5, 5)
        cin, cout = w.shape[:2]
        taps = w.new_zeros(cout, 2, 2, cin, 3, 3)  # out channel, row phase, column phase, in, 3x3
        for ry in range(2):
            for rx in range(2):
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ky, kx = ry + 2 - 2 * dy, rx + 2 - 2 * dx
                        if ky < 5 and kx < 5:
                            taps[:, ry, rx, :, dy + 1, dx + 1] = w[:, :, ky, kx].T
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(taps.reshape(4 * cout, cin, 3, 3))
            self.conv.bias.copy_(deconv.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def _rewritten(layer: nn.Module) -> nn.Module:
    if isinstance(layer, GDN):
        return FusedGDN(layer)
    if _is_doubling(layer) and layer.out_channels <= 4:
        return SubPixelConv(layer)  # wide ones: oneDNN's own transposed convolution is as fast
    return layer


class ChannelsLast(nn.Module):
    """Runs ``net`` on a channels-last copy of its input (a no-op for an input already laid out so), on the whole
    input or for an output region only."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, region: tuple[slice, slice] | None = None) -> torch.Tensor:
        """``net(x)``, or only its output ``region`` (rows, columns; see ``regions.region_only``)."""
        x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x) if region is None else region_only(self.net, x, region)


def coding_copy(transform: nn.Module) -> nn.Module:
    """A frozen, rewritten copy of ``g_a`` or ``g_s`` for coding (the model's own module is left as it is)."""
    net = copy.deepcopy(transform).eval().requires_grad_(False)
    if isinstance(net, nn.Sequential):
        net = nn.Sequential(*(_rewritten(layer) for layer in net))
    return ChannelsLast(net).eval()
