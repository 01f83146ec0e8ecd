"""Hand-made folder datasets (fcnlab.data.folder's layout) for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"sky": (0, 0, 255), "grass": (0, 200, 0), "road": (90, 90, 90)}


def image(h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def save_mask(labels: np.ndarray, path: Path, kind: str = "L") -> None:
    """``labels`` (H, W) as an index PNG of mode L or P, or (kind rgb) in ``COLOURS``'s colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "rgb":
        colours = np.array([*COLOURS.values(), *[(250, 0, 250)] * 253], dtype=np.uint8)
        Image.fromarray(colours[labels]).save(path)
        return
    png = Image.fromarray(labels.astype(np.uint8), mode="L")
    if kind == "P":
        png = png.convert("P")
        png.putpalette(np.random.default_rng(1).integers(0, 256, 768, dtype=np.uint8).tolist())
    png.save(path)


def make_folder(
    root: Path,
    masks: dict[str, dict[str, np.ndarray]],
    kind: str = "L",
    colours: bool = False,
    classes: tuple[str, ...] = tuple(COLOURS),
) -> Path:
    """``root/images/<split>/<id>.jpg`` (random pixels), ``root/masks/<split>/<id>.png``, ``classes.txt``."""
    for split, by_id in masks.items():
        for n, (i, labels) in enumerate(by_id.items()):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            image(*labels.shape, seed=n).save(root / "images" / split / f"{i}.png")
            save_mask(labels, root / "masks" / split / f"{i}.png", kind)
    lines = [f"{c} {' '.join(map(str, COLOURS[c]))}" if colours else c for c in classes]
    (root / "classes.txt").write_text("\n".join(lines) + "\n")
    return root


def stripes(h: int = 12, w: int = 10, values: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Rows cycling through ``values``."""
    return np.array([[values[r % len(values)]] * w for r in range(h)], dtype=np.uint8)
