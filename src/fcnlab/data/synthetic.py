"""A generated segmentation dataset written in the exact on-disk layouts of VOC2011 and SBD.

Nothing can be downloaded here, so this is the embedded default and the test data: the very same
loaders read it as they read the real archives. It is built so the paper's effects can show:

- 20 object classes = 5 shapes × 4 textures, each with a typical hue jittered so that neighbouring
  classes overlap (colour hints, as in photos, but shape and texture decide); objects from a few
  pixels to most of the image, crosses and rings with thin parts, several per image, over a
  cluttered background (lines and faint blobs labelled background);
- VOC masks carry a void (255) band on object boundaries, SBD masks do not, as in the real data;
- split lists overlap (some VOC2011 val ids are in SBD train), so ``seg11valid`` is a real subtraction;
- a one-object-per-image classification set (ImageNet-style folders) to pretrain the tiny backbone.

Generation is deterministic from the seed (each image from its own child seed), atomic (built in a
temporary folder, then renamed) and a no-op when the same settings are already on disk.

    fcnlab-data generate --root data/shapes
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from fcnlab.data.classes import SHAPES, SHAPES_CLASSES, TEXTURES, VOID, voc_palette
from fcnlab.errors import FCNLabError

MANIFEST = "fcnlab_synthetic.json"
# Bump when the drawing code changes what a given config produces: older trees are then rebuilt.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; the manifest stores it so a second run with equal settings does nothing."""

    seed: int = 0
    sbd_train: int = 1000  # SBD train.txt (8,498 on the real data)
    sbd_val: int = 100  # SBD val.txt
    voc_val: int = 300  # VOC2011 ImageSets/Segmentation/val.txt (1,111 on the real data)
    voc_val_in_sbd_train: int = 100  # of those, also in SBD train (seg11valid = val minus these)
    voc_train: int = 150  # VOC2011 ImageSets/Segmentation/train.txt
    min_size: int = 96  # image sides drawn from [min_size, max_size]
    max_size: int = 160
    voc2012: bool = False  # also write VOCdevkit/VOC2012 (the train_aug / val protocol)
    classification_train: int = 2000  # one-object images for pretraining (the ImageNet stand-in)
    classification_val: int = 400
    classification_size: int = 96
    jpeg_quality: int = 92


# --- drawing -------------------------------------------------------------------------------------


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


# --- writing the layouts -------------------------------------------------------------------------


def _save_png(label: np.ndarray, path: Path) -> None:
    png = Image.fromarray(label, mode="P")
    png.putpalette(voc_palette().flatten().tolist())
    png.save(path)


def _save_sbd_mat(label: np.ndarray, path: Path) -> None:
    """SBD's ``cls/<id>.mat``: struct GTcls with Segmentation, Boundaries (20 sparse), CategoriesPresent."""
    edges = void_band(label) == VOID
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(1, 21):
        boundaries[k - 1, 0] = scipy.sparse.csc_matrix(edges & (label == k))
    present = np.unique(label[label > 0]).astype(np.uint8).reshape(-1, 1)
    gt = {"Segmentation": label, "Boundaries": boundaries, "CategoriesPresent": present}
    scipy.io.savemat(path, {"GTcls": gt}, do_compression=True)


def _scene_size(cfg: SyntheticConfig, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng([cfg.seed, seed, 1])
    return tuple(int(s) for s in rng.integers(cfg.min_size, cfg.max_size + 1, 2))


def _write_scene(args: tuple) -> None:
    cfg, index, image_id, out, sbd, voc_years = args
    h, w = _scene_size(cfg, index)
    img, label = render_scene(int(np.random.SeedSequence([cfg.seed, index]).generate_state(1)[0]), h, w)
    jpeg = Image.fromarray(img)
    if sbd:
        jpeg.save(out / "benchmark_RELEASE/dataset/img" / f"{image_id}.jpg", quality=cfg.jpeg_quality)
        _save_sbd_mat(label, out / "benchmark_RELEASE/dataset/cls" / f"{image_id}.mat")
    for year in voc_years:
        voc = out / "VOCdevkit" / f"VOC{year}"
        jpeg.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=cfg.jpeg_quality)
        _save_png(void_band(label), voc / "SegmentationClass" / f"{image_id}.png")


def _write_object(args: tuple) -> None:
    cfg, index, split, out = args
    cls = index % 20 + 1  # round robin: every class equally often, every folder filled
    seed = int(np.random.SeedSequence([cfg.seed, index, 7]).generate_state(1)[0])
    folder = out / "classification" / split / SHAPES_CLASSES[cls]
    Image.fromarray(render_object(seed, cfg.classification_size, cls)).save(
        folder / f"{index:06d}.jpg", quality=cfg.jpeg_quality
    )


def plan_splits(cfg: SyntheticConfig) -> dict[str, list[str]]:
    """Image ids of each split list, VOC-style ids (``2008_000123``), with the overlaps real data has."""
    n = cfg.sbd_train + cfg.sbd_val + (cfg.voc_val - cfg.voc_val_in_sbd_train) + cfg.voc_train
    ids = [f"{2007 + i % 5}_{i:06d}" for i in range(n)]
    a = cfg.sbd_train
    b = a + cfg.sbd_val
    c = b + cfg.voc_val - cfg.voc_val_in_sbd_train
    sbd_train, sbd_val = ids[:a], ids[a:b]
    voc_val = sorted(sbd_train[: cfg.voc_val_in_sbd_train] + ids[b:c])
    # VOC train: fresh ids plus a few SBD val ids, as the real lists share images.
    voc_train = sorted(ids[c:] + sbd_val[: cfg.sbd_val // 4])
    return {
        "sbd_train": sbd_train,
        "sbd_val": sbd_val,
        "voc_train": voc_train,
        "voc_val": voc_val,
        "all": ids,
    }


def _build(cfg: SyntheticConfig, out: Path, workers: int) -> None:
    splits = plan_splits(cfg)
    sbd = out / "benchmark_RELEASE/dataset"
    for d in ("img", "cls", "inst"):
        (sbd / d).mkdir(parents=True)
    years = ["2011"] + (["2012"] if cfg.voc2012 else [])
    for year in years:
        voc = out / "VOCdevkit" / f"VOC{year}"
        for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (voc / d).mkdir(parents=True)
        lists = {"train": splits["voc_train"], "val": splits["voc_val"]}
        lists["trainval"] = sorted(lists["train"] + lists["val"])
        for name, ids in lists.items():
            (voc / "ImageSets/Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    (sbd / "train.txt").write_text("\n".join(splits["sbd_train"]) + "\n")
    (sbd / "val.txt").write_text("\n".join(splits["sbd_val"]) + "\n")
    in_sbd = set(splits["sbd_train"]) | set(splits["sbd_val"])
    in_voc = set(splits["voc_train"]) | set(splits["voc_val"])
    jobs: list = [
        (cfg, i, image_id, out, image_id in in_sbd, years if image_id in in_voc else [])
        for i, image_id in enumerate(splits["all"])
    ]
    for split in ("train", "val"):
        for name in SHAPES_CLASSES[1:]:
            (out / "classification" / split / name).mkdir(parents=True)
    n_train = cfg.classification_train
    objects = [
        (cfg, i, "train" if i < n_train else "val", out) for i in range(n_train + cfg.classification_val)
    ]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_scene, jobs, chunksize=32))
            list(pool.map(_write_object, objects, chunksize=64))
    else:
        for job in jobs:
            _write_scene(job)
        for job in objects:
            _write_object(job)


def generate(root: str | os.PathLike, cfg: SyntheticConfig | None = None, workers: int | None = None) -> Path:
    """Write the dataset under ``root`` unless the same settings are there already; returns ``root``.

    Built in a temporary sibling folder and renamed into place at the end, so an interrupted run
    never leaves a folder that looks complete (the manifest is the last file written).
    """
    cfg = cfg or SyntheticConfig()
    root = Path(root)
    if min(cfg.classification_train, cfg.classification_val) < 20:
        raise FCNLabError("data.generate.classification_train and _val must be >= 20 (one image per class)")
    if not 0 <= cfg.voc_val_in_sbd_train <= min(cfg.voc_val, cfg.sbd_train) or cfg.min_size > cfg.max_size:
        raise FCNLabError(
            "data.generate: voc_val_in_sbd_train exceeds voc_val or sbd_train (or min_size > max_size)"
        )
    wanted = asdict(cfg)
    manifest = root / MANIFEST
    stale = None
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found.get("config") == wanted and found.get("version") == GENERATOR_VERSION:
            return root
        if found.get("config") == wanted:  # our own tree from an older generator: rebuild it
            stale = root
        else:
            raise FCNLabError(
                f"data.root={root} holds a generated dataset with other settings ({manifest}); "
                "delete that folder or point data.root elsewhere"
            )
    elif root.exists() and any(root.iterdir()):
        raise FCNLabError(
            f"data.root={root} exists, is not empty and is no generated dataset; "
            "point data.root at an empty or new folder"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _build(cfg, tmp, workers or min(4, os.cpu_count() or 1))
        seconds = time.perf_counter() - start
        record = {"config": wanted, "version": GENERATOR_VERSION, "seconds": round(seconds, 1)}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1))
        if stale is not None:  # move the old tree aside first: the swap leaves no half state behind
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.stale-", dir=root.parent))
            os.replace(root, old / "tree")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if root.exists():
                root.rmdir()
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
