"""Bilinear upsampling as a transposed convolution (FCN Section 3.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The (k, k) bilinear interpolation kernel for upsampling by ``factor``, k = 2f - f mod 2.

    A transposed convolution with this kernel and stride ``factor`` is exact bilinear interpolation
    away from the border: every output pixel gets weights that sum to one.
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return torch.outer(taps, taps).float()


class BilinearUpsample(nn.Module):
    """Per-channel upsampling by ``factor``, initialised to bilinear interpolation.

    ``learnable=True`` is the paper's deconvolution layer: a full C×C ``ConvTranspose2d`` whose
    weights start as the bilinear kernel on the diagonal (no cross-channel mixing) and are then
    trained. ``learnable=False`` is the same arithmetic with the kernel frozen; it runs as a
    depthwise transposed convolution from a non-persistent buffer, C times cheaper than the full
    C×C form and never stored in checkpoints because it is derived from ``factor`` alone.
    """

    def __init__(self, channels: int, factor: int, learnable: bool) -> None:
        super().__init__()
        self.channels, self.factor, self.learnable = channels, factor, learnable
        kernel = bilinear_kernel(factor)
        if learnable:
            self.deconv = nn.ConvTranspose2d(channels, channels, kernel.shape[-1], stride=factor, bias=False)
            with torch.no_grad():
                self.deconv.weight.zero_()
                for c in range(channels):
                    self.deconv.weight[c, c] = kernel
        else:
            weight = kernel.expand(channels, 1, *kernel.shape).contiguous()
            self.register_buffer("weight", weight, persistent=False)

    @property
    def kernel_size(self) -> int:
        return 2 * self.factor - self.factor % 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.learnable:
            return self.deconv(x)
        return F.conv_transpose2d(x, self.weight.to(x.dtype), stride=self.factor, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}, learnable={self.learnable}"
