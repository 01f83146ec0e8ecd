"""fcnlab-predict: masks and overlays at any image size; bad files reported and skipped; inputs untouched."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from fcnlab.atomic import OUTPUTS_MANIFEST
from fcnlab.data.classes import voc_palette
from fcnlab.errors import FCNLabError
from fcnlab.inference.inputs import read_image
from fcnlab.inference.predict import predict, save_png
from fcnlab.training import FCNModule
from helpers.hang import HANG_GUARD_S
from test_train import make_cfg

NUM_CLASSES = 21


def tiny_checkpoint(
    path: Path,
    name: str = "fcn8s",
    geometry: str = "efficient",
    num_classes: int = NUM_CLASSES,
    backbone: str = "vgg16_tiny",
    **classes: list,
) -> Path:
    """A real Lightning checkpoint of a tiny FCN after one step, with non-zero scoring layers;
    ``classes``: ``class_names`` / ``class_colors`` for the module."""
    torch.manual_seed(0)
    model = {"name": name, "num_classes": num_classes, "backbone": backbone, "geometry": geometry}
    module = FCNModule(model=model, optimizer=functools.partial(torch.optim.SGD, lr=1e-3), **classes)
    with torch.no_grad():  # zero-initialised scores would make every logit 0 and every check trivial
        for param_name, param in module.model.named_parameters():
            if "score" in param_name:
                param.normal_(0, 0.05)
    data = TensorDataset(torch.randn(2, 3, 16, 16), torch.randint(0, num_classes, (2, 16, 16)))
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, DataLoader(data, batch_size=2))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


def rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run(ckpt: str, source: Path, output: Path, job: Path, *extra: str) -> tuple[dict, list[str]]:
    errors: list[str] = []
    cfg = make_cfg("predict", [f"ckpt={ckpt}", f"input={source}", f"output={output}", *extra], job)
    return predict(cfg, report=errors.append), errors


def test_mixed_folder(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb(1, 1, 1).save(src / "a_one_pixel.png")
    rgb(97, 131, 2).save(src / "b_odd.jpg")
    Image.fromarray(np.full((64, 80), 90, np.uint8)).save(src / "c_grey.BMP")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (33, 17, 4), np.uint8)).save(src / "d_rgba.png")
    (src / "e_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    png = (src / "a_one_pixel.png").read_bytes()
    rgb(40, 50, 4).save(src / "f_whole.png")
    (src / "g_truncated.png").write_bytes((src / "f_whole.png").read_bytes()[:300])
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(png)
    before = digests(src)

    out = tmp_path / "out"
    record, errors = run(ckpt, src, out, tmp_path / "job")

    assert [e.split(": ")[0] for e in errors] == [str(src / "e_corrupt.jpg"), str(src / "g_truncated.png")]
    assert all("not a readable image" in e for e in errors) and record["errors"] == errors
    assert record["ignored_files"] == 1  # notes.txt; hidden files are not counted
    sizes = {"a_one_pixel": (1, 1), "b_odd": (131, 97), "c_grey": (80, 64), "d_rgba": (17, 33)}
    sizes["f_whole"] = (50, 40)
    written = sorted([*(f"{s}.png" for s in sizes), "overlay", "legend.png", "classes.txt", OUTPUTS_MANIFEST])
    assert sorted(p.name for p in out.iterdir()) == written
    palette = voc_palette()
    for stem, size in sizes.items():
        with Image.open(out / f"{stem}.png") as mask:
            assert mask.mode == "P" and mask.size == size
            assert np.array_equal(np.array(mask.getpalette()[:768]).reshape(-1, 3), palette)
            labels = np.asarray(mask)
        assert labels.max() < NUM_CLASSES
        with Image.open(out / "overlay" / f"{stem}.png") as over:
            assert over.mode == "RGB" and over.size == size
            blended = np.asarray(over)
        if stem == "f_whole":  # a lossless RGB input: background pixels keep their colour exactly
            original = np.asarray(Image.open(src / "f_whole.png"))
            assert np.array_equal(blended[labels == 0], original[labels == 0])
            assert (labels != 0).any() and not np.array_equal(blended, original)
    assert [p.name for p in out.rglob(".*")] == [OUTPUTS_MANIFEST]  # no temp file left behind
    assert digests(src) == before
    assert (tmp_path / "job" / "predict.json").is_file() and len(record["images"]) == 5


def test_console_script_reports_and_exits_2(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb(45, 61).save(src / "good.png")
    (src / "bad.jpg").write_bytes(b"junk")
    script = Path(sys.executable).parent / "fcnlab-predict"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fcnlab.cli.predict"]
    args = [f"ckpt={ckpt}", f"input={src}", f"output={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'job'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {src / 'bad.jpg'}: not a readable image (unknown format or corrupt header)"
    ]
    assert done.stdout.startswith("predicted 1/2 images on cpu") and "ms/image" in done.stdout
    with Image.open(tmp_path / "out" / "good.png") as mask:
        assert mask.size == (61, 45) and mask.mode == "P"


def test_huge_image_is_reported_with_the_option(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb(120, 100).save(src / "big.png")
    rgb(20, 30).save(src / "small.png")
    record, errors = run(ckpt, src, tmp_path / "out", tmp_path / "job", "max_pixels=10000")
    assert errors == [
        f"{src / 'big.png'}: 100x120 = 12000 pixels is over max_pixels=10000; "
        "raise it (max_pixels=12000) if memory allows, or downscale the image"
    ]
    assert [Path(i["input"]).name for i in record["images"]] == ["small.png"]
    assert not (tmp_path / "out" / "big.png").exists()


def test_inputs_are_never_overwritten(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb(8, 8).save(src / "x.png")
    before = digests(src)
    with pytest.raises(FCNLabError, match="is the input folder; choose another folder"):
        run(ckpt, src, src, tmp_path / "job")
    with pytest.raises(FCNLabError, match="is the input folder"):  # one image: its own folder is refused too
        run(ckpt, src / "x.png", src / ".." / "in", tmp_path / "job")
    overlays = tmp_path / "out" / "overlay"  # input = the overlay folder of the output: same file names
    overlays.mkdir(parents=True)
    rgb(8, 8).save(overlays / "y.png")
    with pytest.raises(FCNLabError, match=r"overlay/y\.png would overwrite the input"):
        run(ckpt, overlays, tmp_path / "out", tmp_path / "job")
    assert digests(src) == before and sorted(p.name for p in overlays.iterdir()) == ["y.png"]


def test_the_same_command_again_replaces_only_its_own_files(ckpt, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rgb(8, 8).save(src / "x.png")
    rgb(8, 9, 1).save(src / "y.png")
    run(ckpt, src, out, out)  # output = the job folder (the default): predict.json goes there too
    first = sorted(p.relative_to(out) for p in out.rglob("*"))
    record, errors = run(ckpt, src, out, out)  # the same command again: its own files, replaced
    assert (
        errors == []
        and len(record["images"]) == 2
        and sorted(p.relative_to(out) for p in out.rglob("*")) == first
    )
    (out / "y.png").write_bytes(b"hand-corrected labels")  # a user's edit makes the file the user's
    with pytest.raises(FCNLabError, match=r"1 file\(s\) there were not written by fcnlab-predict \(first: "):
        run(ckpt, src, out, out)
    assert (out / "y.png").read_bytes() == b"hand-corrected labels"
    run(ckpt, src, out, out, "overwrite=true")  # unless the user says so
    assert (out / "y.png").read_bytes() != b"hand-corrected labels"
    run(ckpt, src, out, out)  # and then it is the command's own again


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no image files (.bmp .gif .jpeg .jpg .png .ppm .tif .tiff .webp) in this folder"),
        ("missing", "no such file or folder; check the path"),
        ("clash", "a.jpg and a.png would both write a.png; rename one"),
    ],
)
def test_bad_input_is_one_clear_error(setup, message, ckpt, tmp_path):
    src = tmp_path / "in"
    if setup != "missing":
        src.mkdir()
        (src / "readme.txt").write_text("no images here")
    if setup == "clash":
        rgb(4, 4).save(src / "a.png")
        rgb(4, 4).save(src / "a.jpg")
    with pytest.raises(FCNLabError, match=re.escape(message)):
        run(ckpt, src, tmp_path / "out", tmp_path / "job")
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_and_device(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb(4, 4).save(src / "a.png")
    with pytest.raises(FCNLabError, match=r"ckpt=/nonexistent/best\.ckpt: no such file; check the path"):
        run("/nonexistent/best.ckpt", src, tmp_path / "out", tmp_path / "job")
    if not torch.cuda.is_available():
        with pytest.raises(FCNLabError, match="device=cuda: CUDA is not available here"):
            run("/nonexistent/best.ckpt", src, tmp_path / "out", tmp_path / "job", "device=cuda")


def test_interrupted_png_write_leaves_no_file(tmp_path, monkeypatch):
    def dies_mid_write(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_png(rgb(4, 4), tmp_path / "mask.png")
    assert list(tmp_path.iterdir()) == []


def test_16bit_greyscale_png_is_segmented_as_its_8bit_twin(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    grey8 = np.random.default_rng(5).integers(0, 256, (40, 56), dtype=np.uint8)
    Image.fromarray(grey8).save(src / "a_8bit.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(src / "b_16bit.png")  # the same picture, 16-bit
    assert Image.open(src / "b_16bit.png").mode.startswith("I")
    assert torch.equal(read_image(src / "b_16bit.png", 10**6), read_image(src / "a_8bit.png", 10**6))
    out = tmp_path / "out"
    record, errors = run(ckpt, src, out, tmp_path / "job")
    assert errors == [] and len(record["images"]) == 2
    for folder in (out, out / "overlay"):
        assert np.array_equal(
            np.asarray(Image.open(folder / "a_8bit.png")), np.asarray(Image.open(folder / "b_16bit.png"))
        )


USER_NAMES = ["background", "road / sidewalk", "café", *(f"class {i}" for i in range(3, NUM_CLASSES))]
USER_COLORS = [[(13 * i) % 256, (250 - 7 * i) % 256, (90 + 31 * i) % 256] for i in range(NUM_CLASSES)]


def legend_rows(path: Path) -> list[tuple[str, list[int]]]:
    """classes.txt as (name, [R, G, B]) per line: ``name R G B``, the name may hold spaces."""
    rows = []
    for line in path.read_text().splitlines():
        name, *rgb_ = line.rsplit(" ", 3)
        rows.append((name, [int(v) for v in rgb_]))
    return rows


def test_masks_overlays_and_legend_are_in_the_checkpoints_colours(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "user.ckpt", class_names=USER_NAMES, class_colors=USER_COLORS)
    src = tmp_path / "in"
    src.mkdir()
    rgb(40, 52, 5).save(src / "a.png")
    out = tmp_path / "out"
    record, errors = run(str(ckpt), src, out, tmp_path / "job", "overlay_alpha=1.0")
    assert not errors and record["class_names"] == USER_NAMES and record["class_colors"] == USER_COLORS
    with Image.open(out / "a.png") as mask:
        assert mask.mode == "P"
        palette = np.array(mask.getpalette()[:768]).reshape(-1, 3)
        labels = np.asarray(mask)
    assert palette[:NUM_CLASSES].tolist() == USER_COLORS
    assert np.array_equal(palette[NUM_CLASSES:], voc_palette()[NUM_CLASSES:])  # 255 (void) as VOC's
    over = np.asarray(Image.open(out / "overlay" / "a.png"))
    fg = labels != 0
    assert fg.any() and np.array_equal(over[fg], np.asarray(USER_COLORS, np.uint8)[labels[fg]])
    assert legend_rows(out / "classes.txt") == list(zip(USER_NAMES, USER_COLORS, strict=True))
    legend = np.asarray(Image.open(out / "legend.png").convert("RGB"))
    for color in USER_COLORS:  # every class's swatch is drawn
        assert (legend == color).all(-1).sum() >= 100
    assert record["legend"] == str(out / "legend.png")


def test_old_checkpoint_without_colours_predicts_in_the_voc_palette(ckpt, tmp_path):
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    saved["hyper_parameters"].pop("class_colors")  # as written before checkpoints held colours
    torch.save(saved, tmp_path / "old.ckpt")
    src = tmp_path / "in"
    src.mkdir()
    rgb(20, 30, 6).save(src / "a.png")
    record, errors = run(str(tmp_path / "old.ckpt"), src, tmp_path / "out", tmp_path / "job")
    assert not errors and record["class_colors"] == voc_palette()[:NUM_CLASSES].tolist()
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert np.array_equal(np.array(mask.getpalette()[:768]).reshape(-1, 3), voc_palette())
    names = [name for name, _ in legend_rows(tmp_path / "out" / "classes.txt")]
    assert names == [str(i) for i in range(NUM_CLASSES)]  # a module given no names: its indices


def test_more_than_256_classes_write_16_bit_masks(tmp_path):
    from fcnlab.training import load_module

    ckpt = tiny_checkpoint(tmp_path / "many.ckpt", num_classes=300)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    saved["state_dict"]["model.score_fr.bias"][256:] += 1.0  # classes past 255 win somewhere
    torch.save(saved, ckpt)
    model = load_module(str(ckpt)).model.eval()
    src = tmp_path / "in"
    src.mkdir()
    rgb(24, 20, 7).save(src / "a.png")
    record, errors = run(str(ckpt), src, tmp_path / "out", tmp_path / "job")
    assert not errors and len(record["class_colors"]) == 300
    assert len({tuple(c) for c in record["class_colors"]}) == 300  # VOC's colour map, continued
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert mask.mode == "I;16"
        labels = np.asarray(mask)
    x = torch.from_numpy(np.array(Image.open(src / "a.png"))).permute(2, 0, 1)
    from fcnlab.inference.inputs import normalize

    with torch.inference_mode():
        expected = model(normalize(x, "torchvision")[None])[0].argmax(0).numpy()
    assert np.array_equal(labels, expected) and labels.max() > 255
