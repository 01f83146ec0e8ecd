"""Data: generated layouts read by the real loaders, split protocols, transforms, and every error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from torchvision import tv_tensors

from conftest import TINY_DATA
from fcnlab.data import SegmentationDataModule, protocol_samples, seg11valid_ids, synthetic, voc
from fcnlab.data.check import check_sample, check_samples, mat_labels_shape
from fcnlab.data.classes import VOID
from fcnlab.data.input_space import CAFFE_MEAN_BGR, INPUT_SPACES, InputSpace, get_input_space
from fcnlab.data.loading import load_image, load_mask, load_sample
from fcnlab.data.transforms import RandomScale, eval_transform, pad_collate, train_transform
from fcnlab.data.voc import read_ids
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
    (a / "VOCdevkit" / "stale-marker").write_text("old")  # inside the old tree (a user's file at its
    assert synthetic.generate(a, cfg, 1) == a  # top is refused instead: tests/test_reliability.py R192)
    assert not (a / "VOCdevkit" / "stale-marker").exists()
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
    identity = InputSpace("identity", "RGB", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    tf = train_transform(crop_size=64, scale_range=None, hflip=True, input_space=identity)
    torch.manual_seed(0)
    for _ in range(10):
        img, mask = tf(tv_tensors.Image(image), tv_tensors.Mask(labels))
        assert img.shape == (3, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.int64
        valid = mask != VOID
        assert valid.sum() == 37 * 53  # padding is void, nothing else is
        assert torch.allclose(img[0][valid] * 255, (mask[valid] * 10).float(), atol=1e-3)


def test_input_spaces_map_a_known_pixel_to_the_expected_values():
    pixel = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1)  # R, G, B
    tv = eval_transform("torchvision")(tv_tensors.Image(pixel)).as_subclass(torch.Tensor).flatten()
    expected_tv = [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225]
    assert torch.allclose(tv, torch.tensor(expected_tv), atol=1e-5)
    caffe = eval_transform("caffe")(tv_tensors.Image(pixel)).as_subclass(torch.Tensor).flatten()
    # BGR order, 0-255, Caffe's mean pixel (BGR) subtracted, no std
    expected_caffe = [50 - CAFFE_MEAN_BGR[0], 100 - CAFFE_MEAN_BGR[1], 200 - CAFFE_MEAN_BGR[2]]
    assert torch.allclose(caffe, torch.tensor(expected_caffe), atol=1e-4)
    for space in INPUT_SPACES.values():  # the display inverse gives the pixel back, RGB
        assert torch.equal(space.to_rgb(space.normalize(pixel)), pixel)
    assert get_input_space(INPUT_SPACES["caffe"].as_dict()) == INPUT_SPACES["caffe"]
    assert get_input_space(None) == INPUT_SPACES["torchvision"]  # checkpoints from before spaces


@pytest.mark.parametrize("space", sorted(INPUT_SPACES))
def test_crop_padding_is_the_mean_pixel_in_each_space(space):
    # A light-grey 20x30 image cropped to 48: the padding must be 0 after normalisation (the mean
    # pixel), not black; masks pad with void. (Mid-grey is the googlenet space's mean pixel.)
    image = torch.full((3, 20, 30), 200, dtype=torch.uint8)
    labels = torch.ones(20, 30, dtype=torch.uint8)
    tf = train_transform(crop_size=48, scale_range=(0.9, 1.1), hflip=True, input_space=space)
    torch.manual_seed(0)
    img, mask = tf(tv_tensors.Image(image), tv_tensors.Mask(labels))
    pad = mask == VOID
    assert img.dtype == torch.float32 and pad.any() and (~pad).any()
    assert torch.equal(img[:, pad], torch.zeros_like(img[:, pad]))
    inside = INPUT_SPACES[space].normalize(image[:, :1, :1]).flatten()
    assert torch.allclose(img[:, ~pad].mean(1), inside, atol=1e-4)  # the image itself is normalised
    assert not torch.allclose(inside, torch.zeros(3), atol=1e-2)


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


def test_decoded_cache_gives_the_same_samples_and_reads_each_file_once(tiny_data, monkeypatch):
    import fcnlab.data.datamodule as datamodule

    def batches(cache: bool) -> list:
        dm = SegmentationDataModule(
            tiny_data, crop_size=48, scale_range=(0.75, 1.25), batch_size=4, num_workers=0, cache=cache
        )
        dm.setup("fit")
        out = []
        for epoch in range(2):  # the augmentation differs by epoch; the cache must not freeze it
            dm._resume_epoch = epoch
            out += [b for _, b in zip(range(3), dm.train_dataloader(), strict=False)]
        return out

    reads = []
    real = datamodule.load_sample
    monkeypatch.setattr(datamodule, "load_sample", lambda s: reads.append(s.id) or real(s))
    plain, cached = batches(False), batches(True)
    plain_reads, cached_reads = reads[:24], reads[24:]  # uncached: every draw reads its file
    assert len(plain_reads) == 2 * 3 * 4 and len(set(plain_reads)) < 24  # epoch 2 redraws some samples
    assert len(cached_reads) == len(set(cached_reads)) == len(set(plain_reads))  # cached: each one once
    for (a_img, a_mask), (b_img, b_mask) in zip(plain, cached, strict=True):
        torch.testing.assert_close(a_img, b_img, rtol=0, atol=0)
        assert torch.equal(a_mask, b_mask)
    assert not torch.equal(cached[0][0], cached[3][0])  # epoch 1 draws other crops of the same images


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


# --- labels, palettes, split lists, EXIF and the up-front check ----------------------------------


def _save_gtcls(path: Path, labels: np.ndarray, compress: bool = True) -> None:
    scipy.io.savemat(path, {"GTcls": {"Segmentation": labels}}, do_compression=compress)


@pytest.mark.parametrize(
    "dtype, value, shown",
    [(np.int16, 261, "261"), (np.int16, -1, "-1"), (np.float64, 2.9, "2.9"), (np.float64, np.nan, "nan")],
)
def test_sbd_label_values_are_checked_before_the_uint8_cast(data_copy, dtype, value, shown):
    mat = sorted((data_copy / "benchmark_RELEASE/dataset/cls").glob("*.mat"))[0]
    labels = np.zeros((6, 7), dtype)
    labels[2, 3] = value
    _save_gtcls(mat, labels)
    with pytest.raises(FCNLabError, match=rf"{mat.name}: label values \[{shown}\] outside 0..20 and 255"):
        load_mask(mat)


def test_sbd_labels_of_any_numeric_type_load_when_they_are_class_ids(data_copy):
    mat = sorted((data_copy / "benchmark_RELEASE/dataset/cls").glob("*.mat"))[0]
    labels = np.array([[0, 5, 20], [255, 1, 0]], np.float64)
    _save_gtcls(mat, labels)
    assert load_mask(mat).tolist() == labels.astype(np.uint8).tolist()


def _voc_mask(root: Path) -> Path:
    return root / "VOCdevkit/VOC2011/SegmentationClass" / f"{_first_val_id(root)}.png"


def test_requantised_palette_png_is_refused_naming_the_colour(data_copy):
    png = _voc_mask(data_copy)
    classes = np.unique(np.asarray(Image.open(png)))
    Image.open(png).convert("RGB").quantize(colors=len(classes)).save(png)  # an adaptive palette
    requantised = np.unique(np.asarray(Image.open(png)))
    assert requantised.tolist() == list(range(len(classes))) != classes.tolist()
    with pytest.raises(FCNLabError, match=rf"{png.name}: palette is not VOC's \(index \d+ is \(") as info:
        load_mask(png)
    _, val, _ = protocol_samples(data_copy, "seg11valid")
    with pytest.raises(FCNLabError) as up_front:
        check_sample(val[0], "headers")
    assert str(up_front.value) == str(info.value)


def test_label_pngs_as_class_ids_load_in_every_index_form(data_copy):
    png = _voc_mask(data_copy)
    labels = np.asarray(Image.open(png)).copy()
    Image.fromarray(labels, mode="L").save(png)  # greyscale: no palette at all
    assert np.array_equal(load_mask(png).numpy(), labels)
    grey = Image.fromarray(labels, mode="P")
    grey.putpalette(np.repeat(np.arange(256, dtype=np.uint8), 3).tolist())  # a grey ramp
    grey.save(png)
    assert np.array_equal(load_mask(png).numpy(), labels)
    other = Image.fromarray(labels, mode="P")
    other.putpalette(np.repeat(np.arange(256, dtype=np.uint8)[::-1], 3).tolist())
    other.save(png)
    assert np.array_equal(load_mask(png, palette=None).numpy(), labels)  # a loader of other data


def _val_confusion(dm: SegmentationDataModule) -> torch.Tensor:
    """Confusion matrix of an all-background prediction over the val loader (what metrics count)."""
    confusion = torch.zeros(21, 21, dtype=torch.int64)
    for _, masks in dm.val_dataloader():
        labelled = masks[masks != VOID]
        confusion[:, 0] += torch.bincount(labelled, minlength=21)
    return confusion


def test_duplicate_ids_count_once_with_one_warning(data_copy, tiny_data, tmp_path, caplog):
    val_txt = data_copy / "VOCdevkit/VOC2011/ImageSets/Segmentation/val.txt"
    ids = val_txt.read_text().split()
    some = _first_val_id(data_copy)
    val_txt.write_text("\n".join(ids + [some] * 5) + "\n")
    kwargs = {"crop_size": 32, "num_workers": 0, "generate": None}
    clean = SegmentationDataModule(tiny_data, split_dir=str(tmp_path / "clean"), **kwargs)
    clean.setup("fit")
    with caplog.at_level("WARNING", logger="fcnlab.data.voc"):
        dup = SegmentationDataModule(str(data_copy), split_dir=str(tmp_path / "dup"), **kwargs)
        dup.setup("fit")
        protocol_samples(data_copy, "seg11valid")  # read again: still one warning
    warned = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert warned == [f"{val_txt}: 5 duplicate id(s) (first: {some}); each id is used once"]
    assert [s.id for s in dup.val_set.samples] == [s.id for s in clean.val_set.samples]
    assert (tmp_path / "dup/seg11valid.txt").read_text() == (tmp_path / "clean/seg11valid.txt").read_text()
    assert torch.equal(_val_confusion(dup), _val_confusion(clean))


def test_split_list_with_a_utf8_bom(data_copy, tiny_data):
    val_txt = data_copy / "VOCdevkit/VOC2011/ImageSets/Segmentation/val.txt"
    val_txt.write_bytes(b"\xef\xbb\xbf" + val_txt.read_bytes())
    assert seg11valid_ids(data_copy) == seg11valid_ids(Path(tiny_data))
    assert protocol_samples(data_copy, "seg11valid")[2] == protocol_samples(tiny_data, "seg11valid")[2]


def test_data_root_that_is_a_file(tmp_path):
    (tmp_path / "voc.tar").write_bytes(b"an archive, not yet extracted")
    with pytest.raises(FCNLabError, match=r"voc.tar is a file, not a folder \(extract archives first\); "):
        protocol_samples(tmp_path / "voc.tar", "seg11valid")


def _exif_rotated_image(sample) -> None:
    """Store the image's pixels transposed with EXIF orientation 6: a viewer shows it upright."""
    image = Image.open(sample.image)
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(sample.image, exif=exif.tobytes(), quality=95)


def test_exif_is_ignored_by_datasets_and_named_when_it_explains_a_mismatch(data_copy):
    from fcnlab.inference.inputs import read_image

    _, val, _ = protocol_samples(data_copy, "seg11valid")
    height, width = load_mask(val[0].mask).shape
    _exif_rotated_image(val[0])
    assert tuple(load_image(val[0].image).shape[-2:]) == (width, height)  # as stored
    assert tuple(read_image(val[0].image, 10**8).shape[-2:]) == (height, width)  # predict: as shown
    expected = (
        f"{val[0].mask}: labels are ({height}, {width}) but {val[0].image.name} is ({width}, {height}); "
        "image and mask must be the same size; the image has EXIF orientation 6 (rotated 90°), which "
        "datasets ignore: masks must match the stored pixels"
    )
    for load in (lambda: load_sample(val[0]), lambda: check_sample(val[0], "headers")):
        with pytest.raises(FCNLabError) as info:
            load()
        assert str(info.value) == expected


def test_16bit_greyscale_is_rescaled_not_clipped(tmp_path):
    grey16 = np.array([[0, 257, 32896], [65535, 1000, 128]], dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = load_image(tmp_path / "g16.png")
    expected = np.rint(grey16 / 257).astype(np.uint8)  # v * 255 / 65535
    assert all(np.array_equal(rgb[c].numpy(), expected) for c in range(3))
    Image.fromarray(np.full((2, 3), 0.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(FCNLabError, match=r"f.tif: unreadable or truncated image \(floating-point pixels"):
        load_image(tmp_path / "f.tif")


def test_mat_shape_from_headers_agrees_with_loadmat(tiny_data, tmp_path):
    for mat in sorted((Path(tiny_data) / "benchmark_RELEASE/dataset/cls").glob("*.mat")):
        assert mat_labels_shape(mat) == scipy.io.loadmat(mat)["GTcls"][0]["Segmentation"][0].shape
    labels = np.zeros((7, 9), np.uint8)
    for compress in (True, False):
        _save_gtcls(tmp_path / "a.mat", labels, compress)
        assert mat_labels_shape(tmp_path / "a.mat") == (7, 9)
    scipy.io.savemat(tmp_path / "b.mat", {"other": labels})  # an unknown layout: the caller loads it
    (tmp_path / "c.mat").write_bytes(b"MATLAB 7.3 MAT-file" + bytes(200))
    assert mat_labels_shape(tmp_path / "b.mat") is None and mat_labels_shape(tmp_path / "c.mat") is None


def _setup(root: Path, check: str) -> SegmentationDataModule:
    dm = SegmentationDataModule(str(root), crop_size=32, num_workers=0, generate=None, check=check)
    dm.setup("fit")
    return dm


def test_bad_files_are_found_before_training_starts(data_copy):
    train, val, _ = protocol_samples(data_copy, "seg11valid")
    _save_gtcls(train[-1].mask, np.zeros((5, 5), np.uint8))  # the last train sample: wrong size
    with pytest.raises(FCNLabError, match=rf"{train[-1].mask.name}: labels are \(5, 5\) but"):
        _setup(data_copy, "headers")
    _setup(data_copy, "none")  # skipped: found only when loaded
    dm = SegmentationDataModule(str(data_copy), num_workers=0, generate=None)
    dm.setup("validate")  # evaluation checks the val split only
    with pytest.raises(FCNLabError, match="labels are"):
        load_sample(train[-1])
    _save_gtcls(train[-1].mask, np.zeros(tuple(load_image(train[-1].image).shape[-2:]), np.uint8))
    good = val[-1].mask.read_bytes()
    Image.open(val[-1].mask).convert("RGB").save(val[-1].mask)  # the last val mask: an RGB PNG
    with pytest.raises(FCNLabError, match=rf"{val[-1].mask.name}: unreadable label file \(mode RGB"):
        _setup(data_copy, "headers")
    val[-1].mask.write_bytes(good)
    labels = np.asarray(Image.open(val[0].mask)).copy()
    labels[0, 0] = 30
    Image.fromarray(labels, mode="L").save(val[0].mask)
    _setup(data_copy, "headers")  # values inside PNGs: not read from headers
    with pytest.raises(FCNLabError, match=rf"{val[0].mask.name}: label values \[30\]"):
        _setup(data_copy, "full")
    with pytest.raises(FCNLabError, match="data.check=fast: use headers"):
        _setup(data_copy, "fast")


def test_check_samples_reports_progress(tiny_data):
    train, val, _ = protocol_samples(tiny_data, "seg11valid")
    seen: list[int] = []
    check_samples(train + val, "full", progress=seen.append)
    assert seen == list(range(1, len(train) + len(val) + 1))
