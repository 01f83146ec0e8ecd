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
temporary folder, then renamed) and a no-op when the same settings are already on disk. The drawing
is :mod:`fcnlab.data.synthetic_scenes`; this module writes the layouts.

    fcnlab-data generate --root data/shapes
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from fcnlab.atomic import atomic_dir, exclusive
from fcnlab.data.classes import SHAPES_CLASSES, VOID, voc_palette
from fcnlab.data.synthetic_scenes import render_object, render_scene, void_band
from fcnlab.errors import FCNLabError

MANIFEST = "fcnlab_synthetic.json"
# What a generated VOC-layout tree holds at its top (the class-weight cache is fcnlab's too): a rebuild
# replaces the folder only when nothing else is there.
GENERATED_TOP = {"VOCdevkit", "benchmark_RELEASE", "classification", MANIFEST, "fcnlab_class_weights.json"}
# Bump when the drawing (fcnlab.data.synthetic_scenes) changes what a given config produces: older trees are
# then rebuilt.
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
        # Ctrl-C reaches the whole process group: the workers ignore it (no traceback from each), the
        # parent stops, drops the queued work and removes the half-built folder.
        pool = ProcessPoolExecutor(
            workers, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)
        )
        try:
            list(pool.map(_write_scene, jobs, chunksize=32))
            list(pool.map(_write_object, objects, chunksize=64))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for job in jobs:
            _write_scene(job)
        for job in objects:
            _write_object(job)


LAYOUTS = ("voc", "folder")


def _manifest_of(root: Path) -> dict | None:
    """The generator's record in ``root`` (None: none, or not one it wrote: then the folder is not ours)."""
    try:
        found = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _generate_folder(root: Path, cfg: SyntheticConfig, workers: int | None) -> Path:
    """The seg11valid protocol of the generated VOC/SBD tree, written in the folder layout at ``root``.

    Train: the SBD train images and labels; val: seg11valid (with VOC's void band); no
    classification set (pretraining reads the VOC-layout tree).
    """
    from fcnlab.data.convert import convert_voc  # imported here: only this layout needs it

    record = {"config": asdict(cfg), "version": GENERATOR_VERSION, "layout": "folder"}
    if _manifest_of(root) == record:
        return root
    if root.exists() and any(root.iterdir()):
        raise FCNLabError(
            f"{root} exists and is not empty (or holds a dataset of other settings); "
            "delete it or choose a new folder"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.voc-", dir=root.parent))
    try:
        _build(
            replace(cfg, classification_train=0, classification_val=0),
            tmp,
            workers or min(4, os.cpu_count() or 1),
        )
        (tmp / MANIFEST).write_text(json.dumps({"config": asdict(cfg), "version": GENERATOR_VERSION}))
        convert_voc(tmp, root, "seg11valid", list(SHAPES_CLASSES), manifest=record)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate(
    root: str | os.PathLike,
    cfg: SyntheticConfig | None = None,
    workers: int | None = None,
    layout: str = "voc",
) -> Path:
    """Write the dataset under ``root`` unless the same settings are there already; returns ``root``.

    ``layout``: ``voc`` (VOC2011 + SBD as they unpack, the classification set) or ``folder`` (the
    seg11valid protocol's images and masks in :mod:`fcnlab.data.folder`'s layout, ``classes.txt``
    with VOC's colours). Built in a temporary sibling folder and renamed into place at the end, so
    an interrupted run never leaves a folder that looks complete (the manifest is the last file written).
    """
    cfg = cfg or SyntheticConfig()
    root = Path(root)
    if layout not in LAYOUTS:
        raise FCNLabError(f"layout {layout!r}: use voc or folder")
    with exclusive(root):  # jobs side by side (a sweep's lanes): one writes, the others then reuse it
        if layout == "folder":
            return _generate_folder(root, cfg, workers)
        return _generate_voc(root, cfg, workers)


def _generate_voc(root: Path, cfg: SyntheticConfig, workers: int | None) -> Path:
    if min(cfg.classification_train, cfg.classification_val) < 20:
        raise FCNLabError("data.generate.classification_train and _val must be >= 20 (one image per class)")
    if not 0 <= cfg.voc_val_in_sbd_train <= min(cfg.voc_val, cfg.sbd_train) or cfg.min_size > cfg.max_size:
        raise FCNLabError(
            "data.generate: voc_val_in_sbd_train exceeds voc_val or sbd_train (or min_size > max_size)"
        )
    wanted = asdict(cfg)
    manifest = root / MANIFEST
    if (found := _manifest_of(root)) is not None:
        if found.get("config") == wanted and found.get("version") == GENERATOR_VERSION:
            return root
        if found.get("config") != wanted:  # else: our own tree from an older generator, rebuilt below
            raise FCNLabError(
                f"data.root={root} holds a generated dataset with other settings ({manifest}); "
                "delete that folder or point data.root elsewhere"
            )
        if added := sorted(
            p.name for p in root.iterdir() if p.name not in GENERATED_TOP and p.name[0] != "."
        ):
            raise FCNLabError(
                f"data.root={root} holds a dataset of an older fcnlab generator, to be rebuilt, and also "
                f"files it did not write ({', '.join(added[:3])}); move them out, or delete the folder"
            )
    elif root.exists() and any(root.iterdir()):
        raise FCNLabError(
            f"data.root={root} exists, is not empty and is no generated dataset; "
            "point data.root at an empty or new folder"
        )
    start = time.perf_counter()
    with atomic_dir(root) as tmp:  # an older tree of ours is swapped out only once the new one is whole
        _build(cfg, tmp, workers or min(4, os.cpu_count() or 1))
        seconds = time.perf_counter() - start
        record = {"config": wanted, "version": GENERATOR_VERSION, "seconds": round(seconds, 1)}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1))
    return root
