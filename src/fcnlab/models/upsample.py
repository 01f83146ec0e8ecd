"""Bilinear upsampling as a transposed convolution (FCN Section 3.3)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn


def bilinear_taps(factor: int, size: int | None = None) -> torch.Tensor:
    """The ``size`` 1-D bilinear interpolation weights for upsampling by ``factor``.

    ``size`` is 2f or 2f - 1 (default 2f - f mod 2); the two place the taps half an input pixel
    apart, and which one a net needs follows from its coordinate maps
    (:func:`fcnlab.models.geometry.upsampling_kernel`).
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    size = 2 * factor - factor % 2 if size is None else size
    if size not in (2 * factor, 2 * factor - 1):
        raise ValueError(f"a {factor}x bilinear kernel has {2 * factor} or {2 * factor - 1} taps, not {size}")
    center = (size - 1) / 2
    return 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor


def bilinear_kernel(factor: int, size: int | None = None) -> torch.Tensor:
    """The (k, k) bilinear kernel for upsampling by ``factor``, k = ``size`` (see :func:`bilinear_taps`).

    A transposed convolution with this kernel and stride ``factor`` is exact bilinear interpolation
    away from the border: every output pixel gets weights that sum to one.
    """
    taps = bilinear_taps(factor, size)
    return torch.outer(taps, taps).float()


class BilinearUpsample(nn.Module):
    """Per-channel upsampling by ``factor``, initialised to bilinear interpolation.

    ``learnable=True`` is the paper's deconvolution layer: a full C×C ``ConvTranspose2d`` whose
    weights start as the bilinear kernel on the diagonal (no cross-channel mixing) and are then
    trained. ``learnable=False`` is the same arithmetic with the kernel frozen, never stored in
    checkpoints because it is derived from ``factor`` alone. Being separable (the outer product of
    one 1-D kernel with itself), it runs as two small matrix products, one per axis, that compute
    only the output window asked for: CPU kernels for a depthwise transposed convolution with a
    64×64 kernel are slow, and the reference crops most of that map away anyway
    (docs/performance.md has the figures).
    """

    def __init__(self, channels: int, factor: int, learnable: bool, kernel_size: int | None = None) -> None:
        super().__init__()
        self.channels, self.factor, self.learnable = channels, factor, learnable
        kernel = bilinear_kernel(factor, kernel_size)
        self.kernel_size = kernel.shape[-1]
        if learnable:
            self.deconv = nn.ConvTranspose2d(channels, channels, kernel.shape[-1], stride=factor, bias=False)
            with torch.no_grad():
                self.deconv.weight.zero_()
                for c in range(channels):
                    self.deconv.weight[c, c] = kernel
        else:  # the 1-D kernel: bilinear_kernel(factor) is its outer product with itself
            self.register_buffer("taps", bilinear_taps(factor, kernel_size).float(), persistent=False)

    def full_size(self, size: int) -> int:
        """Length of the upsampled axis for an input axis of ``size``: (size - 1) * factor + k."""
        return (size - 1) * self.factor + self.kernel_size

    def forward(self, x: torch.Tensor, offset: int = 0, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The upsampled map, or its ``size`` (h, w) window starting at (offset, offset)."""
        full = (self.full_size(x.shape[-2]), self.full_size(x.shape[-1]))
        h, w = size if size is not None else (full[0] - offset, full[1] - offset)
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
            # Export and compile see the plain (depthwise) deconvolution and a crop, with no checks on
            # the sizes (each would become a guard on the input's): shape-generic ONNX, as before.
            if self.learnable:
                full_map = self.deconv(x)
            else:
                kernel = torch.outer(self.taps, self.taps).to(x.dtype).expand(self.channels, 1, -1, -1)
                full_map = F.conv_transpose2d(x, kernel, stride=self.factor, groups=self.channels)
            return full_map[..., offset : offset + h, offset : offset + w]
        if offset < 0 or offset + h > full[0] or offset + w > full[1]:
            raise RuntimeError(f"upsampled map {full} cannot cover {h}x{w} at offset {offset}")
        if self.learnable:
            return self.deconv(x)[..., offset : offset + h, offset : offset + w]
        # In float32 even under autocast: these are the scores the loss and the argmax read, and bf16
        # products would round them to 8 bits of mantissa. (The meta device, FLOP counting, has no autocast.)
        device = x.device.type
        off = (
            torch.autocast(device, enabled=False)
            if torch.amp.is_autocast_available(device)
            else nullcontext()
        )
        with off:
            x = x.to(torch.promote_types(x.dtype, torch.float32))
            rows = self._axis_matrix(x.shape[-2], offset, h, x)
            cols = self._axis_matrix(x.shape[-1], offset, w, x)
            return rows @ x @ cols.T

    def _axis_matrix(self, n_in: int, offset: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
        """(n_out, n_in): output position offset + i takes taps[offset + i - factor * j] from input j."""
        pos = torch.arange(offset, offset + n_out, device=like.device)[:, None]
        tap = pos - self.factor * torch.arange(n_in, device=like.device)[None, :]
        inside = (tap >= 0) & (tap < self.kernel_size)
        taps = self.taps.to(like.dtype)[tap.clamp(0, self.kernel_size - 1)]
        return torch.where(inside, taps, torch.zeros((), dtype=like.dtype, device=like.device))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, factor={self.factor}, kernel_size={self.kernel_size}, "
            f"learnable={self.learnable}"
        )
