"""Coordinate maps: where a layer's pixel sits in the input image, so crops are derived, not guessed.

A layer's map is ``x = stride * y + offset``: feature index ``y`` looks at input pixel ``x``. This is
the bookkeeping of the reference release's ``coord_map``: a convolution (or pooling) of kernel k,
stride s and padding p maps its output index y to input index ``s*y + (k-1)/2 - p``; a transposed
convolution inverts that. Two maps of equal stride differ by a constant shift, which is the crop.

:func:`walk` derives a map from a backbone's real layers (Inception blocks included), so every crop,
receptive field and upsampling kernel follows from the net as built; :func:`set_geometry` sets the
paddings and pooling rounding of the two geometries on those layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.googlenet import BasicConv2d, Inception
from torchvision.ops import FrozenBatchNorm2d

GEOMETRIES = ("faithful", "efficient")

# Layers that keep a map as it is (per-pixel arithmetic) and containers run in order.
_POINTWISE = (nn.ReLU, nn.BatchNorm2d, FrozenBatchNorm2d, nn.Dropout, nn.Identity, nn.LocalResponseNorm)
_IN_ORDER = (nn.Sequential, BasicConv2d)


@dataclass(frozen=True)
class CoordMap:
    """Input-image coordinate of a feature index: ``x = stride * y + offset``; ``rf``: how many input
    pixels (a side) one feature sees (its receptive field), kept beside the map but not part of it."""

    stride: float = 1.0
    offset: float = 0.0
    rf: float = field(default=1.0, compare=False)

    def conv(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> CoordMap:
        """The map after a convolution or pooling layer applied to this one."""
        extent = dilation * (kernel - 1)
        offset = self.offset + self.stride * (extent / 2 - padding)
        return CoordMap(self.stride * stride, offset, self.rf + extent * self.stride)

    def deconv(self, kernel: int, stride: int) -> CoordMap:
        """The map after a transposed convolution (no padding) applied to this one."""
        # An output pixel mixes up to ceil(k / s) neighbouring inputs, self.stride apart in the image.
        rf = self.rf + (math.ceil(kernel / stride) - 1) * self.stride
        return CoordMap(self.stride / stride, self.offset - self.stride * (kernel - 1) / (2 * stride), rf)


def shift(coarse: CoordMap, fine: CoordMap) -> int:
    """Integer d with ``coarse[j + d]`` at the same image point as ``fine[j]`` (maps of equal stride)."""
    if coarse.stride != fine.stride:
        raise ValueError(f"cannot align maps of stride {coarse.stride} and {fine.stride}")
    d = (fine.offset - coarse.offset) / fine.stride
    if d != int(d):
        raise ValueError(f"maps {coarse} and {fine} are misaligned by a fraction of a pixel ({d})")
    return int(d)


def upsampling_kernel(coarse: CoordMap, factor: int, target: CoordMap) -> int:
    """The bilinear kernel (2·factor, else 2·factor − 1) that upsamples ``coarse`` onto ``target``'s grid.

    An even kernel shifts the map by half a coarse pixel less than an odd one; which of the two keeps
    the crop a whole number of pixels depends on the offsets the layers below left (VGG16: 64, the
    release's FCN-AlexNet: 63).
    """
    for kernel in (2 * factor, 2 * factor - 1):
        try:
            shift(coarse.deconv(kernel, factor), target)
            return kernel
        except ValueError:
            continue
    raise ValueError(f"no {factor}x bilinear kernel aligns {coarse} with {target}")


def _pair(v: int | tuple[int, ...]) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise ValueError(f"coordinate maps need square kernels, strides and paddings, got {v}")
        return v[0]
    return v


def walk(layer: nn.Module, m: CoordMap) -> CoordMap:
    """The map after ``layer`` (a conv, a pooling, a pointwise layer, a container run in order, or an
    Inception block, whose branches must end on one map) applied to a map ``m``."""
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        dilation = _pair(getattr(layer, "dilation", 1))
        return m.conv(_pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding), dilation)
    if isinstance(layer, _POINTWISE):
        return m
    if isinstance(layer, _IN_ORDER):
        for child in layer.children():
            m = walk(child, m)
        return m
    if isinstance(layer, Inception):  # branches side by side, concatenated: one map, the widest view
        ends = [walk(b, m) for b in (layer.branch1, layer.branch2, layer.branch3, layer.branch4)]
        if len({(e.stride, e.offset) for e in ends}) != 1:
            raise ValueError(f"Inception branches end on different maps: {ends}")
        return CoordMap(ends[0].stride, ends[0].offset, max(e.rf for e in ends))
    raise ValueError(f"no coordinate map for a {type(layer).__name__} layer")


def out_channels(layer: nn.Module) -> int | None:
    """Channels ``layer`` outputs (its last conv's; an Inception's branches summed); None: it keeps them."""
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    if isinstance(layer, Inception):
        return sum(out_channels(b) for b in (layer.branch1, layer.branch2, layer.branch3, layer.branch4))
    found = None
    for child in layer.children():
        found = out_channels(child) or found
    return found


def conv_depth(layer: nn.Module) -> int:
    """Convolutions on the longest path through ``layer`` (an Inception block: its deepest branch):
    the "conv. layers" of the paper's Table 1 (AlexNet 8, VGG16 16, GoogLeNet 22 with their heads)."""
    if isinstance(layer, nn.Conv2d):
        return 1
    if isinstance(layer, Inception):
        return max(conv_depth(b) for b in (layer.branch1, layer.branch2, layer.branch3, layer.branch4))
    return sum(conv_depth(child) for child in layer.children())


class CeilMaxPool2d(nn.MaxPool2d):
    """Caffe's max pooling: ceil rounding, no padding, a kernel at least the stride (every strided pool
    of the faithful geometry; VGG's 2×2 ones in both).

    Under export, compile or tracing it pools the input padded at the bottom and right by stride − 1
    with -inf, in floor rounding: the same windows (each starts inside the input when kernel >= stride)
    and the same output, but an output size torch.export can reason about; with ``ceil_mode`` its
    shape checks fail on AlexNet's and GoogLeNet's dynamic height and width.
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        if kernel_size < stride:
            raise ValueError(f"CeilMaxPool2d needs kernel >= stride, got {kernel_size} and {stride}")
        super().__init__(kernel_size, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
            return self.padded_floor(x)
        return super().forward(x)

    def padded_floor(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.max_pool2d(F.pad(x, (0, s - 1, 0, s - 1), value=float("-inf")), self.kernel_size, s)


def set_geometry(features: nn.Sequential, geometry: str) -> None:
    """Set the first conv's padding and every strided pooling of ``features`` for ``geometry``.

    ``faithful`` is the reference Caffe nets: the first conv padded by 100, so even a 1×1 input leaves
    a map the fc6 convolution covers, and pooling with Caffe's ceil rounding and no padding
    (:class:`CeilMaxPool2d`).
    ``efficient`` pads the first conv by (k−1)/2 and each strided pooling by (k−1)/2 with floor
    rounding (ceil rounding, no padding, where the kernel equals the stride, as VGG's 2×2): a map of n
    pixels becomes ceil(n / stride) at every layer, so any input from 1×1 up works and no pixel far
    outside the image is computed. Layers inside blocks (an Inception's stride-1 pooling) keep theirs.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; valid: {', '.join(GEOMETRIES)}")
    first = next(m for m in features.modules() if isinstance(m, nn.Conv2d))
    k = _pair(first.kernel_size)
    first.padding = (100, 100) if geometry == "faithful" else ((k - 1) // 2,) * 2
    for name, pool in features.named_children():
        if not isinstance(pool, nn.MaxPool2d) or _pair(pool.stride) == 1:
            continue
        k, s = _pair(pool.kernel_size), _pair(pool.stride)
        if geometry == "faithful" or k == s:
            setattr(features, name, CeilMaxPool2d(k, s))
        else:
            setattr(features, name, nn.MaxPool2d(k, s, padding=(k - 1) // 2))
