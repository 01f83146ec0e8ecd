"""A folder dataset's classes (``classes.txt``) and how its mask files code them (:class:`MaskCoding`).

``classes.txt``: one class a line, line k = class k, either ``name`` or ``name R G B`` (all lines
coloured or none). Masks are index PNGs (mode L or P: the pixel value is the class) or, when the
classes have colours, RGB PNGs in those colours. Decoded masks hold 0..K-1 and :data:`VOID` (255):
``void_index`` (the user's void value) becomes 255, ``reduce_zero_label`` makes 0 void and k k-1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.data.classes import VOID
from fcnlab.errors import FCNLabError

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.txt"
VOID_COLOUR = (224, 224, 192)  # VOC's colour of the void value 255: void, not a class, in a palette mask
INDEX_MODES = ("L", "P", "1")


@dataclass(frozen=True)
class ClassList:
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] | None


def classes_problems(path: Path) -> tuple[ClassList | None, list[str]]:
    """The classes of ``path`` and every problem found in it (an empty list: usable)."""
    if not path.is_file():
        return None, [
            f"{path}: missing; write one class a line (line k = class k): its name, optionally followed "
            "by its mask colour R G B"
        ]
    lines = path.read_text(encoding="utf-8-sig").rstrip().splitlines()
    problems, names, colors = [], [], []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        rgb = parts[1:]
        ok = len(parts) in (1, 4) and all(p.isdigit() and int(p) <= 255 for p in rgb)
        if not ok:
            problems.append(
                f'{path}:{number}: {line!r} is not "name" or "name R G B" (0..255 each); fix the line'
            )
            continue
        names.append((parts[0], number))
        colors.append((tuple(int(p) for p in rgb), number) if rgb else None)
    if not lines:
        problems.append(f"{path}: no classes; write one class name a line")
    elif len(lines) == 1 and not problems:
        problems.append(
            f"{path}: 1 class ({names[0][0]}); a segmentation needs at least 2 classes (e.g. background "
            f"and {names[0][0]}), one a line"
        )
    if len(lines) > VOID:
        problems.append(f"{path}: {len(lines)} classes; at most {VOID} (mask value {VOID} is void)")
    coloured = [c for c in colors if c is not None]
    if coloured and len(coloured) < len(colors):
        bare = next(n for (_, n), c in zip(names, colors, strict=True) if c is None)
        problems.append(f"{path}:{bare}: no colour, but other lines give one; give every class R G B or none")
    for what, items in (("class name", names), ("colour", coloured)):
        seen: dict = {}
        for value, number in items:
            if value in seen:
                shown = repr(value) if what == "class name" else str(value)
                problems.append(
                    f"{path}: {what} {shown} on lines {seen[value]} and {number}; "
                    f"each class needs its own {what.split()[-1]}"
                )
            seen.setdefault(value, number)
    if problems:
        return None, problems
    palette = tuple(c for c, _ in coloured) if coloured else None
    return ClassList(tuple(n for n, _ in names), palette), []


def read_classes(path: Path) -> ClassList:
    classes, problems = classes_problems(path)
    if problems:
        raise FCNLabError(problems[0])
    return classes


@dataclass(frozen=True)
class MaskCoding:
    """How a folder dataset's mask files hold class ids (see the module's doc)."""

    num_classes: int
    colors: tuple[tuple[int, int, int], ...] | None = None
    void_index: int = VOID
    reduce_zero_label: bool = False
    classes_file: str = CLASSES_FILE

    def check_mode(self, path: Path, mode: str) -> None:
        """An error naming ``path`` unless a mask of PIL mode ``mode`` can be decoded."""
        if mode.startswith("I;16") or mode in ("I", "F"):
            raise FCNLabError(
                f"{path}: {'16-bit' if mode != 'F' else 'floating-point'} mask (mode {mode}); "
                "save the class ids as an 8-bit index PNG (mode L or P)"
            )
        if mode == "RGB" and self.colors is None:
            raise FCNLabError(
                f"{path}: RGB mask but {self.classes_file} gives no colours; add each class's colour "
                '("name R G B") or save index masks (mode L or P)'
            )
        if mode == "RGB" and self.reduce_zero_label:
            raise FCNLabError(
                f"{path}: RGB mask with data.reduce_zero_label=true, which applies to index masks; drop it "
                f"(colours not in {self.classes_file} are void already)"
            )
        if mode not in (*INDEX_MODES, "RGB"):
            raise FCNLabError(
                f"{path}: mode {mode} mask; save an index PNG (mode L or P) or an RGB PNG in the colours "
                f"of {self.classes_file}"
            )

    def decode(
        self, path: Path, pixels: np.ndarray, palette: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict]:
        """(H, W) uint8 labels (0..K-1, 255 void) and ``{colour: pixels}`` of RGB colours not listed.

        ``palette``: a P mask's (256, 3) colours. Where ``classes.txt`` gives colours, such a mask is read
        by its colours, as an RGB one (an image editor may reorder a palette when it re-saves a file).
        """
        if pixels.ndim == 3:
            return self._decode_rgb(pixels)
        if palette is not None and self.colors is not None and not self.reduce_zero_label:
            pixels = self._palette_to_ids(path, pixels.astype(np.uint8), palette)
        raw = pixels.astype(np.uint8)
        labels = raw.copy()
        void = raw == self.void_index
        if self.reduce_zero_label:
            void |= raw == 0
            labels = raw - 1  # uint8: 0 wraps to 255, void anyway
        labels[void] = VOID
        bad = (labels >= self.num_classes) & ~void
        if bad.any():
            values, counts = np.unique(raw[bad], return_counts=True)
            raise FCNLabError(self._out_of_range(path, values, counts))
        return labels, {}

    def _palette_to_ids(self, path: Path, index: np.ndarray, palette: np.ndarray) -> np.ndarray:
        """A P mask's indices turned into class ids by their colours (the void index stays void).

        A palette that already holds each class's colour at its id changes nothing. A colour that
        ``classes.txt`` does not list (other than VOC's void colour) is refused: the indices of such a
        file are not known to be class ids, and its colours name no class.
        """
        used = [int(u) for u in np.unique(index) if u != self.void_index]
        colors = {tuple(c): k for k, c in enumerate(self.colors)}
        if all(u < len(self.colors) and tuple(palette[u]) == self.colors[u] for u in used):
            return index
        lut = np.full(256, self.void_index, dtype=np.uint8)
        for u in used:
            colour = tuple(int(c) for c in palette[u])
            if colour in colors:
                lut[u] = colors[colour]
            elif colour != VOID_COLOUR:
                raise FCNLabError(
                    f"{path}: palette mask whose colours are not those of {self.classes_file} (index {u} "
                    f"is {colour}, which no class has), so its indices cannot be read as classes; save it "
                    f"in the colours of {self.classes_file} (palette or RGB) or as a grey (mode L) index PNG"
                )
        return lut[index]

    def _out_of_range(self, path: Path, values: np.ndarray, counts: np.ndarray) -> str:
        shown = [f"{v} ({c} pixels)" for v, c in zip(values[:8].tolist(), counts[:8].tolist(), strict=True)]
        shown += [f"... {values.size - 8} more"] if values.size > 8 else []
        k, shift = self.num_classes, int(self.reduce_zero_label)
        ids = f"{shift}..{k - 1 + shift}" + (" with data.reduce_zero_label=true" if shift else "")
        return (
            f"{path}: mask values {', '.join(shown)} are neither a class of {self.classes_file} "
            f"({k} classes: {ids}) nor void ({self.void_index}); fix the mask, add the class to "
            f"{self.classes_file} or set data.void_index"
        )

    def _decode_rgb(self, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        listed = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colors], dtype=np.int32)
        order = np.argsort(listed)
        pos = np.clip(np.searchsorted(listed[order], code), 0, len(listed) - 1)
        hit = listed[order][pos] == code
        labels = np.where(hit, order[pos], VOID).astype(np.uint8)
        unknown = {}
        if not hit.all():
            values, counts = np.unique(code[~hit], return_counts=True)
            unknown = {
                (int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255): int(c)
                for v, c in zip(values, counts, strict=True)
            }
        return labels, unknown


def describe_unknown(path: Path, unknown: dict, classes_file: str = CLASSES_FILE) -> str:
    """One line listing the colours of ``path`` that ``classes.txt`` does not list (void in training)."""
    top = sorted(unknown.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{c} ({n} pixels)" for c, n in top[:5]) + (
        f", ... {len(top) - 5} more" if len(top) > 5 else ""
    )
    return (
        f"{path}: colours not in {classes_file}: {shown}; they count as void: add them to "
        f"{classes_file} or repaint them"
    )


_reported_unknown: set[str] = set()


def report_unknown_once(path: Path, unknown: dict, classes_file: str) -> None:
    """Log unlisted colours once per dataset and process (``fcnlab-data check`` lists them all)."""
    key = str(path.parent)
    if unknown and key not in _reported_unknown:
        _reported_unknown.add(key)
        log.warning(
            "%s (further masks with unlisted colours are not reported; fcnlab-data check lists them all)",
            describe_unknown(path, unknown, classes_file),
        )
