"""PASCAL VOC and SBD as they unpack on disk, the split protocols of the paper, and sample loading.

Layouts (under one ``data.root``):

- ``VOCdevkit/VOC2011/`` (or ``TrainVal/VOCdevkit/VOC2011/``, as the VOC2011 archive unpacks) and
  ``VOCdevkit/VOC2012/``: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs),
  ``ImageSets/Segmentation/{train,val}.txt``;
- ``benchmark_RELEASE/dataset/``: ``img/<id>.jpg``, ``cls/<id>.mat`` (``GTcls.Segmentation``),
  ``train.txt``, ``val.txt``.

torchvision's ``VOCSegmentation`` and ``SBDataset`` read these same files but only under fixed split
names; the paper's ``seg11valid`` is a subtraction of two lists, so the lists are built here and the
files read with the same conventions (``tests/test_data.py`` checks both agree pixel for pixel).

Datasets ignore EXIF orientation: VOC's masks align with the stored pixels, so images are read as
stored (``fcnlab-predict`` applies EXIF, as a photo viewer would). Split lists may start with a UTF-8
BOM; an id listed twice is used once (with one warning). :func:`check_sample` finds a sample's problems
without training on it, with the very messages loading would give: ``headers`` (the default of
``data.check``) reads image and PNG headers and the small SBD ``.mat`` files, ``full`` decodes
everything.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from fcnlab.data.classes import NUM_CLASSES, VOID, voc_palette
from fcnlab.errors import FCNLabError

log = logging.getLogger(__name__)
VOC_PALETTE = voc_palette()
_GREY_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)

PROTOCOLS = ("seg11valid", "voc2012_aug")
CHECKS = ("headers", "full", "none")

EXPECTED_LAYOUT = (
    "expected {root}/VOCdevkit/VOC2011/{{JPEGImages,SegmentationClass,ImageSets/Segmentation}} "
    "(or {root}/TrainVal/VOCdevkit/VOC2011) and {root}/benchmark_RELEASE/dataset/{{img,cls,train.txt}}"
)


@dataclass(frozen=True)
class Sample:
    """One image id with the files holding its pixels and its labels."""

    id: str
    image: Path
    mask: Path


def voc_dir(root: Path, year: str) -> Path | None:
    """The ``VOC<year>`` folder under ``root`` in either unpacked form, or None."""
    for candidate in (root / "VOCdevkit" / f"VOC{year}", root / "TrainVal" / "VOCdevkit" / f"VOC{year}"):
        if candidate.is_dir():
            return candidate
    return None


def sbd_dir(root: Path) -> Path | None:
    candidate = root / "benchmark_RELEASE" / "dataset"
    return candidate if candidate.is_dir() else None


_warned_duplicates: set[tuple[Path, int]] = set()  # each list's duplicates are reported once per process


def read_ids(path: Path) -> list[str]:
    """Image ids of a split list, one per line, each once; a missing or empty list is an error."""
    if not path.is_file():
        raise FCNLabError(f"{path}: split list missing; the dataset is incomplete, re-extract it")
    listed = [line.split()[0] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not listed:
        raise FCNLabError(f"{path}: split list is empty; re-extract the dataset or fix the file")
    ids = list(dict.fromkeys(listed))  # first occurrence wins: an image counts once in loss and metrics
    if len(ids) < len(listed) and (path, len(listed)) not in _warned_duplicates:
        _warned_duplicates.add((path, len(listed)))
        repeated = next(i for i, n in Counter(listed).items() if n > 1)
        log.warning(
            f"{path}: {len(listed) - len(ids)} duplicate id(s) (first: {repeated}); each id is used once"
        )
    return ids


def voc_samples(voc: Path, ids: list[str]) -> list[Sample]:
    return [Sample(i, voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png") for i in ids]


def sbd_samples(sbd: Path, ids: list[str]) -> list[Sample]:
    return [Sample(i, sbd / "img" / f"{i}.jpg", sbd / "cls" / f"{i}.mat") for i in ids]


def seg11valid_ids(root: Path) -> list[str]:
    """VOC2011 segmentation val minus every image in SBD train (736 ids on the real data).

    The paper evaluates on this subset because SBD train contains some VOC2011 val images.
    """
    voc, sbd = _require(root, "2011")
    train = set(read_ids(sbd / "train.txt"))
    return [i for i in read_ids(voc / "ImageSets/Segmentation/val.txt") if i not in train]


def official_seg11valid() -> list[str]:
    """The reference release's seg11valid list (its ``data/pascal/seg11valid.txt``, 736 ids), shipped here."""
    return (resources.files("fcnlab.data") / "seg11valid.txt").read_text().split()


def compare_with_official_seg11valid(root: Path, ids: list[str]) -> None:
    """Log whether seg11valid computed from a real tree is the release's list (one line either way).

    A generated tree (fcnlab.data.synthetic's manifest at its root) has its own ids and is not compared.
    """
    from fcnlab.data.synthetic import MANIFEST  # imported here: only real trees need it

    if (root / MANIFEST).is_file():
        return
    official = official_seg11valid()
    differ = sorted(set(ids) ^ set(official))
    if not differ:
        log.info("seg11valid: the %d ids computed from %s equal the reference release's list", len(ids), root)
        return
    missing, extra = set(official) - set(ids), set(ids) - set(official)
    log.warning(
        "seg11valid computed from %s differs from the reference release's list in %d ids "
        "(%d of its %d missing, %d extra; first: %s): check the VOC2011 val and SBD train lists there",
        root,
        len(differ),
        len(missing),
        len(official),
        len(extra),
        ", ".join(differ[:5]),
    )


def _require(root: Path, year: str) -> tuple[Path, Path]:
    if not root.is_dir():
        what = "is a file, not a folder (extract archives first)" if root.exists() else "does not exist"
        raise FCNLabError(
            f"data.root={root} {what}; {EXPECTED_LAYOUT.format(root=root)}; "
            "set data.root=/path/to/that/folder"
        )
    voc, sbd = voc_dir(root, year), sbd_dir(root)
    if voc is None or sbd is None:
        what = f"VOCdevkit/VOC{year}" if voc is None else "benchmark_RELEASE/dataset"
        raise FCNLabError(
            f"data.root={root} has no {what}; {EXPECTED_LAYOUT.format(root=root)}; "
            "set data.root=/path/to/that/folder"
        )
    return voc, sbd


def protocol_samples(root: str | Path, protocol: str) -> tuple[list[Sample], list[Sample], dict]:
    """(train, val, split ids) of an evaluation protocol; every listed file must exist.

    ``seg11valid``: train on SBD train (8,498), validate on seg11valid (736), as the paper's Table 2.
    ``voc2012_aug``: train on SBD train+val and VOC2012 train minus VOC2012 val (10,582), validate on
    VOC2012 val (1,449), the protocol most later work reports.
    """
    root = Path(root)
    if protocol == "seg11valid":
        voc, sbd = _require(root, "2011")
        val_ids = seg11valid_ids(root)
        if not val_ids:
            raise FCNLabError(
                f"{voc}/ImageSets/Segmentation/val.txt: every id is in SBD train; seg11valid is empty"
            )
        compare_with_official_seg11valid(root, val_ids)
        train = sbd_samples(sbd, read_ids(sbd / "train.txt"))
        val = voc_samples(voc, val_ids)
    elif protocol == "voc2012_aug":
        voc, sbd = _require(root, "2012")
        val_ids = read_ids(voc / "ImageSets/Segmentation/val.txt")
        held_out = set(val_ids)
        voc_train = read_ids(voc / "ImageSets/Segmentation/train.txt")
        sbd_ids = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
        voc_set = set(voc_train)
        train = voc_samples(voc, [i for i in voc_train if i not in held_out])
        train += sbd_samples(sbd, sorted({i for i in sbd_ids if i not in held_out and i not in voc_set}))
        val = voc_samples(voc, val_ids)
    else:
        raise FCNLabError(f"unknown data.protocol={protocol!r}; valid: {', '.join(PROTOCOLS)}")
    for samples in (train, val):
        _check_files(samples)
    return train, val, {"train": [s.id for s in train], "val": [s.id for s in val]}


def _check_files(samples: list[Sample]) -> None:
    for s in samples:
        for path in (s.image, s.mask):
            if not path.is_file():
                raise FCNLabError(
                    f"{path}: missing, but id {s.id} is in the split list; "
                    "re-extract the dataset or remove the id"
                )


def rgb_pixels(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an opened image, pixels as stored (no EXIF rotation).

    16-bit greyscale (PIL modes ``I;16*``, and ``I`` within 0..65535, as 16-bit PNGs and TIFFs open) is
    mapped to 8 bits by the standard linear rescale v * 255 / 65535 (what converting a 16-bit file to
    8-bit does elsewhere), so the image looks as it does on screen; PIL's own ``convert("RGB")`` clips
    it to white. Other integer or float pixels have no single meaning and are refused.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.int64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ValueError(f"mode {img.mode} pixels outside 0..65535; save it as an 8- or 16-bit image")
        grey = ((grey * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise ValueError("floating-point pixels (mode F); save it as an 8- or 16-bit image")
    return np.asarray(img.convert("RGB"))


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB as stored (EXIF ignored); a truncated or unreadable file is an error naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = rgb_pixels(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise _unreadable_image(path, e) from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _unreadable_image(path: Path, e: Exception) -> FCNLabError:
    return FCNLabError(f"{path}: unreadable or truncated image ({e}); replace the file or remove its id")


def _unreadable_mask(path: Path, e: Exception) -> FCNLabError:
    return FCNLabError(f"{path}: unreadable label file ({e}); replace the file or remove its id")


def _check_png_mask(path: Path, png: Image.Image, palette: np.ndarray | None) -> None:
    """Mode P or L; a P mask's stored colours for the class ids must be ``palette``'s (or a grey ramp).

    A palette PNG of labels whose colours differ was almost surely re-saved with another (e.g. an
    adaptive) palette, so its indices are no longer class ids: refused, as training on it would give
    wrong numbers without a word. A grey-ramp palette (entry i = (i, i, i)) holds the ids as they show.
    """
    if png.mode not in ("P", "L"):
        raise ValueError(f"mode {png.mode}, expected a palette (P) or grey (L) PNG of labels")
    if png.mode != "P" or palette is None:
        return
    pal = png.palette
    raw = pal.palette if pal is not None and pal.mode == "RGB" and pal.rawmode in (None, "RGB") else None
    if raw is None:  # getpalette() decodes the whole image; the PLTE chunk as read is used when it can
        raw = bytes(png.getpalette() or [])
    stored = np.frombuffer(raw, dtype=np.uint8)[: len(raw) // 3 * 3].reshape(-1, 3)
    ids = [i for i in (*range(NUM_CLASSES), VOID) if i < len(stored)]
    if (stored[ids] == palette[ids]).all() or (stored[ids] == _GREY_RAMP[ids]).all():
        return
    i = next(i for i in ids if (stored[i] != palette[i]).any())
    raise FCNLabError(
        f"{path}: palette is not VOC's (index {i} is {tuple(int(c) for c in stored[i])}, VOC's is "
        f"{tuple(int(c) for c in palette[i])}), so its indices are likely not class ids (re-quantised?); "
        "save the class ids with the VOC palette or as a greyscale (mode L) PNG"
    )


def _show(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _checked_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8 after checking, before any cast, that every value is 0..20 or 255."""
    if labels.ndim != 2 or labels.dtype.kind not in "biuf":
        raise _unreadable_mask(path, ValueError(f"labels are a {labels.ndim}-d {labels.dtype} array"))
    values = np.unique(labels)
    if labels.dtype == np.uint8:
        bad = values[(values >= NUM_CLASSES) & (values != VOID)]
    else:  # e.g. an SBD .mat saved as double or int16: 261, -1 or 2.9 must not wrap or truncate
        ok = (((values >= 0) & (values < NUM_CLASSES)) | (values == VOID)) & (values == np.round(values))
        bad = values[~ok]
    if bad.size:
        shown = [_show(v) for v in bad[:10]] + ([f"... {bad.size - 10} more"] if bad.size > 10 else [])
        listed = ", ".join(str(v) for v in shown)
        fix = "fix the file or remove its id" if path.suffix == ".mat" else "fix the mask or its palette"
        raise FCNLabError(f"{path}: label values [{listed}] outside 0..{NUM_CLASSES - 1} and {VOID}; {fix}")
    return np.ascontiguousarray(labels, dtype=np.uint8)


def _read_mat_labels(path: Path) -> np.ndarray:
    try:
        return scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0]
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as e:
        raise _unreadable_mask(path, e) from None


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


def load_mask(path: Path, palette: np.ndarray | None = VOC_PALETTE) -> torch.Tensor:
    """(H, W) uint8 labels from a VOC palette PNG or an SBD ``.mat``; values must be 0..20 or 255.

    ``palette``: the colours a P-mode mask must carry (see :func:`_check_png_mask`); None: any.
    """
    if path.suffix == ".mat":
        labels = _read_mat_labels(path)
    else:
        try:
            with Image.open(path) as png:
                _check_png_mask(path, png, palette)
                png.load()
                labels = np.asarray(png)
        except FCNLabError:
            raise
        except (OSError, ValueError, SyntaxError) as e:
            raise _unreadable_mask(path, e) from None
    return torch.from_numpy(_checked_labels(path, labels).copy())


EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5: "transposed", 6: "rotated 90°", 7: "transversed", 8: "rotated 270°"}


def _size_mismatch(sample: Sample, image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> FCNLabError:
    """The mismatch error; it names the image's EXIF rotation when that is what would explain it."""
    message = (
        f"{sample.mask}: labels are {tuple(mask_hw)} but {sample.image.name} is {tuple(image_hw)}; "
        "image and mask must be the same size"
    )
    if tuple(mask_hw) == tuple(image_hw)[::-1]:
        try:
            with Image.open(sample.image) as img:
                orientation = img.getexif().get(EXIF_ORIENTATION)
        except (OSError, ValueError, SyntaxError):
            orientation = None
        if orientation in _SWAPS_SIDES:
            message += (
                f"; the image has EXIF orientation {orientation} ({_SWAPS_SIDES[orientation]}), which "
                "datasets ignore: masks must match the stored pixels"
            )
    return FCNLabError(message)


def load_sample(sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
    image, mask = load_image(sample.image), load_mask(sample.mask)
    if image.shape[-2:] != mask.shape:
        raise _size_mismatch(sample, tuple(image.shape[-2:]), tuple(mask.shape))
    return image, mask


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
        raise _unreadable_image(sample.image, e) from None
    if sample.mask.suffix == ".mat":
        mask_hw = mat_labels_shape(sample.mask) or tuple(load_mask(sample.mask).shape)
    else:
        try:
            with Image.open(sample.mask) as png:
                _check_png_mask(sample.mask, png, VOC_PALETTE)
                mask_hw = png.size[::-1]
        except FCNLabError:
            raise
        except (OSError, ValueError, SyntaxError) as e:
            raise _unreadable_mask(sample.mask, e) from None
    if mask_hw != (height, width):
        raise _size_mismatch(sample, (height, width), mask_hw)


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
