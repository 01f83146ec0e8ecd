"""data=folder: each mask kind, void and reduce_zero_label, split lists, class weights, the check tool,
the generated and converted folder layouts (same metrics as the VOC layout) and a Table 2 sweep on it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlab.data.check import run_check
from fcnlab.data.class_weights import CACHE_FILE, resolve_class_weights
from fcnlab.data.classes import SHAPES_CLASSES
from fcnlab.data.convert import convert_voc
from fcnlab.data.folder import FolderDataModule, folder_samples
from fcnlab.data.loading import load_sample
from fcnlab.data.synthetic import generate
from fcnlab.errors import FCNLabError
from fcnlab.inference.evaluate import evaluate
from fcnlab.training.run import train
from helpers.folder_data import COLOURS, make_folder, save_mask, stripes
from helpers.hang import HANG_GUARD_S
from test_predict import make_cfg, tiny_checkpoint

LABELS = np.array([[0, 1, 2, 255], [2, 2, 1, 0], [0, 0, 0, 1]], dtype=np.uint8)


def loaded(root: Path, **options) -> list[np.ndarray]:
    train, val, problems, _ = folder_samples(root, **options)
    assert not problems
    return [load_sample(s)[1].numpy() for s in [*train, *val]]


@pytest.mark.parametrize("kind", ["L", "P", "rgb"])
def test_each_mask_kind_loads_as_class_ids(kind, tmp_path):
    labels = LABELS if kind != "rgb" else np.where(LABELS == 255, 3, LABELS)  # colour 3 is not listed
    root = make_folder(tmp_path, {"train": {"a": labels}, "val": {"b": labels}}, kind, colours=kind == "rgb")
    image, mask = load_sample(folder_samples(root)[0][0])
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, *LABELS.shape)
    np.testing.assert_array_equal(mask.numpy(), LABELS)  # the unlisted colour is void
    dm = FolderDataModule(str(root), num_workers=0)
    assert dm.class_names == list(COLOURS)
    assert dm.class_colors == ([list(c) for c in COLOURS.values()] if kind == "rgb" else None)


def test_unlisted_colours_are_void_and_reported_once(tmp_path, caplog):
    labels = np.where(LABELS == 255, 3, LABELS)
    root = make_folder(tmp_path, {"train": {"a": labels, "b": labels}, "val": {"c": labels}}, "rgb", True)
    train, _, _, _ = folder_samples(root)
    with caplog.at_level(logging.WARNING, logger="fcnlab.data.folder_classes"):
        for s in train:
            load_sample(s)
    assert [r.getMessage() for r in caplog.records] == [
        f"{root}/masks/train/a.png: colours not in {root}/classes.txt: (250, 0, 250) (1 pixels); they count "
        f"as void: add them to {root}/classes.txt or repaint them (further masks with unlisted colours are "
        "not reported; fcnlab-data check lists them all)"
    ]


def test_void_index_and_reduce_zero_label(tmp_path):
    raw = np.array([[7, 0, 1, 2], [3, 7, 0, 1]], dtype=np.uint8)
    root = make_folder(tmp_path, {"train": {"a": raw}, "val": {"b": raw}}, classes=("a", "b", "c", "d"))
    np.testing.assert_array_equal(loaded(root, void_index=7)[0], np.where(raw == 7, 255, raw))
    reduced = np.where((raw == 0) | (raw == 7), 255, raw.astype(int) - 1)
    (root / "classes.txt").write_text("a\nb\nc\n")
    np.testing.assert_array_equal(loaded(root, void_index=7, reduce_zero_label=True)[0], reduced)


def test_split_lists_instead_of_split_folders(tmp_path):
    (tmp_path / "splits").mkdir()
    for i, labels in (("x1", LABELS), ("x2", LABELS[::-1]), ("x3", LABELS[:, ::-1])):
        make_folder(tmp_path, {"tmp": {i: labels}})
    for kind in ("images", "masks"):
        for f in (tmp_path / kind / "tmp").iterdir():
            f.rename(tmp_path / kind / f.name)
    (tmp_path / "splits/train.txt").write_text("x1\nx3\n")
    (tmp_path / "splits/val.txt").write_text("x2\n")
    train, val, problems, _ = folder_samples(tmp_path)
    assert not problems and [s.id for s in train] == ["x1", "x3"] and [s.id for s in val] == ["x2"]
    np.testing.assert_array_equal(load_sample(val[0])[1].numpy(), LABELS[::-1])


def test_model_num_classes_follows_classes_txt(tmp_path):
    masks = {"train": {f"t{i}": stripes(16, 16) for i in range(4)}, "val": {"v": stripes(16, 16)}}
    root = make_folder(tmp_path / "data", masks)
    overrides = [
        "data=folder",
        f"data.root={root}",
        "debug=fast",
        "model.pretrained=null",
        "data.crop_size=16",
        "data.batch_size=2",
        "trainer.enable_progress_bar=false",
    ]
    cfg = make_cfg("train", overrides, tmp_path / "run")
    assert cfg.model.num_classes == 3 == cfg.data.num_classes
    result = train(cfg)
    assert result["status"] == "ok" and result["class_names"] == ["sky", "grass", "road"]


def test_a_broken_layout_stops_the_run_before_pretraining(tmp_path):
    root = make_folder(tmp_path / "data", {"train": {"a": stripes()}, "val": {"b": stripes()}})
    (root / "masks/val/b.png").unlink()
    cfg = make_cfg("train", ["data=folder", f"data.root={root}"], tmp_path / "run")
    with pytest.raises(FCNLabError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{root}/masks/val: no mask for 1 image(s) of images/val (first: b)")
    assert not Path(cfg.pretrain.output).exists() and not Path(cfg.pretrain.data_root).exists()


# -- class weights -----------------------------------------------------------------------------------


def test_median_frequency_weights_and_their_cache(tmp_path, caplog):
    a = np.array([[0, 0, 0, 1]], dtype=np.uint8)  # 3 of class 0, 1 of class 1
    b = np.array([[0, 2, 2, 255]], dtype=np.uint8)  # 1 of class 0, 2 of class 2, 1 void
    root = make_folder(tmp_path, {"train": {"a": a, "b": b}, "val": {"c": a}}, classes=("x", "y", "z", "w"))
    train = folder_samples(root)[0]
    # by hand: freq_c = pixels of c / labelled pixels of the images holding c
    freq = {0: 4 / (4 + 3), 1: 1 / 4, 2: 2 / 3}
    median = float(np.median(list(freq.values())))
    expected = [median / freq[0], median / freq[1], median / freq[2], 0.0]  # w: no pixels, weight 0
    with caplog.at_level(logging.INFO, logger="fcnlab.data.class_weights"):
        weights = resolve_class_weights("median_frequency", 4, train, ["x", "y", "z", "w"], root)
    assert weights == pytest.approx(expected)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("class weights (median frequency, from 2 train masks):\nclass")
    assert messages[-1] == "class w has no pixels in the train masks: its weight is 0"
    cache = root / CACHE_FILE
    first = json.loads(cache.read_text())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fcnlab.data.class_weights"):
        again = resolve_class_weights("median_frequency", 4, train, None, root)
    assert again == weights and f"cached in {cache}" in caplog.records[0].getMessage()
    save_mask(np.array([[1, 1, 1, 1]], dtype=np.uint8), root / "masks/train/a.png")  # a changed mask
    os.utime(root / "masks/train/a.png", ns=(1, 1))
    changed = resolve_class_weights("median_frequency", 4, folder_samples(root)[0], None, root)
    assert changed != weights and len(json.loads(cache.read_text())["entries"]) == 2 > len(first["entries"])
    assert resolve_class_weights([1, 2, 3, 0.5], 4) == [1.0, 2.0, 3.0, 0.5]


def test_class_weights_reach_the_loss(tmp_path):
    from fcnlab.training import FCNModule

    model = {
        "name": "fcn32s",
        "num_classes": 3,
        "backbone": "vgg16_tiny",
        "width_divisor": 8,
        "pool5_size": 3,
    }
    logits, masks = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    weighted = FCNModule(model=model, class_weights=[1.0, 0.0, 0.0]).loss(logits, masks)
    only_zero = masks == 0
    expected = torch.nn.functional.cross_entropy(logits, masks, reduction="none")[only_zero].mean()
    assert weighted.item() == pytest.approx(expected.item())


def test_median_frequency_on_the_voc_layout_trains_and_is_stored(tiny_data, tmp_path):
    import shutil

    from fcnlab.models.weights import read_checkpoint
    from test_train import tiny_overrides

    data = shutil.copytree(tiny_data, tmp_path / "data")
    limits = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=2"]
    extra = ["loss.class_weights=median_frequency", *limits]
    result = train(make_cfg("train", tiny_overrides(str(data), *extra), tmp_path / "run"))
    assert result["status"] == "ok"
    entries = json.loads((data / CACHE_FILE).read_text())["entries"]
    (entry,) = entries.values()
    assert entry["images"] == 24  # the SBD train masks
    stored = read_checkpoint(result["best_checkpoint"], "ckpt").hparams["class_weights"]
    pixels, image_pixels = np.array(entry["pixels"]), np.array(entry["image_pixels"])
    freq = pixels[pixels > 0] / image_pixels[pixels > 0]
    assert len(stored) == 21 and stored[0] == pytest.approx(np.median(freq) / freq[0])


# -- the check tool ----------------------------------------------------------------------------------


def test_check_tool_lists_every_problem_and_exits_2(tiny_folder, tmp_path, capsys):
    root = Path(convert_copy(tiny_folder, tmp_path))
    train_masks = sorted((root / "masks/train").iterdir())
    val_masks = sorted((root / "masks/val").iterdir())
    train_masks[0].unlink()  # 1: an image without its mask
    Image.open(val_masks[0]).crop((0, 0, 20, 20)).save(val_masks[0])  # 2: a size mismatch
    labels = np.array(Image.open(val_masks[1]))
    labels[:3, :4] = 40  # 3: a value that is no class
    Image.fromarray(labels).save(val_masks[1])
    assert run_check(["data=folder", f"data.root={root}"], bar=False) == 2
    out, err = capsys.readouterr()
    problems = out.strip().splitlines()[-3:]
    assert problems[0].startswith(f"{root}/masks/train: no mask for 1 image(s) of images/train (first: ")
    assert problems[1].startswith(f"{val_masks[0]}: labels are (20, 20) but ")
    assert problems[2].startswith(f"{val_masks[1]}: mask values 40 (12 pixels) are neither a class")
    assert out.startswith("class ") and "background" in out and "train pixels %" in out
    assert err.strip() == f"error: 3 problem(s) in data.root={root}; fix them and run the check again"
    cmd = [sys.executable, "-m", "fcnlab.cli.data", "check", "--root", str(tiny_folder), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(
        f"data.root={tiny_folder}: no problems found"
    )


# -- the generated and converted layouts -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tiny_data, tmp_path_factory) -> Path:
    """The tiny generated VOC/SBD tree's seg11valid protocol, converted to the folder layout."""
    return convert_voc(tiny_data, tmp_path_factory.mktemp("folder") / "shapes")


def convert_copy(folder: Path, tmp_path: Path) -> str:
    import shutil

    return shutil.copytree(folder, tmp_path / "copy")


def test_generator_writes_the_converted_layout(tiny_folder, tmp_path):
    from conftest import TINY_DATA

    out = generate(tmp_path / "gen", TINY_DATA, workers=1, layout="folder")
    assert generate(out, TINY_DATA, workers=1, layout="folder") == out  # a no-op the second time
    names = sorted(str(p.relative_to(tiny_folder)) for p in tiny_folder.rglob("*") if p.is_file())
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted([*names, "fcnlab_synthetic.json"])
    for rel in names:
        assert (out / rel).read_bytes() == (tiny_folder / rel).read_bytes(), rel
    assert (out / "classes.txt").read_text().splitlines()[:2] == ["background 0 0 0", "solid-disc 128 0 0"]


def test_same_images_same_metrics_through_both_layouts(tiny_data, tiny_folder, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    voc = evaluate(
        make_cfg("eval", [f"ckpt={ckpt}", f"data.root={tiny_data}", "data.generate=null"], tmp_path / "a")
    )
    folder = evaluate(
        make_cfg("eval", [f"ckpt={ckpt}", "data=folder", f"data.root={tiny_folder}"], tmp_path / "b")
    )
    print("VOC layout   ", json.dumps(voc["metrics"]))
    print("folder layout", json.dumps(folder["metrics"]))
    assert folder["metrics"] == voc["metrics"]
    np.testing.assert_array_equal(list(folder["per_class_iu"].values()), list(voc["per_class_iu"].values()))
    assert 0 < voc["metrics"]["pixel_acc"] < 1


@pytest.mark.slow
def test_table2_sweep_on_the_folder_layout(tiny_data, tiny_folder, tmp_path):
    from test_sweep import run_sweep

    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, str(tiny_folder), tmp_path, "data=folder", f"pretrain.data_root={tiny_data}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == sorted(
        f"{v}_seed0" for v in ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s", "fcn32s_mid", "fcn32s_long")
    )
    results = {j: json.loads((sweep / j / "results.json").read_text()) for j in jobs}
    assert all(r["status"] == "ok" and r["protocol"] == "folder" for r in results.values())
    assert results["fcn16s_seed0"]["init_from"] == str(sweep / "fcn32s_seed0/checkpoints/best.ckpt")
    assert results["fcn8s_seed0"]["init_from"] == str(sweep / "fcn16s_seed0/checkpoints/best.ckpt")
    assert "initialised from" in (sweep / "fcn8s_seed0/table2.log").read_text()
    assert results["fcn8s_seed0"]["class_names"][:2] == ["background", "solid-disc"]
    assert (sweep / "fcn8s_seed0/figure4/index.json").is_file()
    # the trained FCN-8s scores the same images the same through the VOC layout
    names = f"data.class_names=[{','.join(SHAPES_CLASSES)}]"  # the generated classes, not VOC's
    best, overrides = (
        results["fcn8s_seed0"]["best_checkpoint"],
        ["data.generate=null", "data.crop_size=48", names],
    )
    voc = evaluate(make_cfg("eval", [f"ckpt={best}", f"data.root={tiny_data}", *overrides], tmp_path / "a"))
    print("fcn8s, VOC layout   ", json.dumps(voc["metrics"]))
    print("fcn8s, folder layout", json.dumps(results["fcn8s_seed0"]["metrics"]))
    assert voc["metrics"] == pytest.approx(results["fcn8s_seed0"]["metrics"], abs=1e-12)


def readme_data_command(prefix: str) -> list[str]:
    """The README's ``.venv/bin/fcnlab-data <args>`` line whose args start with ``prefix``, as argv."""
    from test_readme_commands import README

    for line in README.read_text().splitlines():
        head = line.partition("#")[0]
        if head.startswith(f".venv/bin/fcnlab-data {prefix}"):
            return [sys.executable, "-m", "fcnlab.cli.data", *head.split()[1:]]
    raise AssertionError(f"no README line `.venv/bin/fcnlab-data {prefix}...`")


@pytest.mark.slow
def test_readme_your_own_data_commands_as_written(tmp_path, monkeypatch):
    import test_readme_commands
    from test_readme_commands import assert_clean, readme_command, run_until_first_job

    # the module, not an installed script that may predate this checkout
    monkeypatch.setattr(
        test_readme_commands, "fcnlab_train", lambda: [sys.executable, "-m", "fcnlab.cli.train"]
    )
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    for prefix in ("generate --layout folder", "check data=folder"):
        proc = subprocess.run(
            readme_data_command(prefix), cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("data.root=data/my_shapes: no problems found")
    job, output = run_until_first_job(
        readme_command("data=folder data.root=data/my_shapes"), cwd, "outputs/train/*"
    )
    assert_clean(output)
    assert job.is_relative_to(cwd)


# -- issue 26: palette masks by colour, overlap, what is not read, suspicious settings --------------------


def _reordered_palette_mask(path: Path, labels: np.ndarray, order: list[int]) -> None:
    """``labels`` saved as an image editor re-saves a palette mask: the same colours at other indices
    (index ``i`` holds the colour of class ``order[i]``)."""
    colours = list(COLOURS.values())
    index = np.zeros_like(labels)
    for i, k in enumerate(order):
        index[labels == k] = i
    index[labels == 255] = 255
    png = Image.fromarray(index, mode="L").convert("P")
    png.putpalette([c for k in order for c in colours[k]] + [224, 224, 192] * (256 - len(order)))
    png.save(path)


def test_a_reordered_palette_mask_is_read_by_its_colours(tmp_path):
    root = make_folder(tmp_path, {"train": {"a": LABELS}, "val": {"b": LABELS}}, "rgb", colours=True)
    for split, i in (("train", "a"), ("val", "b")):
        _reordered_palette_mask(root / "masks" / split / f"{i}.png", LABELS, order=[2, 0, 1])
    for labels in loaded(root):  # indices 0, 1, 2 hold road, sky, grass: read as the classes they show
        np.testing.assert_array_equal(labels, LABELS)
    assert run_check(["data=folder", f"data.root={root}"], bar=False) == 0


def test_train_val_overlap_is_refused_unless_allowed(tmp_path):
    a, b = stripes(), stripes(values=(2, 1, 0))
    root = make_folder(tmp_path / "f", {"train": {"x": a, "y": b}, "val": {"x": a, "z": b}})
    (root / "images/val/z.png").write_bytes((root / "images/train/y.png").read_bytes())  # same pixels,
    with pytest.raises(FCNLabError, match=r"/images: 1 image\(s\) in both train and val \(the same file"):
        FolderDataModule(str(root), num_workers=0).setup("fit")  # but another id: not an id overlap
    module = FolderDataModule(str(root), num_workers=0, allow_overlap=True)
    module.setup("fit")
    assert len(module.train_set) == 2 and len(module.val_set) == 2
    (root / "images/val/x.png").write_bytes(b"\x89PNG another image, same name")  # x differs: no overlap
    assert folder_samples(root)[2] == []


def test_check_tool_warns_about_files_it_does_not_read(tmp_path, capsys):
    root = make_folder(tmp_path / "f", {"train": {"a": stripes()}, "val": {"b": stripes()}})
    (root / "images/train/more").mkdir()
    Image.new("RGB", (10, 12)).save(root / "images/train/more/c.png")
    (root / "masks/val/notes.txt").write_text("")
    assert run_check(["data=folder", f"data.root={root}"], bar=False) == 0  # not errors: warnings
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: {root}/images/train: 1 entry is not read (first: more/): only the image files directly "
        "in this folder are, subfolders are not searched",
        f"warning: {root}/masks/val: 1 entry is not read (first: notes.txt): only the PNG masks directly in "
        "this folder are, subfolders are not searched",
    ]


def test_training_logs_each_note_once(tmp_path, caplog):
    root = make_folder(tmp_path / "f", {"train": {"a": stripes()}, "val": {"b": stripes()}})
    (root / "images/train/more").mkdir()
    with caplog.at_level(logging.WARNING, logger="fcnlab.data.folder"):
        for _ in range(3):  # the config check, setup, a second setup: one warning
            FolderDataModule(str(root), num_workers=0).setup("fit")
    assert [r.getMessage().split(":")[1] for r in caplog.records] == [" 1 entry is not read (first"]


def test_infinite_class_weight_is_named_not_blamed_on_the_learning_rate():
    from fcnlab.data.class_weights import check_weight_list

    with pytest.raises(FCNLabError, match=r"^loss.class_weights\[1\]=inf: every weight must be a finite"):
        check_weight_list([1, float("inf"), 2], 3)
