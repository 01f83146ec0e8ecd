"""Your own data: a folder of images and label masks (``data=folder data.root=DIR``).

    DIR/images/{train,val}/<id>.<jpg|jpeg|png|bmp|tif|webp>
    DIR/masks/{train,val}/<id>.png
    DIR/classes.txt            # line k = class k: "name" or "name R G B"

or, instead of the two split folders, ``DIR/splits/{train,val}.txt`` (one id a line) over
``DIR/images/<id>.<ext>`` and ``DIR/masks/<id>.png``. Masks are index PNGs (mode L or P) or RGB PNGs in
the colours of ``classes.txt`` (:mod:`fcnlab.data.folder_classes`). :func:`folder_samples` lists every
problem of the layout at once (``fcnlab-data check`` prints them all); :class:`FolderDataModule`
stops at the first.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fcnlab.data.classes import VOID
from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.data.folder_classes import CLASSES_FILE, MaskCoding, classes_problems, read_classes
from fcnlab.data.voc import Sample
from fcnlab.errors import FCNLabError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".webp")
SPLITS = ("train", "val")
SHOWN = 5  # ids named in a message

log = logging.getLogger(__name__)


def _first(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")


def expected_layout(root: Path) -> str:
    return (
        f"expected {root}/images/{{train,val}}/<id>.<jpg|png|...>, {root}/masks/{{train,val}}/<id>.png "
        f"and {root}/{CLASSES_FILE}"
    )


def _files(folder: Path, problems: list[str], masks: bool, notes: list[str]) -> dict[str, Path]:
    """id -> file of the images (or PNG masks) directly in ``folder``; odd files become problems, files
    that are not read (subfolders, other files) a note."""
    found: dict[str, Path] = {}
    skipped = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and not p.is_file()]
    skipped += [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTS
    ]
    if skipped:
        shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in skipped[:SHOWN])
        notes.append(
            f"{folder}: {len(skipped)} entr{'y is' if len(skipped) == 1 else 'ies are'} not read (first: "
            f"{shown}): only the {'PNG masks' if masks else 'image files'} directly in this folder are, "
            "subfolders are not searched"
        )
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        ext = path.suffix.lower()
        if masks and ext != ".png":
            if ext in IMAGE_EXTS:
                problems.append(
                    f"{path}: masks must be PNG files (JPEG and others change the labels); save it as "
                    f"{path.with_suffix('.png').name}"
                )
            continue
        if not masks and ext not in IMAGE_EXTS:
            continue
        if path.stem in found:
            problems.append(
                f"{folder}: id {path.stem} has two files ({found[path.stem].name}, {path.name}); keep one"
            )
            continue
        found[path.stem] = path
    return found


def _split_from_folders(
    root: Path, split: str, coding: MaskCoding, problems: list[str], notes: list[str]
) -> list[Sample]:
    images_dir, masks_dir = root / "images" / split, root / "masks" / split
    if not images_dir.is_dir():
        problems.append(
            f"data.root={root} has no images/{split} folder (nor splits/{split}.txt); {expected_layout(root)}"
        )
        return []
    if not masks_dir.is_dir():
        problems.append(f"{masks_dir}: missing; put one <id>.png mask per image of images/{split} there")
        return []
    images, masks = _files(images_dir, problems, False, notes), _files(masks_dir, problems, True, notes)
    if not images:
        problems.append(f"{images_dir}: no images; put the {split} images there (<id>.jpg, <id>.png, ...)")
        return []
    no_mask, no_image = set(images) - set(masks), set(masks) - set(images)
    if no_mask:
        problems.append(
            f"{masks_dir}: no mask for {len(no_mask)} image(s) of images/{split} (first: {_first(no_mask)}); "
            "add their <id>.png masks or remove the images"
        )
    if no_image:
        problems.append(
            f"{images_dir}: no image for {len(no_image)} mask(s) of masks/{split} "
            f"(first: {_first(no_image)}); add the images or remove those masks"
        )
    return [Sample(i, images[i], masks[i], coding) for i in sorted(set(images) & set(masks))]


def _split_from_list(
    root: Path, split: str, coding: MaskCoding, problems: list[str], notes: list[str]
) -> list[Sample]:
    listed = root / "splits" / f"{split}.txt"
    if not listed.is_file():
        problems.append(f"{listed}: missing; list the {split} ids there, one a line, as in splits/train.txt")
        return []
    lines = listed.read_text(encoding="utf-8-sig").splitlines()
    ids = list(dict.fromkeys(line.split()[0] for line in lines if line.strip()))
    if not ids:
        problems.append(f"{listed}: no ids; list one image id a line")
        return []
    samples, no_image, no_mask = [], [], []
    for i in ids:
        image = next((p for ext in IMAGE_EXTS if (p := root / "images" / f"{i}{ext}").is_file()), None)
        mask = root / "masks" / f"{i}.png"
        if image is None:
            no_image.append(i)
        elif not mask.is_file():
            no_mask.append(i)
        else:
            samples.append(Sample(i, image, mask, coding))
    for missing, where in ((no_image, "images/<id>.<jpg|png|...>"), (no_mask, "masks/<id>.png")):
        if missing:
            problems.append(
                f"{listed}: {len(missing)} listed id(s) have no {where} in {root} "
                f"(first: {_first(missing)}); add the files or remove the ids"
            )
    return samples


def check_void_index(void_index: object, names: tuple[str, ...], reduce_zero_label: bool) -> None:
    if not (isinstance(void_index, int) and not isinstance(void_index, bool) and 0 <= void_index <= VOID):
        raise FCNLabError(
            f"data.void_index={void_index}: must be a whole number 0..255 "
            "(the mask value of unlabelled pixels)"
        )
    k = void_index - int(reduce_zero_label)
    if 0 <= k < len(names):
        raise FCNLabError(
            f"data.void_index={void_index} is the mask value of class {names[k]} of {CLASSES_FILE}; "
            "set the value your masks use for unlabelled pixels (default 255)"
        )


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def overlap_problem(root: Path, train: list[Sample], val: list[Sample]) -> str | None:
    """The train/val overlap (the same image in both splits), or None: validation must not score images
    the net trained on. Split lists: an id in both; split folders: an id whose two images are the same."""
    val_images = {s.id: s.image for s in val}
    both = sorted(s.id for s in train if s.id in val_images and _same_file(s.image, val_images[s.id]))
    if not both:
        return None
    if (root / "splits").is_dir():
        where = f"{root}/splits: {len(both)} id(s) listed in both train.txt and val.txt"
    else:
        where = f"{root}/images: {len(both)} image(s) in both train and val (the same file)"
    return (
        f"{where} (first: {_first(both)}); validation would score images the net trained on: remove them "
        "from one split, or set data.allow_overlap=true if that is intended"
    )


def zero_label_note(root: Path, train: list[Sample], coding: MaskCoding) -> str | None:
    """With ``reduce_zero_label``, how much of a few train masks value 0 (made void) covers, when that
    is most of them: 0 is then likely a class of the data (e.g. background), not "unlabelled"."""
    from fcnlab.data.loading import mask_pixels

    zeros = total = 0
    for sample in train[:8]:
        try:
            values = mask_pixels(sample.mask, lambda png: None)
        except FCNLabError:
            continue  # named by the checks that read this mask
        if values.ndim == 2:
            zeros, total = zeros + int((values == 0).sum()), total + values.size
    if not total or zeros / total <= 0.5:
        return None
    return (
        f"data.reduce_zero_label=true makes mask value 0 void, and 0 covers {100 * zeros / total:.1f} % of "
        f"the pixels of the first {min(8, len(train))} train masks of {root}: if 0 is one of your classes "
        "(e.g. background), drop data.reduce_zero_label"
    )


_noted: set[str] = set()


def log_notes_once(notes: list[str]) -> None:
    """Each note (an ignored file, a suspicious setting) logged once per process."""
    for note in notes:
        if note not in _noted:
            _noted.add(note)
            log.warning(note)


def folder_samples(
    root: str | Path,
    void_index: int = VOID,
    reduce_zero_label: bool = False,
    allow_overlap: bool = False,
    notes: list[str] | None = None,
) -> tuple[list[Sample], list[Sample], list[str], MaskCoding | None]:
    """(train, val, every problem found, the mask coding) of the folder layout under ``root``.

    What is not wrong but worth a word (files not read, a suspicious setting) goes to ``notes`` if
    given, else to the log, once per process.
    """
    root = Path(root)
    said: list[str] = [] if notes is None else notes
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        return [], [], [f"data.root={root} {what}; {expected_layout(root)}"], None
    classes, problems = classes_problems(root / CLASSES_FILE)
    if classes is None:
        return [], [], problems, None
    check_void_index(void_index, classes.names, reduce_zero_label)
    coding = MaskCoding(
        len(classes.names), classes.colors, void_index, reduce_zero_label, str(root / CLASSES_FILE)
    )
    split = _split_from_list if (root / "splits").is_dir() else _split_from_folders
    train, val = (split(root, name, coding, problems, said) for name in SPLITS)
    if not allow_overlap and (overlap := overlap_problem(root, train, val)):
        problems.append(overlap)
    if reduce_zero_label and (note := zero_label_note(root, train, coding)):
        said.append(note)
    if notes is None:
        log_notes_once(said)
    return train, val, problems, coding


def require_usable(
    root: str | Path | None,
    void_index: int = VOID,
    reduce_zero_label: bool = False,
    allow_overlap: bool = False,
):
    """(train, val) of the layout, or the first problem as an error (with how to list them all)."""
    if root in (None, ""):
        raise FCNLabError(
            "data=folder needs data.root=DIR: a folder holding images/{train,val}, masks/{train,val} "
            f"and {CLASSES_FILE}"
        )
    train, val, problems, _ = folder_samples(root, void_index, reduce_zero_label, allow_overlap)
    if problems:
        more = (
            f" ({len(problems) - 1} more problem(s): fcnlab-data check data=folder data.root={root} "
            "lists them all)"
            if len(problems) > 1
            else ""
        )
        raise FCNLabError(problems[0] + more)
    return train, val


class FolderDataModule(SegmentationDataModule):
    """:class:`SegmentationDataModule` over the folder layout (see the module's doc).

    ``class_names`` and ``class_colors`` (``(R, G, B)`` by class, None when ``classes.txt`` gives none)
    come from ``classes.txt``. ``void_index``: the mask value of unlabelled pixels (ignored in loss and
    metrics); ``reduce_zero_label``: 0 is unlabelled and value k is class k-1 (ADE20K-style).
    Training uses the same crop, scale and flip options as the generated data.
    """

    def __init__(
        self,
        root: str | None = None,
        void_index: int = VOID,
        reduce_zero_label: bool = False,
        protocol: str = "folder",
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        generate: dict | None = None,
        allow_overlap: bool = False,
        **kwargs,
    ) -> None:
        if root in (None, ""):
            require_usable(root)
        classes_file = Path(root) / CLASSES_FILE
        if not Path(root).is_dir():
            folder_problems = folder_samples(root)[2]
            raise FCNLabError(folder_problems[0])
        classes = read_classes(classes_file)
        if class_names is not None or generate is not None or kwargs.get("class_colors") is not None:
            raise FCNLabError(
                "data.class_names / data.class_colors / data.generate: data=folder takes its classes from "
                f"{classes_file}; drop them"
            )
        if num_classes is not None and num_classes != len(classes.names):
            raise FCNLabError(
                f"data.num_classes={num_classes} but {classes_file} lists {len(classes.names)} classes; "
                "drop the override"
            )
        check_void_index(void_index, classes.names, bool(reduce_zero_label))
        kwargs.pop("class_colors", None)
        colors = [list(c) for c in classes.colors] if classes.colors else None  # None: the VOC palette
        super().__init__(
            root, protocol="folder", class_names=list(classes.names), class_colors=colors, **kwargs
        )
        self.void_index, self.reduce_zero_label = void_index, bool(reduce_zero_label)
        self.allow_overlap = bool(allow_overlap)

    def split_samples(self) -> tuple[list[Sample], list[Sample]]:
        return require_usable(self.root, self.void_index, self.reduce_zero_label, self.allow_overlap)

    def split_names(self) -> dict[str, str]:
        return {"train": "train", "val": "val"}
