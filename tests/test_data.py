"""Data: generated layouts read by the real loaders, split protocols, transforms, and every error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import tv_tensors

from conftest import TINY_DATA
from fcnlab.data import SegmentationDataModule, protocol_samples, seg11valid_ids, synthetic, voc
from fcnlab.data.classes import VOID
from fcnlab.data.transforms import RandomScale, pad_collate, train_transform
from fcnlab.data.voc import load_mask, load_sample, read_ids
from fcnlab.errors import FCNLabError


@pytest.fixture
def data_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the generated tree that a test may damage."""
    return Path(shutil.copytree(tiny_data, tmp_path / "copy"))


def test_generated_tree_has_the_real_layouts(tiny_data):
    root = Path(tiny_data)
    voc = root / "VOCdevkit/VOC2011"
    sbd = root / "benchmark_RELEASE/dataset"
    for path in (
        voc / "JPEGImages",
        voc / "SegmentationClass",
        voc / "ImageSets/Segmentation/val.txt",
        sbd / "img",
        sbd / "cls",
        sbd / "train.txt",
        sbd / "val.txt",
        root / "VOCdevkit/VOC2012",
    ):
        assert path.exists(), path
    some = read_ids(voc / "ImageSets/Segmentation/val.txt")[0]
    png = Image.open(voc / "SegmentationClass" / f"{some}.png")
    assert png.mode == "P"  # palette PNG, as VOC's
    assert VOID in np.unique(np.asarray(png))  # VOC masks carry a void band on boundaries
    sbd_mask = load_mask(sbd / "cls" / f"{read_ids(sbd / 'train.txt')[0]}.mat")
    assert VOID not in sbd_mask.unique()  # SBD masks do not
    assert len(list((root / "classification/train").iterdir())) == 20


def _same_pixels(theirs: tuple, ours: tuple) -> None:
    (img, mask), (our_img, our_mask) = theirs, ours
    assert np.array_equal(np.asarray(img), our_img.permute(1, 2, 0).numpy())
    assert np.array_equal(np.asarray(mask), our_mask.numpy())


def test_our_loader_agrees_with_torchvision_datasets(tiny_data):
    root = Path(tiny_data)
    sbd = torchvision.datasets.SBDataset(
        str(root / "benchmark_RELEASE/dataset"), image_set="train", mode="segmentation"
    )
    train, _, _ = protocol_samples(root, "seg11valid")
    assert [Path(p).stem for p in sbd.images] == [s.id for s in train]
    _same_pixels(sbd[0], load_sample(train[0]))

    voc = torchvision.datasets.VOCSegmentation(str(root), year="2012", image_set="val")
    _, val, _ = protocol_samples(root, "voc2012_aug")
    assert [Path(p).stem for p in voc.images] == [s.id for s in val]
    _same_pixels(voc[3], load_sample(val[3]))


def test_split_counts(tiny_data):
    train, val, ids = protocol_samples(tiny_data, "seg11valid")
    assert len(train) == TINY_DATA.sbd_train
    assert len(val) == TINY_DATA.voc_val - TINY_DATA.voc_val_in_sbd_train
    assert all(s.mask.suffix == ".mat" for s in train) and all(s.mask.suffix == ".png" for s in val)
    assert not set(ids["val"]) & set(ids["train"])

    train, val, ids = protocol_samples(tiny_data, "voc2012_aug")
    root = Path(tiny_data)
    held_out = set(read_ids(root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"))
    pool = (
        set(read_ids(root / "benchmark_RELEASE/dataset/train.txt"))
        | set(read_ids(root / "benchmark_RELEASE/dataset/val.txt"))
        | set(read_ids(root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"))
    )
    assert set(ids["train"]) == pool - held_out and len(ids["train"]) == len(train)
    assert len(val) == len(held_out)


def test_seg11valid_subtracts_sbd_train(tmp_path):
    voc = tmp_path / "VOCdevkit/VOC2011/ImageSets/Segmentation"
    sbd = tmp_path / "benchmark_RELEASE/dataset"
    voc.mkdir(parents=True)
    sbd.mkdir(parents=True)
    (voc / "val.txt").write_text("2008_000001\n2008_000002\n2008_000003\n2008_000004\n")
    (sbd / "train.txt").write_text("2008_000002\n2008_000004\n2009_000005\n")
    assert seg11valid_ids(tmp_path) == ["2008_000001", "2008_000003"]
    # The VOC2011 archive unpacks under TrainVal/: accepted as well.
    shutil.move(tmp_path / "VOCdevkit", tmp_path / "TrainVal" / "VOCdevkit")
    assert seg11valid_ids(tmp_path) == ["2008_000001", "2008_000003"]


def test_shipped_seg11valid_is_the_release_list():
    ids = voc.official_seg11valid()
    assert len(ids) == len(set(ids)) == 736 and ids == sorted(ids)
    assert all(re.fullmatch(r"20(0[7-9]|1[01])_\d{6}", i) for i in ids)
    assert (ids[0], ids[-1]) == ("2007_000033", "2011_003271")


def test_seg11valid_from_a_real_tree_is_compared_with_the_release_list(data_copy, monkeypatch, caplog):
    computed = seg11valid_ids(data_copy)
    with caplog.at_level("INFO", logger="fcnlab.data.voc"):
        protocol_samples(data_copy, "seg11valid")
    assert not caplog.records  # a generated tree keeps its own list, silently
    (data_copy / synthetic.MANIFEST).unlink()  # now it looks like a real VOC2011 + SBD tree
    monkeypatch.setattr(voc, "official_seg11valid", lambda: list(reversed(computed)))
    with caplog.at_level("INFO", logger="fcnlab.data.voc"):
        protocol_samples(data_copy, "seg11valid")
    equal = (
        f"seg11valid: the {len(computed)} ids computed from {data_copy} equal the reference release's list"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("INFO", equal)]
    caplog.clear()
    monkeypatch.setattr(voc, "official_seg11valid", lambda: [*computed[2:], "2011_003271"])
    with caplog.at_level("INFO", logger="fcnlab.data.voc"):
        protocol_samples(data_copy, "seg11valid")
    expected = (
        f"seg11valid computed from {data_copy} differs from the reference release's list in 3 ids "
        f"(1 of its {len(computed) - 1} missing, 2 extra; first: {computed[0]}, {computed[1]}, 2011_003271): "
        "check the VOC2011 val and SBD train lists there"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", expected)]


def test_generation_is_deterministic_atomic_and_idempotent(tmp_path, monkeypatch):
    cfg = synthetic.SyntheticConfig(
        seed=5,
        sbd_train=4,
        sbd_val=2,
        voc_val=4,
        voc_val_in_sbd_train=2,
        voc_train=2,
        min_size=32,
        max_size=48,
        classification_train=20,
        classification_val=20,
    )
    a, b = synthetic.generate(tmp_path / "a", cfg, 1), synthetic.generate(tmp_path / "b", cfg, 1)
    files = sorted(
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png", ".txt")
    )
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    other = synthetic.generate(tmp_path / "c", synthetic.SyntheticConfig(**{**cfg.__dict__, "seed": 6}), 1)
    assert any((a / f).read_bytes() != (other / f).read_bytes() for f in files if f.suffix == ".jpg")

    stamp = (a / synthetic.MANIFEST).stat().st_mtime_ns
    assert synthetic.generate(a, cfg, 1) == a and (a / synthetic.MANIFEST).stat().st_mtime_ns == stamp
    with pytest.raises(FCNLabError, match="other settings"):
        synthetic.generate(a, synthetic.SyntheticConfig(**{**cfg.__dict__, "sbd_train": 5}), 1)

    # A tree from an older generator version is rebuilt in place, atomically.
    record = json.loads((a / synthetic.MANIFEST).read_text())
    (a / synthetic.MANIFEST).write_text(json.dumps({**record, "version": 1}))
    (a / "stale-marker").write_text("old")
    assert synthetic.generate(a, cfg, 1) == a
    assert not (a / "stale-marker").exists()
    assert json.loads((a / synthetic.MANIFEST).read_text())["version"] == synthetic.GENERATOR_VERSION
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)

    def interrupted(cfg, out, workers):
        (out / "half-written").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tmp_path / "d", cfg, 1)
    assert not (tmp_path / "d").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_crop_flip_keep_image_and_mask_aligned():
    # Every pixel's value encodes its label, so any misalignment shows.
    labels = torch.randint(0, 21, (37, 53), dtype=torch.uint8)
    image = (labels * 10).expand(3, -1, -1).clone()
    tf = train_transform(crop_size=64, scale_range=None, hflip=True, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    for _ in range(10):
        img, mask = tf(tv_tensors.Image(image), tv_tensors.Mask(labels))
        assert img.shape == (3, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.int64
        valid = mask != VOID
        assert valid.sum() == 37 * 53  # padding is void, nothing else is
        assert torch.allclose(img[0][valid] * 255, (mask[valid] * 10).float(), atol=1e-3)


def test_random_scale_resizes_masks_with_nearest_labels():
    labels = torch.randint(0, 21, (40, 40), dtype=torch.uint8)
    labels[:5] = VOID
    torch.manual_seed(1)
    img, mask = RandomScale((0.5, 2.0))(
        tv_tensors.Image(torch.zeros(3, 40, 40, dtype=torch.uint8)), tv_tensors.Mask(labels)
    )
    assert img.shape[-2:] == mask.shape[-2:] != (40, 40)
    assert set(mask.unique().tolist()) <= set(labels.unique().tolist())


def test_pad_collate_pads_masks_with_void():
    batch = [
        (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)),
        (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.int64)),
    ]
    images, masks = pad_collate(batch)
    assert images.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5)
    assert (masks[0, 4:] == VOID).all() and (masks[1, :, 3:] == VOID).all()
    assert (images[0, :, 4:] == 0).all() and (masks[0, :4] == 0).all()


def test_datamodule_loaders_and_split_file(tiny_data, tmp_path):
    dm = SegmentationDataModule(
        tiny_data,
        crop_size=48,
        batch_size=4,
        num_workers=0,
        split_dir=str(tmp_path / "s"),
        generate=None,
        val_batch_size=3,
    )
    dm.setup("fit")
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 48, 48) and images.dtype == torch.float32 and masks.dtype == torch.int64
    images, masks = next(iter(dm.val_dataloader()))
    assert images.shape[0] == 3 and masks.shape == images.shape[:1] + images.shape[2:]
    assert read_ids(tmp_path / "s/seg11valid.txt") == [s.id for s in dm.val_set.samples]
    assert dm.num_classes == 21


def test_generated_default_appears_on_first_use(tmp_path):
    gen = {
        "seed": 1,
        "sbd_train": 3,
        "sbd_val": 1,
        "voc_val": 3,
        "voc_val_in_sbd_train": 1,
        "voc_train": 1,
        "min_size": 32,
        "max_size": 40,
        "classification_train": 20,
        "classification_val": 20,
    }
    dm = SegmentationDataModule(str(tmp_path / "shapes"), generate=gen, crop_size=32, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 3 and len(dm.val_set) == 2


# --- bad input: one line naming the file or option -----------------------------------------------


def _first_val_id(root: Path) -> str:
    return seg11valid_ids(root)[0]


def test_missing_root_explains_the_layout(tmp_path):
    with pytest.raises(FCNLabError, match=r"data.root=.*does not exist; expected .*VOCdevkit/VOC2011"):
        protocol_samples(tmp_path / "nowhere", "seg11valid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FCNLabError, match="has no VOCdevkit/VOC2011.*set data.root="):
        protocol_samples(tmp_path / "empty", "seg11valid")
    with pytest.raises(FCNLabError, match="unknown data.protocol"):
        protocol_samples(tmp_path, "coco")


@pytest.mark.parametrize("which", ["JPEGImages", "SegmentationClass"])
def test_split_id_without_its_file(data_copy, which):
    some = _first_val_id(data_copy)
    victim = next((data_copy / "VOCdevkit/VOC2011" / which).glob(f"{some}.*"))
    victim.unlink()
    with pytest.raises(FCNLabError, match=rf"{victim.name}: missing, but id {some} is in the split list"):
        protocol_samples(data_copy, "seg11valid")


def test_size_mismatch(data_copy):
    some = _first_val_id(data_copy)
    png = data_copy / "VOCdevkit/VOC2011/SegmentationClass" / f"{some}.png"
    Image.open(png).crop((0, 0, 10, 10)).save(png)
    _, val, _ = protocol_samples(data_copy, "seg11valid")
    with pytest.raises(FCNLabError, match=rf"{png.name}: labels are \(10, 10\) but .* must be the same size"):
        load_sample(val[0])


def test_labels_out_of_range(data_copy):
    some = _first_val_id(data_copy)
    png = data_copy / "VOCdevkit/VOC2011/SegmentationClass" / f"{some}.png"
    labels = np.asarray(Image.open(png)).copy()
    labels[0, :3] = [21, 40, 254]
    Image.fromarray(labels, mode="L").save(png)
    with pytest.raises(FCNLabError, match=r"label values \[21, 40, 254\] outside 0..20 and 255"):
        load_mask(png)


def test_truncated_image(data_copy):
    some = _first_val_id(data_copy)
    jpg = data_copy / "VOCdevkit/VOC2011/JPEGImages" / f"{some}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    _, val, _ = protocol_samples(data_copy, "seg11valid")
    with pytest.raises(FCNLabError, match=rf"{jpg.name}: unreadable or truncated image"):
        load_sample(val[0])


def test_empty_split(data_copy):
    (data_copy / "benchmark_RELEASE/dataset/train.txt").write_text("\n")
    with pytest.raises(FCNLabError, match="train.txt: split list is empty"):
        protocol_samples(data_copy, "seg11valid")
