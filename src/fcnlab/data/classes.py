"""PASCAL VOC labels in one place: class names, the void label and the palette of the mask PNGs."""

from __future__ import annotations

import re

import numpy as np

from fcnlab.errors import FCNLabError

VOID = 255  # VOC's "void / difficult" label: object boundaries and ambiguous pixels, never scored
NUM_CLASSES = 21

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# The generated dataset's 20 object classes: 5 shapes × 4 textures, so that neither shape nor
# texture alone names the class; colour hints (a jittered hue per class) but never decides.
SHAPES = ("disc", "square", "triangle", "cross", "ring")
TEXTURES = ("solid", "striped", "checked", "dotted")
SHAPES_CLASSES = ("background", *(f"{t}-{s}" for s in SHAPES for t in TEXTURES))


def voc_palette() -> np.ndarray:
    """The (256, 3) uint8 colour map of VOC's palette PNGs (label bits spread over R, G, B)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[label] = (r, g, b)
    return palette


def label_colors(num_classes: int) -> np.ndarray:
    """(max(256, num_classes), 3) uint8: VOC's colour map, continued past 256 by the same bit spreading."""
    if num_classes <= 256:
        return voc_palette()
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    palette[:256] = voc_palette()
    for label in range(256, num_classes):
        c, rgb = label, [0, 0, 0]
        for bit in range(8):
            for k in range(3):
                rgb[k] |= ((c >> k) & 1) << (7 - bit)
            c >>= 3
        palette[label] = rgb
    return palette


def class_palette(colors: list | None, num_classes: int) -> np.ndarray:
    """(max(256, num_classes), 3) uint8 colour of each class index: ``colors`` where given (one RGB
    triple per class), else VOC's palette; indices past the classes (255: void) keep VOC's colours."""
    palette = label_colors(num_classes)
    if colors:
        palette[: len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    return palette


def check_class_names(names: list, option: str = "data.class_names") -> list[str]:
    """The names as strings; a blank or repeated name is one line naming ``option``."""
    out = [str(n).strip() for n in names]
    if "" in out:
        raise FCNLabError(f"{option}: class {out.index('')} has an empty name; give every class a name")
    seen: dict[str, int] = {}
    for index, name in enumerate(out):
        if name in seen:
            raise FCNLabError(
                f"{option}: classes {seen[name]} and {index} are both named {name!r}; class names must differ"
            )
        seen[name] = index
    return out


def check_class_colors(
    colors: list | None, names: list[str], option: str = "data.class_colors"
) -> list | None:
    """One ``[R, G, B]`` (whole numbers 0..255) per class, all different, as lists; None stays None
    (the VOC palette). Anything else is one line naming ``option``."""
    if colors is None:
        return None
    if not isinstance(colors, list | tuple) or len(colors) != len(names):
        count = len(colors) if isinstance(colors, list | tuple) else "no list of"
        raise FCNLabError(
            f"{option}: {count} colours for {len(names)} classes; give one [R, G, B] per class, "
            "in class order (or null: the VOC palette)"
        )
    out: list[list[int]] = []
    owner: dict[tuple[int, ...], int] = {}
    for index, color in enumerate(colors):
        ok = isinstance(color, list | tuple) and len(color) == 3
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color)
        if not ok:
            raise FCNLabError(
                f"{option}[{index}]={color} (class {names[index]!r}): not an [R, G, B] of whole "
                "numbers 0..255"
            )
        key = tuple(int(v) for v in color)
        if key in owner:
            first = owner[key]
            raise FCNLabError(
                f"{option}: classes {names[first]!r} and {names[index]!r} share the colour {list(key)}; "
                "give each class its own"
            )
        owner[key] = index
        out.append(list(key))
    return out


def metric_keys(names: list[str]) -> list[str]:
    """One logger-safe key per class name (``val_iu/<key>``): characters other than letters, digits,
    ``-`` and ``.`` become ``_`` (TensorBoard's rule; a ``/`` would nest wandb panels), and a key two
    names would share gets its class index appended."""
    keys = [re.sub(r"[^\w.-]", "_", name) or "_" for name in names]
    counts = {k: keys.count(k) for k in keys}
    return [f"{k}_{i}" if counts[k] > 1 else k for i, k in enumerate(keys)]
