"""Coordinate maps: where a layer's pixel sits in the input image, so crops are derived, not guessed.

A layer's map is ``x = stride * y + offset``: feature index ``y`` looks at input pixel ``x``. This is
the bookkeeping of the reference release's ``coord_map``: a convolution (or pooling) of kernel k,
stride s and padding p maps its output index y to input index ``s*y + (k-1)/2 - p``; a transposed
convolution inverts that. Two maps of equal stride differ by a constant shift, which is the crop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoordMap:
    """Input-image coordinate of a feature index: ``x = stride * y + offset``."""

    stride: float = 1.0
    offset: float = 0.0

    def conv(self, kernel: int, stride: int = 1, padding: int = 0) -> CoordMap:
        """The map after a convolution or pooling layer applied to this one."""
        return CoordMap(self.stride * stride, self.offset + self.stride * ((kernel - 1) / 2 - padding))

    def deconv(self, kernel: int, stride: int) -> CoordMap:
        """The map after a transposed convolution (no padding) applied to this one."""
        return CoordMap(self.stride / stride, self.offset - self.stride * (kernel - 1) / (2 * stride))


def shift(coarse: CoordMap, fine: CoordMap) -> int:
    """Integer d with ``coarse[j + d]`` at the same image point as ``fine[j]`` (maps of equal stride)."""
    if coarse.stride != fine.stride:
        raise ValueError(f"cannot align maps of stride {coarse.stride} and {fine.stride}")
    d = (fine.offset - coarse.offset) / fine.stride
    if d != int(d):
        raise ValueError(f"maps {coarse} and {fine} are misaligned by a fraction of a pixel ({d})")
    return int(d)
