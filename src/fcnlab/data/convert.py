"""A VOC/SBD tree rewritten in the folder layout of :mod:`fcnlab.data.folder` (``fcnlab-data convert-voc``).

The protocol's train and val samples become ``images/{train,val}`` (the image files copied byte for
byte) and ``masks/{train,val}`` (index PNGs in VOC's palette, void 255: SBD's ``.mat`` labels
re-saved, VOC's PNGs decoded and re-saved), with ``classes.txt`` giving each class its VOC colour. The
same images then give the same metrics through either layout (``tests/test_folder.py``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from PIL import Image

from fcnlab.atomic import atomic_dir
from fcnlab.data.classes import SHAPES_CLASSES, VOC_CLASSES, voc_palette
from fcnlab.data.folder_classes import CLASSES_FILE
from fcnlab.data.loading import load_mask
from fcnlab.data.voc import protocol_samples
from fcnlab.errors import FCNLabError

GENERATED_MANIFEST = "fcnlab_synthetic.json"  # fcnlab.data.synthetic.MANIFEST: a generated tree's names


def classes_text(names: list[str] | tuple[str, ...]) -> str:
    """``classes.txt`` of ``names`` in VOC's palette colours."""
    palette = voc_palette()
    return "".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in zip(names, palette.tolist(), strict=False))


def save_index_png(labels, path: Path) -> None:
    png = Image.fromarray(labels, mode="P")
    png.putpalette(voc_palette().flatten().tolist())
    png.save(path)


def convert_voc(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    protocol: str = "seg11valid",
    class_names: list[str] | None = None,
    manifest: dict | None = None,
) -> Path:
    """Write ``src``'s ``protocol`` (train, val) into ``dst`` in the folder layout; returns ``dst``.

    ``class_names``: None for the generated classes when ``src`` is a generated tree, else VOC's.
    Built in a temporary sibling folder and renamed into place (``manifest``, if given, is written
    last as ``fcnlab_synthetic.json``), so an interrupted conversion leaves nothing that looks whole.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FCNLabError(f"{dst}: exists and is not empty; convert into a new or empty folder")
    train, val, _ = protocol_samples(src, protocol)
    if class_names is None:
        class_names = list(SHAPES_CLASSES if (src / GENERATED_MANIFEST).is_file() else VOC_CLASSES)
    with atomic_dir(dst) as tmp:
        for split, samples in (("train", train), ("val", val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
            for s in samples:
                shutil.copyfile(s.image, tmp / "images" / split / f"{s.id}{s.image.suffix.lower()}")
                save_index_png(load_mask(s.mask).numpy(), tmp / "masks" / split / f"{s.id}.png")
        (tmp / CLASSES_FILE).write_text(classes_text(class_names))
        if manifest is not None:
            (tmp / GENERATED_MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dst
