"""PASCAL VOC labels in one place: class names, the void label and the palette of the mask PNGs."""

from __future__ import annotations

import numpy as np

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
