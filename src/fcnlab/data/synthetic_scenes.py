"""Drawing the generated scenes: shapes × textures over a cluttered background, and their labels.

Every function is deterministic from its seed; :mod:`fcnlab.data.synthetic` writes the results in the
on-disk layouts of VOC2011 and SBD.
"""

from __future__ import annotations

import numpy as np

from fcnlab.data.classes import SHAPES, TEXTURES, VOID


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` of radius ``r`` in object-centred, rotated coordinates (u, v)."""
    if shape == "disc":
        return u * u + v * v <= r * r
    if shape == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if shape == "triangle":  # equilateral, circumradius r: three half-planes
        inside = v >= -0.5 * r
        for angle in (np.pi / 6, 5 * np.pi / 6):
            inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5 * r
        return inside
    if shape == "cross":  # thin arms: a stride-32 map cannot draw them
        w = max(1.5, 0.2 * r)
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if shape == "ring":
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= (0.62 * r) ** 2)
    raise ValueError(shape)


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Boolean pattern: True where the object's second colour shows."""
    if texture == "solid":
        return np.zeros(u.shape, dtype=bool)
    if texture == "striped":
        return np.floor(u / period * 2) % 2 == 0
    if texture == "checked":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    if texture == "dotted":
        fu, fv = u / period % 1 - 0.5, v / period % 1 - 0.5
        return fu * fu + fv * fv < 0.09
    raise ValueError(texture)


def _hsv(h: float, sat: float, val: float) -> np.ndarray:
    """RGB in 0..255 of hue ``h`` (degrees), saturation and value in 0..1."""
    h = (h % 360) / 60
    c = val * sat
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return 255 * (np.array(rgb) + val - c)


def _class_colours(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """The two colours of an object: a hue typical of its class, jittered so that neighbouring
    classes overlap (colour hints, shape and texture decide), and a lighter or darker second tone."""
    hue = (cls - 1) * 360 / 20 + rng.normal(0, 12)
    sat, val = rng.uniform(0.55, 1.0), rng.uniform(0.45, 0.95)
    other = val - 0.35 if val > 0.7 else val + 0.35
    c1, c2 = _hsv(hue, sat, val), _hsv(hue, sat, other)
    return (c1, c2) if rng.random() < 0.5 else (c2, c1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour field with clutter (lines, blobs) that is labelled background."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Greyish, low-saturation field; the clutter on it takes any colour.
    grey = rng.uniform(40, 215, (2, 2, 1))
    corners = np.clip(grey + rng.normal(0, 18, (2, 2, 3)), 0, 255)
    fy, fx = (yy / max(h - 1, 1))[..., None], (xx / max(w - 1, 1))[..., None]
    img = (
        corners[0, 0] * (1 - fy) * (1 - fx)
        + corners[0, 1] * (1 - fy) * fx
        + corners[1, 0] * fy * (1 - fx)
        + corners[1, 1] * fy * fx
    )
    for _ in range(rng.integers(2, 6)):  # clutter lines
        y0, x0, angle = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
        dist = np.abs((yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle))
        img[dist <= rng.uniform(0.5, 2.5)] = rng.uniform(0, 255, 3)
    for _ in range(rng.integers(1, 4)):  # clutter blobs: faint ellipses
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(3, h / 4), rng.uniform(3, w / 4)
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[blob] = 0.7 * img[blob] + 0.3 * rng.uniform(0, 255, 3)
    return img


def _draw_object(rng, img, label, yy, xx, cls: int, cy: float, cx: float, r: float) -> None:
    shape, texture = SHAPES[(cls - 1) // len(TEXTURES)], TEXTURES[(cls - 1) % len(TEXTURES)]
    theta = rng.uniform(0, 2 * np.pi)
    dy, dx = yy - cy, xx - cx
    u, v = dx * np.cos(theta) + dy * np.sin(theta), -dx * np.sin(theta) + dy * np.cos(theta)
    mask = _shape_mask(shape, u, v, r)
    c1, c2 = _class_colours(rng, cls)
    second = _texture(texture, u, v, period=rng.uniform(3.0, 5.0))
    img[mask] = np.where(second[mask][:, None], c2, c1)
    label[mask] = cls


def _object_radius(rng: np.random.Generator, side: int) -> float:
    """Radii from a few pixels to most of the image: small, medium and large in equal measure."""
    kind = rng.integers(3)
    lo, hi = [(3, 8), (8, side / 4), (side / 4, side / 2)][kind]
    return float(rng.uniform(lo, max(lo + 1, hi)))


def render_scene(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 HxWx3 image, uint8 HxW labels 0..20) of one scene with 2-5 objects, no void band."""
    rng = np.random.default_rng(seed)
    img = _background(rng, h, w)
    label = np.zeros((h, w), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        r = _object_radius(rng, min(h, w))
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        _draw_object(rng, img, label, yy, xx, int(rng.integers(1, 21)), cy, cx, r)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def render_object(seed: int, size: int, cls: int) -> np.ndarray:
    """An image of one object of class ``cls`` (1..20) filling much of the frame, for classification."""
    rng = np.random.default_rng(seed)
    img = _background(rng, size, size)
    label = np.zeros((size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = float(rng.uniform(0.15, 0.45) * size)
    c = rng.uniform(0.35 * size, 0.65 * size, 2)
    _draw_object(rng, img, label, yy, xx, cls, c[0], c[1], r)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def void_band(label: np.ndarray) -> np.ndarray:
    """VOC-style labels: pixels whose 3×3 neighbourhood holds two classes become void (255)."""
    padded = np.pad(label, 1, mode="edge")
    h, w = label.shape
    edge = np.zeros_like(label, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            edge |= padded[dy : dy + h, dx : dx + w] != label
    out = label.copy()
    out[edge] = VOID
    return out
