"""``loss.class_weights``: null, one weight per class, or ``median_frequency`` computed from the train masks.

Median-frequency balancing (Eigen & Fergus 2015): ``w_c = median(freq) / freq_c`` with ``freq_c`` =
pixels of class c / labelled (non-void) pixels of the train images where c is present; the median is
over the classes that occur. A class with no train pixels gets weight 0 (it contributes nothing to
the loss either way) and a warning. The counts are computed once and cached in
``<data.root>/fcnlab_class_weights.json``, keyed by a fingerprint of the train masks (ids, files, sizes,
times) and of how labels are read (classes, void, reduce_zero_label), so any change recomputes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fcnlab.atomic import write_json
from fcnlab.data.classes import VOID
from fcnlab.data.loading import load_folder_mask, load_mask
from fcnlab.data.voc import Sample
from fcnlab.errors import FCNLabError

log = logging.getLogger(__name__)

CACHE_FILE = "fcnlab_class_weights.json"
MEDIAN_FREQUENCY = "median_frequency"
KEPT = 8  # fingerprints kept in the cache file


def sample_labels(sample: Sample) -> np.ndarray:
    """(H, W) uint8 labels of a sample's mask (0..K-1, 255 void), whatever its layout."""
    if sample.coding is None:
        return load_mask(sample.mask).numpy()
    return load_folder_mask(sample.mask, sample.coding).numpy()


def pixel_counts(
    samples: Sequence[Sample], num_classes: int, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, labelled pixels of the images where each class is present)."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for done, sample in enumerate(samples, 1):
        labels = sample_labels(sample)
        valid = labels[labels != VOID]
        counts = np.bincount(valid, minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += valid.size
        if progress is not None:
            progress(done)
    return pixels, image_pixels


def median_frequency(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """``median(freq) / freq_c`` (0 where a class has no pixels)."""
    present = pixels > 0
    if not present.any():
        raise FCNLabError("loss.class_weights=median_frequency: the train masks hold no labelled pixel")
    freq = np.zeros(len(pixels))
    freq[present] = pixels[present] / image_pixels[present]
    weights = np.zeros(len(pixels))
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def fingerprint(samples: Sequence[Sample], num_classes: int) -> str:
    """Of the train masks (id, file, size, mtime) and of how their labels are read."""
    h = hashlib.sha256(f"{num_classes}".encode())
    for s in samples:
        stat = s.mask.stat()
        coding = repr(s.coding) if s.coding is not None else "voc"
        h.update(f"{s.id}|{s.mask}|{stat.st_size}|{stat.st_mtime_ns}|{coding}\n".encode())
    return h.hexdigest()[:20]


def cached_counts(
    samples: Sequence[Sample], num_classes: int, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``pixel_counts`` from the cache in ``cache_dir`` when the fingerprint matches; (…, from cache)."""
    key = fingerprint(samples, num_classes)
    path = cache_dir / CACHE_FILE if cache_dir is not None else None
    entries: dict = {}
    if path is not None and path.is_file():
        try:
            entries = json.loads(path.read_text()).get("entries", {})
        except (OSError, ValueError, AttributeError):
            entries = {}
    if not isinstance(entries, dict):
        entries = {}
    if key in entries:
        why = entry_problem(entries[key], num_classes, len(samples))
        if why is None:
            e = entries[key]
            return np.array(e["pixels"], dtype=np.int64), np.array(e["image_pixels"], dtype=np.int64), True
        log.warning(
            "%s: the cached class counts of these train masks %s; recomputed from the masks", path, why
        )
    pixels, image_pixels = pixel_counts(samples, num_classes)
    if path is not None:
        entries[key] = {
            "images": len(samples),
            "pixels": pixels.tolist(),
            "image_pixels": image_pixels.tolist(),
        }
        try:
            write_json(path, {"version": 1, "entries": dict(list(entries.items())[-KEPT:])})
        except OSError as e:  # a read-only dataset: computed again next time
            log.info("class weights not cached (%s): %s", path, e)
    return pixels, image_pixels, False


def entry_problem(entry: object, num_classes: int, images: int) -> str | None:
    """What makes a cache entry unusable (a hand edit, a file of another version), or None."""
    if not isinstance(entry, dict):
        return "are not a record"
    for field in ("pixels", "image_pixels"):
        values = entry.get(field)
        if not isinstance(values, list) or len(values) != num_classes:
            count = len(values) if isinstance(values, list) else "no"
            return f"hold {count} values in {field} for {num_classes} classes"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                return f"hold {json.dumps(v)} in {field}, not a pixel count (a whole number >= 0)"
    if any(p > i for p, i in zip(entry["pixels"], entry["image_pixels"], strict=True)):
        return "count more pixels of a class than the images holding it have"
    if entry.get("images") != images:
        return f"are of {entry.get('images')} masks, not {images}"
    return None


def weights_table(names: Sequence[str], pixels: np.ndarray, weights: Sequence[float]) -> str:
    total = max(int(pixels.sum()), 1)
    width = max(12, *(len(n) for n in names))
    lines = [f"{'class':<{width}} {'pixels %':>9} {'weight':>8}", "-" * (width + 19)]
    lines += [
        f"{n:<{width}} {100 * p / total:9.3f} {w:8.3f}"
        for n, p, w in zip(names, pixels.tolist(), weights, strict=True)
    ]
    return "\n".join(lines)


def resolve_class_weights(
    spec: object,
    num_classes: int,
    samples: Sequence[Sample] | None = None,
    class_names: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
) -> list[float] | None:
    """``loss.class_weights`` as one float per class (None: unweighted).

    ``median_frequency`` needs the train ``samples``; ``verbose`` logs the table of class, pixel share
    and weight (and a warning for each class without train pixels).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != MEDIAN_FREQUENCY:
            raise FCNLabError(
                f"loss.class_weights={spec}: use null, a list of {num_classes} numbers or median_frequency"
            )
        if samples is None:
            raise FCNLabError("loss.class_weights=median_frequency needs the train masks (a datamodule)")
        cache = Path(cache_dir) if cache_dir is not None else None
        pixels, image_pixels, hit = cached_counts(samples, num_classes, cache)
        weights = median_frequency(pixels, image_pixels).tolist()
        if verbose:
            names = list(class_names or [str(i) for i in range(num_classes)])
            source = f"cached in {cache / CACHE_FILE}" if hit else f"from {len(samples)} train masks"
            log.info(
                "class weights (median frequency, %s):\n%s", source, weights_table(names, pixels, weights)
            )
            for name, p in zip(names, pixels.tolist(), strict=True):
                if p == 0:
                    log.warning("class %s has no pixels in the train masks: its weight is 0", name)
        return weights
    return check_weight_list(spec, num_classes)


def check_weight_list(spec: object, num_classes: int) -> list[float]:
    values = list(spec) if isinstance(spec, list | tuple) else None
    if values is None or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise FCNLabError(
            f"loss.class_weights={spec}: use null, a list of {num_classes} numbers or median_frequency"
        )
    if len(values) != num_classes:
        raise FCNLabError(
            f"loss.class_weights has {len(values)} values but the data has {num_classes} classes; "
            "give one weight per class (in class order) or use median_frequency"
        )
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        raise FCNLabError(
            f"loss.class_weights[{bad}]={values[bad]}: every weight must be a finite number >= 0 "
            "(the loss would be nan or inf)"
        )
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise FCNLabError(f"loss.class_weights={values}: weights must be >= 0 and at least one > 0")
    return [float(v) for v in values]
