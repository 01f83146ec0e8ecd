"""Reading one sample: an image's RGB pixels and a mask's class ids, each checked as it is read.

Datasets ignore EXIF orientation: VOC's masks align with the stored pixels, so images are read as
stored (``fcnlab-predict`` applies EXIF, as a photo viewer would). Every problem is one
:class:`~fcnlab.errors.FCNLabError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from fcnlab.data.classes import NUM_CLASSES, VOID, voc_palette
from fcnlab.data.folder_classes import MaskCoding, report_unknown_once
from fcnlab.data.voc import Sample
from fcnlab.errors import FCNLabError

VOC_PALETTE = voc_palette()
_GREY_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def rgb_pixels(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an opened image, pixels as stored (no EXIF rotation).

    16-bit greyscale (PIL modes ``I;16*``, and ``I`` within 0..65535, as 16-bit PNGs and TIFFs open) is
    mapped to 8 bits by the standard linear rescale v * 255 / 65535 (what converting a 16-bit file to
    8-bit does elsewhere), so the image looks as it does on screen; PIL's own ``convert("RGB")`` clips
    it to white. Other integer or float pixels have no single meaning and are refused.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.int64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ValueError(f"mode {img.mode} pixels outside 0..65535; save it as an 8- or 16-bit image")
        grey = ((grey * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise ValueError("floating-point pixels (mode F); save it as an 8- or 16-bit image")
    return np.asarray(img.convert("RGB"))


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB as stored (EXIF ignored); a truncated or unreadable file is an error naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = rgb_pixels(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise unreadable_image(path, e) from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def unreadable_image(path: Path, e: Exception) -> FCNLabError:
    return FCNLabError(f"{path}: unreadable or truncated image ({e}); replace the file or remove its id")


def unreadable_mask(path: Path, e: Exception) -> FCNLabError:
    return FCNLabError(f"{path}: unreadable label file ({e}); replace the file or remove its id")


def mask_pixels(path: Path, check) -> np.ndarray:
    """A label PNG's stored values, after ``check(opened image)`` (its mode, its palette) passed; an
    unreadable file is one error naming it (VOC's and the folder layout's masks both read here)."""
    try:
        with Image.open(path) as png:
            check(png)
            png.load()
            return np.asarray(png)
    except FCNLabError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise unreadable_mask(path, e) from None


def check_png_mask(path: Path, png: Image.Image, palette: np.ndarray | None) -> None:
    """Mode P or L; a P mask's stored colours for the class ids must be ``palette``'s (or a grey ramp).

    A palette PNG of labels whose colours differ was almost surely re-saved with another (e.g. an
    adaptive) palette, so its indices are no longer class ids: refused, as training on it would give
    wrong numbers without a word. A grey-ramp palette (entry i = (i, i, i)) holds the ids as they show.
    """
    if png.mode not in ("P", "L"):
        raise ValueError(f"mode {png.mode}, expected a palette (P) or grey (L) PNG of labels")
    if png.mode != "P" or palette is None:
        return
    pal = png.palette
    raw = pal.palette if pal is not None and pal.mode == "RGB" and pal.rawmode in (None, "RGB") else None
    if raw is None:  # getpalette() decodes the whole image; the PLTE chunk as read is used when it can
        raw = bytes(png.getpalette() or [])
    stored = np.frombuffer(raw, dtype=np.uint8)[: len(raw) // 3 * 3].reshape(-1, 3)
    ids = [i for i in (*range(NUM_CLASSES), VOID) if i < len(stored)]
    if (stored[ids] == palette[ids]).all() or (stored[ids] == _GREY_RAMP[ids]).all():
        return
    i = next(i for i in ids if (stored[i] != palette[i]).any())
    raise FCNLabError(
        f"{path}: palette is not VOC's (index {i} is {tuple(int(c) for c in stored[i])}, VOC's is "
        f"{tuple(int(c) for c in palette[i])}), so its indices are likely not class ids (re-quantised?); "
        "save the class ids with the VOC palette or as a greyscale (mode L) PNG"
    )


def _show(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _checked_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8 after checking, before any cast, that every value is 0..20 or 255."""
    if labels.ndim != 2 or labels.dtype.kind not in "biuf":
        raise unreadable_mask(path, ValueError(f"labels are a {labels.ndim}-d {labels.dtype} array"))
    values = np.unique(labels)
    if labels.dtype == np.uint8:
        bad = values[(values >= NUM_CLASSES) & (values != VOID)]
    else:  # e.g. an SBD .mat saved as double or int16: 261, -1 or 2.9 must not wrap or truncate
        ok = (((values >= 0) & (values < NUM_CLASSES)) | (values == VOID)) & (values == np.round(values))
        bad = values[~ok]
    if bad.size:
        shown = [_show(v) for v in bad[:10]] + ([f"... {bad.size - 10} more"] if bad.size > 10 else [])
        listed = ", ".join(str(v) for v in shown)
        fix = "fix the file or remove its id" if path.suffix == ".mat" else "fix the mask or its palette"
        raise FCNLabError(f"{path}: label values [{listed}] outside 0..{NUM_CLASSES - 1} and {VOID}; {fix}")
    return np.ascontiguousarray(labels, dtype=np.uint8)


def _read_mat_labels(path: Path) -> np.ndarray:
    try:
        return scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0]
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as e:
        raise unreadable_mask(path, e) from None


def load_mask(path: Path, palette: np.ndarray | None = VOC_PALETTE) -> torch.Tensor:
    """(H, W) uint8 labels from a VOC palette PNG or an SBD ``.mat``; values must be 0..20 or 255.

    ``palette``: the colours a P-mode mask must carry (see :func:`check_png_mask`); None: any.
    """
    if path.suffix == ".mat":
        labels = _read_mat_labels(path)
    else:
        labels = mask_pixels(path, lambda png: check_png_mask(path, png, palette))
    return torch.from_numpy(_checked_labels(path, labels).copy())


EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5: "transposed", 6: "rotated 90°", 7: "transversed", 8: "rotated 270°"}


def size_mismatch(sample: Sample, image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> FCNLabError:
    """The mismatch error; it names the image's EXIF rotation when that is what would explain it."""
    message = (
        f"{sample.mask}: labels are {tuple(mask_hw)} but {sample.image.name} is {tuple(image_hw)}; "
        "image and mask must be the same size"
    )
    if tuple(mask_hw) == tuple(image_hw)[::-1]:
        try:
            with Image.open(sample.image) as img:
                orientation = img.getexif().get(EXIF_ORIENTATION)
        except (OSError, ValueError, SyntaxError):
            orientation = None
        if orientation in _SWAPS_SIDES:
            message += (
                f"; the image has EXIF orientation {orientation} ({_SWAPS_SIDES[orientation]}), which "
                "datasets ignore: masks must match the stored pixels"
            )
    return FCNLabError(message)


def read_folder_mask(path: Path, coding: MaskCoding) -> tuple[np.ndarray, dict]:
    """A folder dataset's mask decoded by ``coding``: (H, W) uint8 labels, ``{unlisted colour: pixels}``."""
    palettes = []

    def check(png: Image.Image) -> None:
        coding.check_mode(path, png.mode)
        if png.mode == "P" and coding.colors is not None:  # read by its colours (MaskCoding.decode)
            colours = np.zeros((256, 3), dtype=np.uint8)
            stored = np.asarray(png.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)[:256]
            colours[: len(stored)] = stored
            palettes.append(colours)

    pixels = mask_pixels(path, check)
    return coding.decode(path, pixels, palettes[0] if palettes else None)


def load_folder_mask(path: Path, coding: MaskCoding) -> torch.Tensor:
    """(H, W) uint8 labels of a folder dataset's mask; unlisted RGB colours are void (logged once)."""
    labels, unknown = read_folder_mask(path, coding)
    report_unknown_once(path, unknown, coding.classes_file)
    return torch.from_numpy(labels)


def load_sample(sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) uint8 image and (H, W) int64 labels (0..K-1, 255 void) of a VOC, SBD or folder sample."""
    image = load_image(sample.image)
    mask = load_mask(sample.mask) if sample.coding is None else load_folder_mask(sample.mask, sample.coding)
    if image.shape[-2:] != mask.shape:
        raise size_mismatch(sample, tuple(image.shape[-2:]), tuple(mask.shape))
    return image, mask
