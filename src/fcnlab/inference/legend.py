"""What ``fcnlab-predict`` writes beside the masks so they read without the checkpoint: the classes'
colours as ``legend.png`` (a swatch and the name per class) and ``classes.txt`` (``name R G B`` per line,
line k = class k: the format a ``data=folder`` dataset's ``classes.txt`` takes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fcnlab.atomic import atomic_path, write_text

LEGEND_PNG = "legend.png"
CLASSES_TXT = "classes.txt"
ROWS_PER_COLUMN = 40


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib: Latin, Greek, Cyrillic), else PIL's own ASCII font."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def legend_image(names: list[str], palette: np.ndarray) -> Image.Image:
    """RGB image: per class a colour swatch (black outline) and ``<index> <name>``, 40 rows a column."""
    font = _font(13)
    row, swatch, pad = 20, 14, 6
    labels = [f"{i} {name}" for i, name in enumerate(names)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows = min(len(names), ROWS_PER_COLUMN)
    columns = [labels[k : k + ROWS_PER_COLUMN] for k in range(0, len(labels), ROWS_PER_COLUMN)]
    widths = [swatch + 4 * pad + int(max(probe.textlength(t, font=font) for t in col)) for col in columns]
    img = Image.new("RGB", (sum(widths) + pad, rows * row + pad), "white")
    draw = ImageDraw.Draw(img)
    x = pad
    for c, (col, width) in enumerate(zip(columns, widths, strict=True)):
        for r, text in enumerate(col):
            index, y = c * ROWS_PER_COLUMN + r, pad + r * row
            color = tuple(int(v) for v in palette[index])
            draw.rectangle([x, y, x + swatch, y + swatch], fill=color, outline=(0, 0, 0))
            draw.text((x + swatch + pad, y), text, fill=(0, 0, 0), font=font)
        x += width
    return img


def write_legend(output: Path, names: list[str], palette: np.ndarray) -> dict:
    """``legend.png`` and ``classes.txt`` in ``output`` (each written atomically); returns their paths."""
    png, txt = output / LEGEND_PNG, output / CLASSES_TXT
    with atomic_path(png) as tmp:
        legend_image(names, palette).save(tmp, format="PNG")
    lines = [f"{name} {' '.join(str(int(v)) for v in palette[i])}" for i, name in enumerate(names)]
    write_text(txt, "\n".join(lines) + "\n")
    return {"legend": str(png), "classes": str(txt)}
