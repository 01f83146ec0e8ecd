"""Finding a dataset's problems before training on it, with the very messages loading gives.

Training checks each sample up front (``data.check``, :func:`check_samples`): ``headers`` (the
default) reads image and PNG headers and the small SBD ``.mat`` headers (:func:`mat_labels_shape`),
``full`` decodes everything, ``none`` skips the check; the first problem stops the run.

``fcnlab-data check`` (:func:`run_check`) runs every check over the whole train and val splits, with a
progress bar, and lists all problems, one line each (the layout, ``classes.txt``, image/mask pairs,
headers, sizes, mask modes and values); plus what training only counts: RGB colours ``classes.txt``
does not list (void in training), and each class's share of the pixels. Works on any ``data=`` config
(folder, shapes, VOC).
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fcnlab.data.classes import VOID
from fcnlab.data.folder_classes import CLASSES_FILE, classes_problems, describe_unknown
from fcnlab.data.loading import (
    VOC_PALETTE,
    check_png_mask,
    load_image,
    load_mask,
    load_sample,
    read_folder_mask,
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


@dataclass
class Survey:
    class_names: list[str]
    problems: list[str] = field(default_factory=list)
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> pixels per class
    images: dict[str, np.ndarray] = field(default_factory=dict)  # split -> images holding each class
    counts: dict[str, int] = field(default_factory=dict)  # split -> samples
    notes: list[str] = field(default_factory=list)  # not wrong, worth a word: files not read, settings


def _labels(sample: Sample) -> tuple[np.ndarray, dict]:
    if sample.coding is None:
        return load_mask(sample.mask).numpy(), {}
    return read_folder_mask(sample.mask, sample.coding)


def survey_samples(splits: dict[str, Sequence[Sample]], report: Survey, bar: bool = True) -> Survey:
    """Decode every sample of ``splits``, adding each one's problem (if any) and its class pixels."""
    from tqdm import tqdm

    k = len(report.class_names)
    for split, samples in splits.items():
        pixels, images = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
        for sample in tqdm(samples, desc=f"check {split}", unit="image", disable=not bar, file=sys.stderr):
            try:
                check_sample(sample, "headers")
                load_image(sample.image)
                labels, unknown = _labels(sample)
            except FCNLabError as e:
                report.problems.append(str(e))
                continue
            if unknown:
                report.problems.append(describe_unknown(sample.mask, unknown, sample.coding.classes_file))
            counts = np.bincount(labels[labels != VOID], minlength=k)[:k]
            pixels += counts
            images += counts > 0
        report.pixels[split], report.images[split], report.counts[split] = pixels, images, len(samples)
    return report


def survey_config(data_cfg, bar: bool = True) -> Survey:
    """The survey of the dataset a composed ``data`` config describes."""
    if str(data_cfg.get("_target_", "")).endswith("FolderDataModule"):
        from fcnlab.data.folder import folder_samples

        root = data_cfg.get("root")
        if root in (None, ""):
            raise FCNLabError("fcnlab-data check data=folder needs data.root=DIR (or --root DIR)")
        notes: list[str] = []
        allow_overlap = data_cfg.get("allow_overlap", False)
        train, val, problems, _ = folder_samples(
            root, data_cfg.void_index, data_cfg.reduce_zero_label, allow_overlap, notes
        )
        classes, _ = classes_problems(Path(root) / CLASSES_FILE)
        names = list(classes.names) if classes is not None else []
        report = Survey(names, list(problems), notes=notes)
        if classes is None:
            return report
    else:
        from fcnlab.data.datamodule import SegmentationDataModule
        from fcnlab.data.voc import protocol_samples

        names = SegmentationDataModule(
            data_cfg.root, data_cfg.protocol, data_cfg.get("generate"), data_cfg.get("class_names")
        ).class_names
        train, val, _ = protocol_samples(data_cfg.root, data_cfg.protocol)
        report = Survey(list(names))
    return survey_samples({"train": train, "val": val}, report, bar)


def format_survey(report: Survey) -> str:
    splits = list(report.pixels)
    width = max([12, *(len(n) for n in report.class_names)])
    head = f"{'class':<{width}}" + "".join(f" {s + ' pixels %':>16} {s + ' images':>12}" for s in splits)
    lines = [head, "-" * len(head)]
    totals = {s: max(int(report.pixels[s].sum()), 1) for s in splits}
    for c, name in enumerate(report.class_names):
        row = f"{name:<{width}}"
        for s in splits:
            row += f" {100 * report.pixels[s][c] / totals[s]:16.3f} {int(report.images[s][c]):12d}"
        lines.append(row)
    lines.append(", ".join(f"{s}: {report.counts[s]} images" for s in splits))
    return "\n".join(lines)


def run_check(overrides: list[str], bar: bool = True) -> int:
    """Compose the train config with ``overrides``, survey its data, print; 2 if problems were found."""
    from fcnlab.config import compose_train_config

    cfg = compose_train_config(overrides, job="check")
    report = survey_config(cfg.data, bar)
    if report.pixels:
        print(format_survey(report))
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(
            f"error: {len(report.problems)} problem(s) in data.root={cfg.data.root}; "
            "fix them and run the check again",
            file=sys.stderr,
        )
        return 2
    print(f"data.root={cfg.data.root}: no problems found")
    return 0
