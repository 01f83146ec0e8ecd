"""Every bad input in docs/reliability.md gives exactly the one-line message the table shows.

The table is the source: each row's id maps to a case below that builds the fault and returns what the
user reads; ``<data>``/``<tmp>`` in the table stand for the test's folders. Cases also check what is left
on disk (a NaN loss keeps the last good checkpoint; a full disk leaves no half-written one).
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from fcnlab.data.voc import load_mask, load_sample, protocol_samples
from fcnlab.errors import FCNLabError
from fcnlab.export import export
from fcnlab.models.vgg import VGGClassifier, vgg16_tiny_spec
from fcnlab.predict import list_inputs, plan_outputs, read_image
from fcnlab.train import train
from fcnlab.training import FCNModule, load_module
from test_train import make_cfg, tiny_overrides

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
ROW = re.compile(r"^\| (R\d+) \|.*\| `(?P<message>[^`]+)` \| `(?P<test>[\w.:\[\]-]+)` \|$")


def documented() -> dict[str, str]:
    """Row id → exact message, from the table in docs/reliability.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if m := ROW.match(line):
            rows[m.group(1)] = m.group("message")
    return rows


def message_of(action: Callable[[], object]) -> str:
    with pytest.raises(FCNLabError) as info:
        action()
    return str(info.value)


def first_val(root: Path) -> tuple[str, Path, Path]:
    _, val, _ = protocol_samples(root, "seg11valid")
    return val[0].id, Path(val[0].image), Path(val[0].mask)


def cli_first_line(tmp_path: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "fcnlab.train", f"paths.root_dir={tmp_path}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    return proc.stderr.strip().splitlines()[0]


def tiny_train(data: str, tmp_path: Path, *extra: str) -> dict:
    return train(make_cfg("train", tiny_overrides(data, *extra), tmp_path))


# -- the cases: each builds one fault in a private copy of the data / a tmp dir, returns the message --


def r01_missing_root(data: Path, tmp: Path) -> str:
    return message_of(lambda: protocol_samples(tmp / "nowhere", "seg11valid"))


def r02_wrong_root(data: Path, tmp: Path) -> str:
    (tmp / "photos").mkdir()
    return message_of(lambda: protocol_samples(tmp / "photos", "seg11valid"))


def r03_partial_dataset(data: Path, tmp: Path) -> str:
    _, image, _ = first_val(data)
    image.unlink()
    return message_of(lambda: protocol_samples(data, "seg11valid"))


def r04_missing_split_list(data: Path, tmp: Path) -> str:
    (data / "VOCdevkit/VOC2011/ImageSets/Segmentation/val.txt").unlink()
    return message_of(lambda: protocol_samples(data, "seg11valid"))


def r05_truncated_image(data: Path, tmp: Path) -> str:
    _, image, _ = first_val(data)
    image.write_bytes(image.read_bytes()[:200])
    _, val, _ = protocol_samples(data, "seg11valid")
    return message_of(lambda: load_sample(val[0]))


def r06_corrupt_mask(data: Path, tmp: Path) -> str:
    _, _, mask = first_val(data)
    mask.write_bytes(b"not a png at all")
    return message_of(lambda: load_mask(mask))


def r07_size_mismatch(data: Path, tmp: Path) -> str:
    _, _, mask = first_val(data)
    Image.open(mask).crop((0, 0, 10, 10)).save(mask)
    _, val, _ = protocol_samples(data, "seg11valid")
    return message_of(lambda: load_sample(val[0]))


def r08_labels_out_of_range(data: Path, tmp: Path) -> str:
    _, _, mask = first_val(data)
    labels = np.asarray(Image.open(mask)).copy()
    labels[0, :3] = [21, 40, 254]
    Image.fromarray(labels, mode="L").save(mask)
    return message_of(lambda: load_mask(mask))


def r09_empty_split(data: Path, tmp: Path) -> str:
    (data / "benchmark_RELEASE/dataset/train.txt").write_text("\n")
    return message_of(lambda: protocol_samples(data, "seg11valid"))


def r10_unknown_model(data: Path, tmp: Path) -> str:
    return cli_first_line(tmp, "model=fcn4s")


def r11_unknown_option(data: Path, tmp: Path) -> str:
    return cli_first_line(tmp, "optimizer.lrr=0.1")


def r90_unknown_backbone_option(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "+model.backbone_kwargs.width=4", "debug=fast"))


def r91_option_of_another_backbone(data: Path, tmp: Path) -> str:
    extra = ("model.backbone=vgg16", "+model.backbone_kwargs.width_divisor=8", "debug=fast")
    return message_of(lambda: tiny_train(str(data), tmp, *extra))


def r12_classes_mismatch(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "model.num_classes=5", "debug=fast"))


def r13_bad_learning_rate(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "optimizer.lr=0", "debug=fast"))


def r14_wrong_family_checkpoint(data: Path, tmp: Path) -> str:
    classifier = tmp / "vgg_classifier.pth"
    torch.save(VGGClassifier(vgg16_tiny_spec()).state_dict(), classifier)
    return message_of(lambda: tiny_train(str(data), tmp, f"init_from={classifier}", "debug=fast"))


def r15_truncated_checkpoint(data: Path, tmp: Path) -> str:
    ckpt = tmp / "best.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(10_000)}, "hyper_parameters": {}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a copy cut short
    return message_of(lambda: load_module(str(ckpt)))


def r16_sweep_parent_missing(data: Path, tmp: Path) -> str:
    parent = tmp / "sweep" / "fcn32s_seed0" / "checkpoints" / "best.ckpt"
    message = message_of(lambda: tiny_train(str(data), tmp, f"init_from={parent}", "model=fcn16s"))
    assert not (tmp / "checkpoints").exists()  # refused before training: never from scratch
    return message


def r17_unwritable_output_dir(data: Path, tmp: Path) -> str:
    (tmp / "a_file").write_text("")
    return cli_first_line(tmp, f"hydra.run.dir={tmp}/a_file/run").removeprefix("error: ")


def r18_folder_of_another_job(data: Path, tmp: Path) -> str:
    tiny_train(str(data), tmp / "run", "model=fcn32s", "debug=fast")
    return message_of(lambda: tiny_train(str(data), tmp / "run", "model=fcn16s", "debug=fast"))


def r19_bad_resume_value(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "resume=yes", "debug=fast"))


def r20_nan_loss(data: Path, tmp: Path) -> str:
    # Two clean epochs of 3 steps (checkpoints at steps 3 and 6), then the loss turns nan at step 7.
    real_loss = FCNModule.loss

    def poisoned(self, logits, masks):
        loss = real_loss(self, logits, masks)
        return loss * float("nan") if self.training and self.global_step >= 7 else loss

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FCNModule, "loss", poisoned)
        extra = ("model=fcn32s", "trainer.max_epochs=4", "trainer.limit_train_batches=3")
        message = message_of(lambda: tiny_train(str(data), tmp, *extra))
    kept = torch.load(tmp / "checkpoints" / "last.ckpt", weights_only=False)
    assert kept["global_step"] == 6 and all(torch.isfinite(v).all() for v in kept["state_dict"].values())
    assert not (tmp / "results.json").exists()
    return message


def r21_disk_full_while_saving(data: Path, tmp: Path) -> str:
    def disk_full(self, filepath, weights_only=False):
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        Path(filepath).write_bytes(b"half a checkpoint")  # the write got this far
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(L.Trainer, "save_checkpoint", disk_full)
        message = message_of(lambda: tiny_train(str(data), tmp, "model=fcn32s", "trainer.max_epochs=1"))
    assert not list((tmp / "checkpoints").iterdir())  # no .partial, nothing that looks complete
    return message


def r22_predict_missing_input(data: Path, tmp: Path) -> str:
    return message_of(lambda: list_inputs(tmp / "photos"))


def r23_predict_empty_folder(data: Path, tmp: Path) -> str:
    (tmp / "photos").mkdir()
    (tmp / "photos" / "notes.txt").write_text("no images here")
    return message_of(lambda: list_inputs(tmp / "photos"))


def r24_predict_unreadable_image(data: Path, tmp: Path) -> str:
    (tmp / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return message_of(lambda: read_image(tmp / "broken.jpg", max_pixels=4096 * 4096))


def r25_predict_huge_image(data: Path, tmp: Path) -> str:
    Image.new("RGB", (5000, 4000)).save(tmp / "huge.png")
    return message_of(lambda: read_image(tmp / "huge.png", max_pixels=4096 * 4096))


def r26_predict_output_is_the_input(data: Path, tmp: Path) -> str:
    images = data / "VOCdevkit/VOC2011/JPEGImages"
    return message_of(lambda: plan_outputs(images, list_inputs(images)[0], images))


def r27_export_unknown_format(data: Path, tmp: Path) -> str:
    cfg = make_cfg("export", [f"ckpt={tmp}/best.ckpt", "format=tflite"], tmp)
    return message_of(lambda: export(cfg))


CASES = {name.split("_")[0].upper(): fn for name, fn in dict(globals()).items() if re.match(r"r\d\d_", name)}


@pytest.fixture
def broken(tiny_data, tmp_path) -> tuple[Path, Path]:
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    return data, work


def test_the_table_lists_at_least_15_bad_inputs_each_with_a_test():
    rows = documented()
    assert len(rows) >= 15
    assert set(CASES) <= set(rows), f"cases without a row: {sorted(set(CASES) - set(rows))}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_documented_message_is_exactly_what_the_user_gets(case, broken):
    data, work = broken
    expected = documented()[case].replace("<data>", str(data)).replace("<tmp>", str(work))
    actual = CASES[case](data, work)
    assert "\n" not in actual
    assert actual == expected
