"""PASCAL VOC and SBD as they unpack on disk and the split protocols of the paper.

Layouts (under one ``data.root``):

- ``VOCdevkit/VOC2011/`` (or ``TrainVal/VOCdevkit/VOC2011/``, as the VOC2011 archive unpacks) and
  ``VOCdevkit/VOC2012/``: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs),
  ``ImageSets/Segmentation/{train,val}.txt``;
- ``benchmark_RELEASE/dataset/``: ``img/<id>.jpg``, ``cls/<id>.mat`` (``GTcls.Segmentation``),
  ``train.txt``, ``val.txt``.

torchvision's ``VOCSegmentation`` and ``SBDataset`` read these same files but only under fixed split
names; the paper's ``seg11valid`` is a subtraction of two lists, so the lists are built here and the
files read with the same conventions (``tests/test_data.py`` checks both agree pixel for pixel).

Split lists may start with a UTF-8 BOM; an id listed twice is used once (with one warning). Reading a
sample's pixels and labels is :mod:`fcnlab.data.loading`; checking samples up front, before training,
is :mod:`fcnlab.data.check`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fcnlab.errors import FCNLabError

if TYPE_CHECKING:
    from fcnlab.data.folder_classes import MaskCoding

log = logging.getLogger(__name__)

PROTOCOLS = ("seg11valid", "voc2011", "voc2012_aug")
# The file names (without .txt) each protocol's train and val id lists get in a run's split_dir.
SPLIT_NAMES = {
    "seg11valid": {"train": "sbd_train", "val": "seg11valid"},
    "voc2011": {"train": "train", "val": "val"},
    "voc2012_aug": {"train": "train_aug", "val": "val"},
}

EXPECTED_LAYOUT = (
    "expected {root}/VOCdevkit/VOC2011/{{JPEGImages,SegmentationClass,ImageSets/Segmentation}} "
    "(or {root}/TrainVal/VOCdevkit/VOC2011) and {root}/benchmark_RELEASE/dataset/{{img,cls,train.txt}}"
)


@dataclass(frozen=True)
class Sample:
    """One image id with the files holding its pixels and its labels.

    ``coding``: how a folder dataset's mask codes the classes (:mod:`fcnlab.data.folder_classes`); None for
    VOC/SBD's palette PNGs and ``.mat`` files.
    """

    id: str
    image: Path
    mask: Path
    coding: MaskCoding | None = None


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


def _require(root: Path, year: str, need_sbd: bool = True) -> tuple[Path, Path | None]:
    if not root.is_dir():
        what = "is a file, not a folder (extract archives first)" if root.exists() else "does not exist"
        raise FCNLabError(
            f"data.root={root} {what}; {EXPECTED_LAYOUT.format(root=root)}; "
            "set data.root=/path/to/that/folder"
        )
    voc, sbd = voc_dir(root, year), sbd_dir(root)
    if voc is None or (sbd is None and need_sbd):
        what = f"VOCdevkit/VOC{year}" if voc is None else "benchmark_RELEASE/dataset"
        raise FCNLabError(
            f"data.root={root} has no {what}; {EXPECTED_LAYOUT.format(root=root)}; "
            "set data.root=/path/to/that/folder"
        )
    return voc, sbd


def protocol_samples(root: str | Path, protocol: str) -> tuple[list[Sample], list[Sample], dict]:
    """(train, val, split ids) of an evaluation protocol; every listed file must exist.

    ``seg11valid``: train on SBD train (8,498), validate on seg11valid (736), as the paper's Table 2.
    ``voc2011``: train on VOC2011 train (1,112), validate on VOC2011 val (1,111), as the paper's
    Table 1 (no SBD needed).
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
    elif protocol == "voc2011":
        voc, _ = _require(root, "2011", need_sbd=False)
        train = voc_samples(voc, read_ids(voc / "ImageSets/Segmentation/train.txt"))
        val = voc_samples(voc, read_ids(voc / "ImageSets/Segmentation/val.txt"))
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
