"""Finding a sample's problems up front, without training on it, with the very messages loading gives.

``headers`` (the default of ``data.check``) reads image and PNG headers and the small SBD ``.mat``
headers (:func:`mat_labels_shape`), ``full`` decodes everything, ``none`` skips the check.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from fcnlab.data.loading import (
    VOC_PALETTE,
    check_png_mask,
    load_mask,
    load_sample,
    size_mismatch,
    unreadable_image,
    unreadable_mask,
)
from fcnlab.data.voc import Sample
from fcnlab.errors import FCNLabError

CHECKS = ("headers", "full", "none")


def _mat_element(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """(type, size, data start, next element) of the MAT v5 data element at ``pos`` (little-endian)."""
    kind, size = struct.unpack_from("<II", buf, pos)
    if kind >> 16:  # the small element format: type and size share 4 bytes, data in the next 4
        return kind & 0xFFFF, kind >> 16, pos + 4, pos + 8
    return kind, size, pos + 8, pos + 8 + size + (-size % 8)


def _segmentation_shape(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(H, W) of the ``Segmentation`` field of the 1x1 struct at ``pos``; struct.error if ``buf`` is short."""
    kind, _, pos, _ = _mat_element(buf, pos)  # the miMATRIX GTcls; its subelements follow
    _, _, flags, pos = _mat_element(buf, pos)
    _, size, dims, pos = _mat_element(buf, pos)
    is_struct = kind == 14 and struct.unpack_from("<B", buf, flags)[0] == 2  # mxSTRUCT_CLASS
    if not is_struct or struct.unpack_from(f"<{size // 4}i", buf, dims) != (1, 1):
        return None
    _, _, _, pos = _mat_element(buf, pos)  # its name
    _, _, start, pos = _mat_element(buf, pos)
    width = struct.unpack_from("<i", buf, start)[0]
    _, size, start, pos = _mat_element(buf, pos)
    if start + size > len(buf):
        raise struct.error("field names cut short")
    names = [buf[start + i : start + i + width].split(b"\0")[0] for i in range(0, size, width)]
    for name in names:  # one miMATRIX per field, in the order of the names
        _, _, field, after = _mat_element(buf, pos)
        if name == b"Segmentation":
            _, _, _, field = _mat_element(buf, field)  # skip the field's array flags
            _, size, dims, _ = _mat_element(buf, field)
            shape = struct.unpack_from(f"<{size // 4}i", buf, dims)
            return (shape[0], shape[1]) if len(shape) == 2 else None
        pos = after
    return None


def mat_labels_shape(path: Path) -> tuple[int, int] | None:
    """(H, W) of an SBD ``.mat``'s ``GTcls.Segmentation`` from the MAT v5 headers alone, or None.

    Only the bytes up to that field's dimensions are decompressed, a fraction of what
    ``scipy.io.loadmat`` reads and parses. None for any layout this does not know (big-endian,
    MATLAB 7.3, another struct): the caller then loads the file, so no file is wrongly accepted or refused.
    """
    try:
        data = path.read_bytes()
        if len(data) < 136 or data[126:128] != b"IM":
            return None
        kind, size, start, _ = _mat_element(data, 128)
        if kind == 14:
            return _segmentation_shape(data, 128)
        if kind != 15:  # miCOMPRESSED: one zlib stream holding the miMATRIX
            return None
        stream, tail, buf, limit = zlib.decompressobj(), data[start : start + size], b"", 1 << 14
        while True:
            buf += stream.decompress(tail, limit - len(buf))
            tail = stream.unconsumed_tail
            try:
                return _segmentation_shape(buf, 0)
            except struct.error:
                if not tail:
                    return None
                limit *= 4
    except (OSError, struct.error, zlib.error, ValueError, ZeroDivisionError):
        return None


def check_sample(sample: Sample, level: str = "headers") -> None:
    """Raise the error loading ``sample`` would raise, found as cheaply as ``level`` allows.

    ``headers``: the image's and the mask's headers (readable, PNG mode and palette, size; an SBD
    ``.mat`` whose layout :func:`mat_labels_shape` does not know is loaded whole); ``full``: everything
    decoded, as :func:`load_sample`; ``none``: nothing. Label values and truncated pixel data are found
    by ``full`` only (or when the sample is loaded).
    """
    if level == "none":
        return
    if level == "full":
        load_sample(sample)
        return
    try:
        with Image.open(sample.image) as img:
            width, height = img.size
    except (OSError, ValueError, SyntaxError) as e:
        raise unreadable_image(sample.image, e) from None
    if sample.coding is not None:  # a folder dataset's mask: its mode must be one the coding decodes
        try:
            with Image.open(sample.mask) as png:
                mode, mask_hw = png.mode, png.size[::-1]
        except (OSError, ValueError, SyntaxError) as e:
            raise unreadable_mask(sample.mask, e) from None
        sample.coding.check_mode(sample.mask, mode)
    elif sample.mask.suffix == ".mat":
        mask_hw = mat_labels_shape(sample.mask) or tuple(load_mask(sample.mask).shape)
    else:
        try:
            with Image.open(sample.mask) as png:
                check_png_mask(sample.mask, png, VOC_PALETTE)
                mask_hw = png.size[::-1]
        except FCNLabError:
            raise
        except (OSError, ValueError, SyntaxError) as e:
            raise unreadable_mask(sample.mask, e) from None
    if mask_hw != (height, width):
        raise size_mismatch(sample, (height, width), mask_hw)


def check_samples(
    samples: Iterable[Sample], level: str = "headers", progress: Callable[[int], None] | None = None
) -> None:
    """:func:`check_sample` on each sample in order, raising the first error; ``progress(done)`` after each.

    ``level`` is ``data.check``: ``headers`` (default), ``full`` or ``none``.
    """
    if level not in CHECKS:
        raise FCNLabError(f"data.check={level}: use headers (the default), full or none")
    if level == "none":
        return
    for done, sample in enumerate(samples, 1):
        check_sample(sample, level)
        if progress is not None:
            progress(done)
