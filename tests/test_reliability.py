"""Every bad input in docs/reliability.md gives exactly the one-line message the table shows.

The table is the source: each row's id maps to a case below that builds the fault and returns what the
user reads; ``<data>``/``<tmp>`` in the table stand for the test's folders. Cases also check what is left
on disk (a NaN loss keeps the last good checkpoint; a full disk leaves no half-written one).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from fcnlab.data.loading import load_mask, load_sample
from fcnlab.data.voc import protocol_samples
from fcnlab.errors import FCNLabError
from fcnlab.inference.export import export
from fcnlab.inference.inputs import list_inputs, plan_outputs, read_image
from fcnlab.models.vgg import VGGClassifier, vgg16_tiny_spec
from fcnlab.training import FCNModule, load_module
from fcnlab.training.run import train
from helpers.hang import HANG_GUARD_S
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
    cmd = [sys.executable, "-m", "fcnlab.cli.train", f"paths.root_dir={tmp_path}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
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


SHORT = ("model=fcn32s", "trainer.max_epochs=2", "trainer.limit_train_batches=2")
SHORT += ("trainer.limit_val_batches=2",)


def r42_optimizer_option_not_a_number(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "optimizer.momentum=abc"))


def r43_trainer_option_lightning_refuses(data: Path, tmp: Path) -> str:
    message = message_of(lambda: tiny_train(str(data), tmp, "trainer.limit_train_batches=-1", "model=fcn32s"))
    assert not (tmp / "checkpoints").exists()
    return message


def r44_resume_checkpoint_truncated(data: Path, tmp: Path) -> str:
    ckpt = tmp / "last.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(10_000)}, "hyper_parameters": {}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    return message_of(lambda: tiny_train(str(data), tmp / "run", f"ckpt_path={ckpt}", "debug=fast"))


def r45_resume_checkpoint_not_from_training(data: Path, tmp: Path) -> str:
    classifier = tmp / "vgg_classifier.pth"
    torch.save(VGGClassifier(vgg16_tiny_spec()).state_dict(), classifier)
    return message_of(lambda: tiny_train(str(data), tmp / "run", f"ckpt_path={classifier}", "debug=fast"))


def r46_report_on_runs_with_the_same_seed(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    for job, iu in (("0_fcn8s_seed0", 0.5), ("1_fcn8s_seed0", 0.6)):  # a sweep over optimizer.lr, say
        fake_job(tmp / "sweep" / job, "fcn8s", 0, mean_iu=iu)
    return message_of(lambda: build_report(tmp / "sweep", tmp / "results"))


def tiny_checkpoints(data: Path, run: Path) -> Path:
    """A finished tiny run in ``run`` (``SHORT``: 2 epochs of 2 batches): its checkpoints folder."""
    tiny_train(str(data), run, *SHORT)
    return run / "checkpoints"


def r28_zero_epochs(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "trainer.max_epochs=0"))


def r29_learning_rate_not_a_number(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "optimizer.lr=abc"))


def r30_seed_not_a_number(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "seed=abc"))


def r31_epochs_not_a_number(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "trainer.max_epochs=abc"))


def r32_batch_size_zero(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "data.batch_size=0"))


def r33_crop_size_zero(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "data.crop_size=0"))


def r34_resume_checkpoint_of_another_model(data: Path, tmp: Path) -> str:
    last = tiny_checkpoints(data, tmp / "a") / "last.ckpt"
    return message_of(lambda: tiny_train(str(data), tmp / "b", "model=fcn8s", f"ckpt_path={last}"))


def r35_init_from_a_folder(data: Path, tmp: Path) -> str:
    tiny_checkpoints(data, tmp / "run")
    message = message_of(lambda: tiny_train(str(data), tmp / "b", "model=fcn16s", f"init_from={tmp}/run"))
    assert not (tmp / "b").exists()
    return message


def r36_second_process_on_one_run_dir(data: Path, tmp: Path) -> str:
    from test_resume import start, step_of, wait_for

    marker = tmp / "step"
    args = [
        *tiny_overrides(str(data), "model=fcn32s", "trainer.max_epochs=1"),
        f"hydra.run.dir={tmp}/run",
        "+callbacks.marker._target_=step_marker.StepMarker",
        f"+callbacks.marker.path={marker}",
        "+callbacks.marker.hold_at=1",  # the first run waits after its first step until it is killed
    ]
    first = start([sys.executable, "-m", "fcnlab.cli.train", f"paths.root_dir={tmp}", *args], tmp)
    try:
        wait_for(lambda: step_of(marker) >= 0, first)
        before = sorted(p.name for p in (tmp / "run").iterdir())
        second = subprocess.run(
            [sys.executable, "-m", "fcnlab.cli.train", f"paths.root_dir={tmp}", *args],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            cwd=tmp,
        )
        assert second.returncode == 2 and "Traceback" not in second.stderr
        line = next(x for x in second.stderr.splitlines() if x.startswith("error: ")).removeprefix("error: ")
        assert f"(pid {first.pid})" in line and first.poll() is None  # the first one runs on, alone
        assert sorted(p.name for p in (tmp / "run").iterdir()) == before  # the refused one wrote nothing
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    return line.replace(f"(pid {first.pid})", "(pid <pid>)")


def r37_truncated_last_checkpoint(data: Path, tmp: Path) -> str:
    checkpoints = tiny_checkpoints(data, tmp)
    (tmp / "results.json").unlink()  # as if killed after its last checkpoint
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.MonkeyPatch.context() as patch:
        said = []
        patch.setattr("fcnlab.training.rundir.log.warning", lambda fmt, *args: said.append(fmt % args))
        results = tiny_train(str(data), tmp, *SHORT)  # the same command again
    assert results["status"] == "ok" and results["resumed_from"] == str(checkpoints / "best.ckpt")
    assert len(said) == 1
    return said[0]


def r38_truncated_last_checkpoint_and_no_best(data: Path, tmp: Path) -> str:
    checkpoints = tiny_checkpoints(data, tmp)
    (tmp / "results.json").unlink()
    for name in ("last.ckpt", "best.ckpt"):
        (checkpoints / name).write_bytes((checkpoints / name).read_bytes()[:5000])
    return message_of(lambda: tiny_train(str(data), tmp, *SHORT))


def fake_job(job: Path, variant: str, seed: int, mode: str = "MULTIRUN", mean_iu: float = 0.5) -> None:
    """A job folder as fcnlab-train leaves it, for the report (which reads only these files)."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: /\n  mode: {mode}\n")
    metrics = {"pixel_acc": 0.8, "mean_acc": 0.6, "mean_iu": mean_iu, "fw_iu": 0.7}
    record = {"variant": variant, "model": variant, "seed": seed, "status": "ok", "metrics": metrics}
    record.update(per_class_iu={"background": 0.8, "shape": mean_iu}, epochs=2, wall_seconds=3.0)
    (job / "results.json").write_text(json.dumps(record))


def r39_report_on_single_runs(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    for name, iu in (("run_a", 0.5), ("run_b", 0.6)):
        fake_job(tmp / "outputs" / "train" / name, "fcn8s", 0, mode="RUN", mean_iu=iu)
    message = message_of(lambda: build_report(tmp / "outputs" / "train", tmp / "results"))
    assert not (tmp / "results").exists()
    return message


def r40_report_skips_a_damaged_results_file(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    fake_job(tmp / "sweep" / "fcn32s_seed0", "fcn32s", 0)
    fake_job(tmp / "sweep" / "fcn8s_seed0", "fcn8s", 0)
    (tmp / "sweep" / "fcn8s_seed0" / "results.json").write_text('{"variant": "fcn8s", "met')  # cut short
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        rows = build_report(tmp / "sweep", tmp / "results")
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "ok"), ("fcn8s", "failed")]
    assert "fcn8s_seed0/results.json: not a results record" in (tmp / "results" / "table2.md").read_text()
    lines = [line for line in said.getvalue().splitlines() if not line.startswith("info: ")]
    assert len(lines) == 1  # one warning (and, here, the info line that Figure 4 is skipped)
    return lines[0].removeprefix("warning: ")


def r41_export_into_a_read_only_folder(data: Path, tmp: Path) -> str:
    # /sys takes no new files, not even from root (whom a chmod would not stop); the checkpoint named
    # here does not exist: the output is checked first, before anything is loaded or exported.
    try:
        Path("/sys/.fcnlab-probe").write_bytes(b"")
        Path("/sys/.fcnlab-probe").unlink()
        pytest.skip("/sys is writable here")
    except PermissionError:
        pass
    cfg = make_cfg("export", [f"ckpt={tmp}/best.ckpt", "output=/sys"], tmp)
    return message_of(lambda: export(cfg))


def r50_sbd_labels_out_of_range(data: Path, tmp: Path) -> str:
    train, _, _ = protocol_samples(data, "seg11valid")
    labels = np.zeros((6, 7))
    labels[0, :3] = [261, -1, 2.9]  # a uint8 cast would make them 5, 255 and 2
    scipy.io.savemat(train[0].mask, {"GTcls": {"Segmentation": labels}})
    return message_of(lambda: load_mask(train[0].mask))


def r51_requantised_palette_png(data: Path, tmp: Path) -> str:
    _, _, mask = first_val(data)
    Image.open(mask).convert("RGB").quantize(colors=8).save(mask)  # an adaptive palette: indices 0..7
    return message_of(lambda: load_mask(mask))


def r52_duplicate_ids(data: Path, tmp: Path) -> str:
    some, _, _ = first_val(data)
    val_txt = data / "VOCdevkit/VOC2011/ImageSets/Segmentation/val.txt"
    val_txt.write_text(val_txt.read_text() + f"{some}\n" * 5)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("fcnlab.data.voc").addHandler(handler)
    try:
        _, val, _ = protocol_samples(data, "seg11valid")
    finally:
        logging.getLogger("fcnlab.data.voc").removeHandler(handler)
    assert [s.id for s in val].count(some) == 1
    [record] = records
    assert record.levelname == "WARNING"
    return record.getMessage()


def r53_exif_rotated_image(data: Path, tmp: Path) -> str:
    _, image, _ = first_val(data)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to show": the stored pixels are the mask's transposed
    Image.open(image).transpose(Image.Transpose.ROTATE_90).save(image, exif=exif.tobytes())
    _, val, _ = protocol_samples(data, "seg11valid")
    return message_of(lambda: load_sample(val[0]))


def r54_predict_float_image(data: Path, tmp: Path) -> str:
    Image.fromarray(np.ones((4, 5), np.float32)).save(tmp / "depth.tif")
    return message_of(lambda: read_image(tmp / "depth.tif", max_pixels=4096 * 4096))


def r55_root_is_a_file(data: Path, tmp: Path) -> str:
    (tmp / "VOCtrainval_11-May-2011.tar").write_bytes(b"not extracted yet")
    return message_of(lambda: protocol_samples(tmp / "VOCtrainval_11-May-2011.tar", "seg11valid"))


def r56_unknown_data_check(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "data.check=fast", "debug=fast"))


def r57_bad_mask_found_before_training(data: Path, tmp: Path) -> str:
    _, val, _ = protocol_samples(data, "seg11valid")
    Image.open(val[-1].mask).convert("RGB").save(val[-1].mask)  # the last one an epoch would read
    steps: list[int] = []
    real_step = FCNModule.training_step

    def counted(self, batch, batch_idx):
        steps.append(batch_idx)
        return real_step(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FCNModule, "training_step", counted)
        message = message_of(lambda: tiny_train(str(data), tmp, "model=fcn32s", "trainer.max_epochs=1"))
    assert steps == []  # refused before a step was taken, not when validation reached the file
    return message


def _fake_torchfcn(path: Path, *layers: str, shapes: dict | None = None) -> Path:
    """A file with torchfcn's FCN key layout (tiny tensors: these checks come before any shape)."""
    keys = ["conv1_1", "conv5_3", "fc6", "fc7", "score_fr", *layers]
    state = {f"{k}.weight": torch.zeros((shapes or {}).get(k, (1,))) for k in keys}
    torch.save(state, path)
    return path


def r80_imagenet_caffe_missing(data: Path, tmp: Path) -> str:
    from fcnlab.models import create_model

    saved = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp / "torch")
    try:
        return message_of(lambda: create_model("fcn32s", backbone="vgg16", pretrained="imagenet_caffe"))
    finally:
        os.environ.pop("TORCH_HOME") if saved is None else os.environ.__setitem__("TORCH_HOME", saved)


def r81_imagenet_caffe_other_backbone(data: Path, tmp: Path) -> str:
    from fcnlab.models import create_model

    return message_of(lambda: create_model("fcn32s", backbone="vgg16_tiny", pretrained="imagenet_caffe"))


def r82_unknown_input_space(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "input_space=bgr", "debug=fast"))


def r83_input_space_contradicts_the_weights(data: Path, tmp: Path) -> str:
    return message_of(
        lambda: tiny_train(
            str(data), tmp, "model.pretrained=imagenet_caffe", "input_space=torchvision", "debug=fast"
        )
    )


def r84_ckpt_of_no_known_kind(data: Path, tmp: Path) -> str:
    classifier = tmp / "vgg_classifier.pth"
    torch.save(VGGClassifier(vgg16_tiny_spec()).state_dict(), classifier)
    return message_of(lambda: load_module(str(classifier)))


def r85_at_once_name_on_fcn16s_weights(data: Path, tmp: Path) -> str:
    path = _fake_torchfcn(tmp / "fcn16s_from_caffe.pth", "score_pool4", "upscore2", "upscore16")
    return message_of(lambda: load_module(str(path), name="fcn8s_atonce"))


def r86_learned_upsampling_into_a_fixed_one(data: Path, tmp: Path) -> str:
    from fcnlab.models import create_model, load_staged

    shapes = {"upscore2": (21, 21, 4, 4)}
    path = _fake_torchfcn(tmp / "fcn16s_from_caffe.pth", "score_pool4", "upscore2", shapes=shapes)
    net = create_model("fcn8s", backbone="vgg16_tiny", learn_upsampling=False, width_divisor=8, pool5_size=3)
    return message_of(lambda: load_staged(net, path))


def r87_verify_voc_without_nets(data: Path, tmp: Path) -> str:
    import contextlib
    import io

    from fcnlab.cli.verify import main as verify_main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert verify_main(["--voc", str(data), "--weights", str(tmp)]) == 2
    return err.getvalue().strip().removeprefix("error: ")


def r88_model_name_on_an_fcnlab_checkpoint(data: Path, tmp: Path) -> str:
    model = {"name": "fcn8s", "backbone": "vgg16_tiny", "width_divisor": 8, "pool5_size": 3}
    module = FCNModule(model=model)
    ckpt = tmp / "best.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    return message_of(lambda: load_module(str(ckpt), name="fcn8s_atonce"))


# -- data=folder (fcnlab.data.folder): each case builds a small folder dataset in <tmp>/f ----------------


def _folder(tmp: Path, kind: str = "L", colours: bool = False) -> Path:
    from helpers.folder_data import make_folder, stripes

    masks = {"train": {"a": stripes(), "b": stripes()}, "val": {"c": stripes()}}
    return make_folder(tmp / "f", masks, kind, colours)


def _folder_setup(root: Path, **options) -> None:
    from fcnlab.data.folder import FolderDataModule

    FolderDataModule(None if root is None else str(root), num_workers=0, **options).setup("fit")


def r100_folder_image_without_mask(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "masks/train/a.png").unlink()
    return message_of(lambda: _folder_setup(root))


def r101_folder_mask_without_image(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "images/train/a.png").unlink()
    return message_of(lambda: _folder_setup(root))


def r102_folder_size_mismatch(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    Image.open(root / "masks/val/c.png").crop((0, 0, 5, 5)).save(root / "masks/val/c.png")
    return message_of(lambda: _folder_setup(root))


def r103_folder_mask_value_not_a_class(data: Path, tmp: Path) -> str:
    from fcnlab.data.folder import folder_samples

    root = _folder(tmp)
    labels = np.array(Image.open(root / "masks/train/b.png"))
    labels[0, :3], labels[1, :2] = 7, 9
    Image.fromarray(labels).save(root / "masks/train/b.png")
    return message_of(lambda: load_sample(folder_samples(root)[0][1]))


def r104_folder_rgb_colours_not_in_classes_txt(data: Path, tmp: Path) -> str:
    from omegaconf import OmegaConf

    from fcnlab.data.check import survey_config

    root = _folder(tmp, "rgb", colours=True)
    rgb = np.array(Image.open(root / "masks/train/a.png"))
    rgb[0, :4] = (1, 2, 3)
    Image.fromarray(rgb).save(root / "masks/train/a.png")
    cfg = {"_target_": "fcnlab.data.folder.FolderDataModule", "root": str(root), "void_index": 255}
    report = survey_config(OmegaConf.create({**cfg, "reduce_zero_label": False}), bar=False)
    assert len(report.problems) == 1
    return report.problems[0]


def r105_folder_empty_split(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    for f in (*(root / "images/val").iterdir(), *(root / "masks/val").iterdir()):
        f.unlink()
    return message_of(lambda: _folder_setup(root))


def r106_classes_txt_duplicate_names(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "classes.txt").write_text("sky\ngrass\nsky\n")
    return message_of(lambda: _folder_setup(root))


def r107_classes_txt_duplicate_colours(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "classes.txt").write_text("sky 0 0 255\ngrass 0 200 0\nroad 0 0 255\n")
    return message_of(lambda: _folder_setup(root))


def r108_classes_txt_malformed_line(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "classes.txt").write_text("sky 0 0 255\ngrass 0 200\nroad 90 90 90\n")
    return message_of(lambda: _folder_setup(root))


def r109_folder_16bit_mask(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    labels = np.asarray(Image.open(root / "masks/train/b.png")).astype(np.uint16)
    Image.fromarray(labels).save(root / "masks/train/b.png")
    return message_of(lambda: _folder_setup(root))


def r110_folder_rgb_mask_without_colours(data: Path, tmp: Path) -> str:
    root = _folder(tmp, "rgb", colours=False)
    return message_of(lambda: _folder_setup(root))


def r111_folder_without_classes_txt(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "classes.txt").unlink()
    return message_of(lambda: _folder_setup(root))


def r112_folder_without_root(data: Path, tmp: Path) -> str:
    return message_of(lambda: _folder_setup(None))


def r113_class_weights_wrong_length(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "loss.class_weights=[1,2,3]"))


def r114_class_weights_unknown_word(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "loss.class_weights=balanced"))


def r115_folder_void_index_is_a_class(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    return message_of(lambda: _folder_setup(root, void_index=1))


def r116_folder_split_list_id_without_files(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "splits").mkdir()
    for kind in ("images", "masks"):
        for f in (root / kind / "train").iterdir():
            f.rename(root / kind / f.name)
    (root / "splits/train.txt").write_text("a\nzz\n")
    (root / "splits/val.txt").write_text("b\n")
    return message_of(lambda: _folder_setup(root))


def r117_folder_jpeg_mask(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    Image.open(root / "masks/train/a.png").save(root / "masks/train/a.jpg")
    (root / "masks/train/a.png").unlink()
    return message_of(lambda: _folder_setup(root))


def r130_class_colors_of_another_count(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "data.class_colors=[[0,0,0],[1,2,3]]", "debug=fast"))


def _voc_colors_with(index: int, color: list[int]) -> str:
    from fcnlab.data.classes import voc_palette

    colors = voc_palette()[:21].tolist()
    colors[index] = color
    return "data.class_colors=[" + ",".join(f"[{r},{g},{b}]" for r, g, b in colors) + "]"


def r131_class_colour_out_of_range(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, _voc_colors_with(1, [300, 0, 0]), "debug=fast"))


def r132_two_classes_one_colour(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, _voc_colors_with(2, [0, 0, 0]), "debug=fast"))


def r133_two_classes_one_name(data: Path, tmp: Path) -> str:
    names = ["background", "dog", "cat", "cat", *(f"c{i}" for i in range(4, 21))]
    override = f"data.class_names=[{','.join(names)}]"
    return message_of(lambda: tiny_train(str(data), tmp, override, "debug=fast"))


def r134_eval_on_other_classes(data: Path, tmp: Path) -> str:
    from fcnlab.inference.evaluate import evaluate

    model = {"name": "fcn32s", "backbone": "vgg16_tiny", "width_divisor": 8, "pool5_size": 3}
    names = ["background", "road", "car", *(f"c{i}" for i in range(3, 21))]
    module = FCNModule(model=model, class_names=names)
    ckpt = tmp / "best.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    overrides = [f"ckpt={ckpt}", f"data.root={data}", "data.generate=null", "data.num_workers=0"]
    return message_of(lambda: evaluate(make_cfg("eval", overrides, tmp / "eval")))


def r135_predict_input_named_legend(data: Path, tmp: Path) -> str:
    from fcnlab.inference.predict import predict

    (tmp / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp / "in" / "legend.jpg")
    overrides = ["ckpt=/never/read.ckpt", f"input={tmp / 'in'}", f"output={tmp / 'out'}"]
    return message_of(lambda: predict(make_cfg("predict", overrides, tmp / "job")))


def r136_report_of_runs_on_other_classes(data: Path, tmp: Path) -> str:
    from fcnlab.data.classes import VOC_CLASSES
    from fcnlab.reporting.build import build_report

    for job, names in (("fcn32s_seed0", list(VOC_CLASSES)), ("fcn8s_seed0", ["background", "cat", "dog"])):
        record = {"variant": job.split("_")[0], "seed": 0, "status": "ok", "class_names": names}
        record |= {"metrics": {"pixel_acc": 0.9, "mean_acc": 0.7, "mean_iu": 0.6, "fw_iu": 0.8}}
        record["per_class_iu"] = dict.fromkeys(names, 0.5)
        (tmp / "sweep" / job).mkdir(parents=True)
        (tmp / "sweep" / job / "results.json").write_text(json.dumps(record))
    return message_of(lambda: build_report(tmp / "sweep", tmp / "report"))


def r160_reproduce_table2_no_seeds(data: Path, tmp: Path) -> str:
    from fcnlab.reporting.sweep_pick import pick_sweep

    return message_of(lambda: pick_sweep(tmp / "runs", 0, "abcd1234"))  # make reproduce-table2 SEEDS=0


def r161_report_without_sweep_dir(data: Path, tmp: Path) -> str:
    import contextlib
    import io

    from fcnlab.cli.report import main as report_main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        report_main([])
    return err.getvalue().strip().removeprefix("error: ")


def _infer_refused(command: str, tmp: Path, data: Path, option: str) -> str:
    """The first FCNLabError of ``fcnlab-<command> <option>``, raised before any file is read."""
    from fcnlab.inference.evaluate import evaluate
    from fcnlab.inference.predict import predict

    missing = str(tmp / "nowhere.ckpt")
    if command == "train":
        return message_of(lambda: tiny_train(str(data), tmp, option))
    if command == "eval":
        return message_of(lambda: evaluate(make_cfg("eval", [f"ckpt={missing}", option], tmp)))
    cfg = make_cfg("predict", [f"ckpt={missing}", f"input={tmp / 'nowhere'}", option], tmp)
    return message_of(lambda: predict(cfg))


def r140_infer_no_scales(data: Path, tmp: Path) -> str:
    return _infer_refused("eval", tmp, data, "infer.scales=[]")


def r141_infer_scale_not_positive(data: Path, tmp: Path) -> str:
    return _infer_refused("predict", tmp, data, "infer.scales=[1.0,0]")


def r142_infer_stride_over_crop(data: Path, tmp: Path) -> str:
    message = _infer_refused("train", tmp, data, "infer.stride=600")
    assert not (tmp / "checkpoints").exists()
    return message


def r143_infer_crop_zero(data: Path, tmp: Path) -> str:
    return _infer_refused("eval", tmp, data, "infer.crop=0")


def r144_infer_stride_negative(data: Path, tmp: Path) -> str:
    return _infer_refused("predict", tmp, data, "infer.stride=-5")


def r145_infer_unknown_mode(data: Path, tmp: Path) -> str:
    return _infer_refused("train", tmp, data, "infer.mode=tile")


def r146_infer_flip_not_boolean(data: Path, tmp: Path) -> str:
    return _infer_refused("eval", tmp, data, "infer.flip=maybe")


def r147_infer_batch_zero(data: Path, tmp: Path) -> str:
    return _infer_refused("predict", tmp, data, "infer.batch=0")


# -- issue 26: nothing lost, nothing silent (each case fails on the code before it) ---------------------


def r170_predict_into_the_ground_truth_masks(data: Path, tmp: Path) -> str:
    from fcnlab.inference.predict import predict

    root = _folder(tmp)
    before = (root / "masks/val/c.png").read_bytes()
    overrides = ["ckpt=/never/read.ckpt", f"input={root}/images/val", f"output={root}/masks/val"]
    message = message_of(lambda: predict(make_cfg("predict", overrides, tmp / "job")))
    assert (root / "masks/val/c.png").read_bytes() == before and not (root / "masks/val/overlay").exists()
    return message


def r171_export_over_a_file_it_did_not_write(data: Path, tmp: Path) -> str:
    (tmp / "notes.txt").write_text("my notes")
    cfg = make_cfg("export", [f"ckpt={tmp}/best.ckpt", f"output={tmp}/notes.txt"], tmp / "job")
    message = message_of(lambda: export(cfg))  # refused before the checkpoint is even read
    assert (tmp / "notes.txt").read_text() == "my notes" and not (tmp / "notes.txt.json").exists()
    return message


def r172_run_folder_is_the_data_root(data: Path, tmp: Path) -> str:
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    message = message_of(lambda: tiny_train(str(data), data, "debug=fast"))
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the data
    return message


def _palette_mask(path: Path, labels: np.ndarray, colours: list[tuple[int, int, int]]) -> None:
    png = Image.fromarray(labels, mode="L").convert("P")
    png.putpalette([c for colour in colours for c in colour] + [0] * 3 * (256 - len(colours)))
    png.save(path)


def r173_palette_mask_in_colours_classes_txt_does_not_list(data: Path, tmp: Path) -> str:
    from fcnlab.data.folder import folder_samples
    from helpers.folder_data import stripes

    root = _folder(tmp, colours=True)  # sky (0, 0, 255), grass (0, 200, 0), road (90, 90, 90)
    _palette_mask(root / "masks/train/a.png", stripes(), [(0, 0, 255), (0, 200, 0), (1, 2, 3)])
    return message_of(lambda: load_sample(folder_samples(root)[0][0]))


def r174_train_val_overlap(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "splits").mkdir()
    for kind in ("images", "masks"):
        for f in (root / kind / "train").iterdir():
            f.rename(root / kind / f.name)
    (root / "splits/train.txt").write_text("a\nb\n")
    (root / "splits/val.txt").write_text("a\n")  # a leaked into validation
    return message_of(lambda: _folder_setup(root))


def r175_class_weight_nan(data: Path, tmp: Path) -> str:
    weights = "loss.class_weights=[nan," + ",".join(["1"] * 20) + "]"
    return message_of(lambda: tiny_train(str(data), tmp, weights, "debug=fast"))


def _cached_weights_warning(tmp: Path, edit: Callable[[dict], None]) -> str:
    from fcnlab.data.class_weights import CACHE_FILE, resolve_class_weights
    from fcnlab.data.folder import folder_samples

    root = _folder(tmp)
    train = folder_samples(root)[0]
    first = resolve_class_weights("median_frequency", 3, train, None, root, verbose=False)
    cache = json.loads((root / CACHE_FILE).read_text())
    edit(next(iter(cache["entries"].values())))
    (root / CACHE_FILE).write_text(json.dumps(cache))
    with pytest.MonkeyPatch.context() as patch:
        said = []
        patch.setattr("fcnlab.data.class_weights.log.warning", lambda fmt, *args: said.append(fmt % args))
        again = resolve_class_weights("median_frequency", 3, train, None, root, verbose=False)
    assert again == first and len(said) == 1  # recomputed, said once
    assert resolve_class_weights("median_frequency", 3, train, None, root, verbose=False) == first
    return said[0]


def r176_class_weights_cache_edited_by_hand(data: Path, tmp: Path) -> str:
    return _cached_weights_warning(tmp, lambda entry: entry["pixels"].__setitem__(1, -40))


def r177_class_weights_cache_of_another_class_count(data: Path, tmp: Path) -> str:
    return _cached_weights_warning(tmp, lambda entry: entry["pixels"].pop())


def _sweep_config(*overrides: str):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {"hydra": {"overrides": {"task": list(overrides)}, "job": {"config_name": "train"}}}
    )


def r178_another_sweeps_folder(data: Path, tmp: Path) -> str:
    from fcnlab.hydra_callbacks import claim_sweep_dir

    sweep = tmp / "sweep"
    claim_sweep_dir(str(sweep), _sweep_config("model=fcn32s,fcn16s", "seed=0"))
    claim_sweep_dir(str(sweep), _sweep_config("seed=0", "model=fcn32s,fcn16s", "resume=auto"))  # the same
    return message_of(lambda: claim_sweep_dir(str(sweep), _sweep_config("model=fcn8s", "seed=0")))


def r179_report_while_a_job_runs(data: Path, tmp: Path) -> str:
    import fcntl

    from fcnlab.cli.report import build_report

    fake_job(tmp / "sweep" / "0_fcn32s_seed0", "fcn32s", 0)
    running = tmp / "sweep" / "1_fcn8s_seed0"
    running.mkdir(parents=True)
    fd = os.open(running / ".fcnlab.lock", os.O_RDWR | os.O_CREAT)  # as fcnlab-train holds it
    os.write(fd, f"{os.getpid()}\n".encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            rows = build_report(tmp / "sweep", tmp / "results")
    finally:
        os.close(fd)
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "ok"), ("fcn8s", "running")]
    assert "fcn8s: still running (pid" in (tmp / "results" / "table2.md").read_text()
    lines = [line for line in said.getvalue().splitlines() if not line.startswith("info: ")]
    assert len(lines) == 1
    return lines[0].removeprefix("warning: ").replace(f"(pid {os.getpid()})", "(pid <pid>)")


def _zero_heavy_folder(tmp: Path) -> Path:
    from helpers.folder_data import make_folder, stripes

    masks = stripes(values=(0, 0, 0, 1, 2))  # mask 0 covers 8 of 12 rows: background, not "unlabelled"
    return make_folder(tmp / "f", {"train": {"a": masks, "b": masks}, "val": {"c": masks}})


def r180_reduce_zero_label_on_data_whose_zero_is_a_class(data: Path, tmp: Path) -> str:
    from fcnlab.data.folder import folder_samples

    notes: list[str] = []
    folder_samples(_zero_heavy_folder(tmp), reduce_zero_label=True, notes=notes)
    [note] = notes
    return note


def r181_images_in_a_subfolder_are_not_read(data: Path, tmp: Path) -> str:
    from fcnlab.data.folder import folder_samples

    root = _folder(tmp)
    (root / "images/train/extra").mkdir()
    Image.new("RGB", (10, 12)).save(root / "images/train/extra/d.png")
    notes: list[str] = []
    train, _, problems, _ = folder_samples(root, notes=notes)
    assert [s.id for s in train] == ["a", "b"] and problems == []
    [note] = notes
    return note


def r182_one_class(data: Path, tmp: Path) -> str:
    root = _folder(tmp)
    (root / "classes.txt").write_text("sky\n")
    return message_of(lambda: _folder_setup(root))


def r183_ctrl_c_during_convert(data: Path, tmp: Path) -> str:
    from fcnlab.cli.data import main as data_main
    from fcnlab.data import convert

    real, calls = convert.save_index_png, []

    def interrupted(labels, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C half-way through the masks
        real(labels, path)

    err, code = io.StringIO(), None
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.setattr(convert, "save_index_png", interrupted)
        try:
            data_main(["convert-voc", str(data), str(tmp / "folder")])
        except SystemExit as e:
            code = e.code
        except KeyboardInterrupt:  # what the user saw as a traceback (and would stop pytest)
            pytest.fail("Ctrl-C came out of fcnlab-data convert-voc as a raw KeyboardInterrupt")
    assert code == 130 and len(calls) == 3
    assert sorted(p.name for p in tmp.iterdir()) == []  # neither the folder nor its half-built twin
    [line] = err.getvalue().splitlines()
    return line


def _big_image_predict(tmp: Path, *extra: str, geometry: str = "faithful") -> tuple[list[str], list[str]]:
    """(errors, info lines) of fcnlab-predict on one 400x300 image with a tiny checkpoint."""
    from fcnlab.inference import predict as predict_module
    from test_predict import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp / "best.ckpt", "fcn32s", geometry)
    (tmp / "in").mkdir()
    Image.new("RGB", (400, 300), (200, 30, 30)).save(tmp / "in" / "big.png")
    overrides = [f"ckpt={ckpt}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "device=cpu", *extra]
    errors, infos = [], []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict_module, "_info", infos.append)
        patch.setattr(predict_module, "free_memory", lambda device: 2**30)  # 1 GiB free, whatever the machine
        predict_module.predict(make_cfg("predict", overrides, tmp / "job"), report=errors.append)
    return errors, infos


def r184_predict_scale_that_cannot_fit(data: Path, tmp: Path) -> str:
    errors, _ = _big_image_predict(tmp, "infer.scales=[8.0]")
    [error] = errors
    assert not (tmp / "out" / "big.png").exists()
    return error


def r185_predict_out_of_memory(data: Path, tmp: Path) -> str:
    from fcnlab.inference import predict as predict_module

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict_module, "segment", no_memory)
        errors, _ = _big_image_predict(tmp, "infer.scales=[2.0]")
    [error] = errors
    return error


def r186_predict_many_windows_says_so(data: Path, tmp: Path) -> str:
    from fcnlab.inference import budget

    slide = ["infer=slide", "infer.crop=3", "infer.stride=3", "infer.batch=4096"]  # 100 x 134 windows
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(budget, "PROGRESS_EVERY_S", 0.0)  # a progress line after every forward pass
        errors, infos = _big_image_predict(tmp, *slide, geometry="efficient")
    assert errors == [] and (tmp / "out" / "big.png").is_file()
    assert len(infos) == 1 + 4 and infos[-1].endswith("13,400/13,400 windows (100 %), about 0.0 min left")
    return infos[0]


def r187_multirun_job_error_stays_one_line(data: Path, tmp: Path) -> str:
    args = [*tiny_overrides(str(data)), "optimizer.lr=-1,0", f"hydra.sweep.dir={tmp}/sweep"]
    cmd = [sys.executable, "-m", "fcnlab.cli.train", "-m", f"paths.root_dir={tmp}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    records = [json.loads(p.read_text()) for p in sorted((tmp / "sweep").glob("*/results.json"))]
    assert [r["status"] for r in records] == ["failed", "failed"]  # the sweep went on after the first
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors[:2] == [f"error: {r['error']}" for r in records]  # each job's line, as it failed
    return proc.stderr.strip().splitlines()[-1].removeprefix("error: ")  # the sweep's last word


def r188_report_out_is_a_file(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    fake_job(tmp / "sweep" / "fcn32s_seed0", "fcn32s", 0)
    (tmp / "out.txt").write_text("")
    return message_of(lambda: build_report(tmp / "sweep", tmp / "out.txt"))


def r189_report_out_cannot_be_created(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    fake_job(tmp / "sweep" / "fcn32s_seed0", "fcn32s", 0)
    (tmp / "a_file").write_text("")
    return message_of(lambda: build_report(tmp / "sweep", tmp / "a_file" / "results"))


def r190_report_over_a_table_it_did_not_write(data: Path, tmp: Path) -> str:
    from fcnlab.cli.report import build_report

    fake_job(tmp / "sweep" / "fcn32s_seed0", "fcn32s", 0)
    (tmp / "results").mkdir()
    (tmp / "results" / "table2.md").write_text("my own table")
    message = message_of(lambda: build_report(tmp / "sweep", tmp / "results"))
    assert (tmp / "results" / "table2.md").read_text() == "my own table"
    build_report(tmp / "sweep", tmp / "results", overwrite=True)  # said so: replaced,
    build_report(tmp / "sweep", tmp / "results")  # and from then on the report's own, replaced again
    return message


def r191_sweep_folder_that_holds_no_sweep(data: Path, tmp: Path) -> str:
    from fcnlab.hydra_callbacks import claim_sweep_dir

    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("")
    return message_of(lambda: claim_sweep_dir(str(tmp / "mine"), _sweep_config("seed=0,1")))


def r192_regenerate_over_files_the_generator_did_not_write(data: Path, tmp: Path) -> str:
    from fcnlab.data.synthetic import MANIFEST, SyntheticConfig, generate

    small = SyntheticConfig(sbd_train=2, sbd_val=1, voc_val=2, voc_val_in_sbd_train=1, voc_train=1)
    small = SyntheticConfig(**{**small.__dict__, "classification_train": 20, "classification_val": 20})
    root = generate(tmp / "gen", small, workers=1)
    manifest = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps({**manifest, "version": 1}))  # as an older generator left it
    (root / "notes.txt").write_text("mine")
    message = message_of(lambda: generate(root, small, workers=1))
    assert (root / "notes.txt").read_text() == "mine"
    return message


def r193_eval_into_a_folder_with_another_eval_json(data: Path, tmp: Path) -> str:
    from fcnlab.inference.evaluate import evaluate

    (tmp / "eval.json").write_text("{}")
    cfg = make_cfg("eval", [f"ckpt={tmp}/never_read.ckpt"], tmp)
    message = message_of(lambda: evaluate(cfg))
    assert (tmp / "eval.json").read_text() == "{}"
    return message


def r194_gpu_trainer_without_a_usable_cuda(data: Path, tmp: Path) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUDA_VISIBLE_DEVICES", "")  # the suite hides GPUs anyway (conftest)
        return message_of(lambda: tiny_train(str(data), tmp, "trainer=gpu", "debug=fast"))


def r195_images_per_update_with_lightnings_accumulation(data: Path, tmp: Path) -> str:
    extra = ("+data.images_per_update=4", "data.crop_size=null", "data.scale_range=null", "scheduler=none")
    return message_of(lambda: tiny_train(str(data), tmp, *extra, "trainer.accumulate_grad_batches=2"))


def r196_unknown_float32_matmul_precision(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "float32_matmul_precision=fast", "debug=fast"))


def r197_unknown_loss_normalization(data: Path, tmp: Path) -> str:
    return message_of(lambda: tiny_train(str(data), tmp, "loss.normalize=pixel", "debug=fast"))


# A console script (``fcnlab.cli:<command>_main``) run in a child whose import of ``first`` (or of
# anything, for "*") raises KeyboardInterrupt: Ctrl-C pressed while the command is still starting.
CTRL_C_AT_IMPORT = """
import builtins, sys
import fcnlab.cli
real, first = builtins.__import__, sys.argv[2]
def pressed(name, *args, **kwargs):
    if first in ("*", name.split(".")[0]):
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = pressed
script, sys.argv = sys.argv[1], [sys.argv[1]]
getattr(fcnlab.cli, script.split(":")[1])()
"""


def ctrl_c_while_starting(script: str, first: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CTRL_C_AT_IMPORT, script, first]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=cwd)


def r198_ctrl_c_while_a_command_starts(data: Path, tmp: Path) -> str:
    proc = ctrl_c_while_starting("fcnlab.cli:train_main", "lightning", tmp)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert sorted(tmp.iterdir()) == []
    [line] = proc.stderr.splitlines()
    return line


def console_scripts() -> dict[str, str]:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_every_command_turns_ctrl_c_while_starting_into_one_line(name, tmp_path):
    """Each console script goes through fcnlab.cli's wrapper: Ctrl-C during its imports is one line."""
    script = console_scripts()[name]
    assert script.startswith("fcnlab.cli:") and script.endswith("_main"), script
    proc = ctrl_c_while_starting(script, "*", tmp_path)
    assert (proc.returncode, proc.stderr) == (130, f"interrupted; nothing half-written left in {tmp_path}\n")


CASES = {name.split("_")[0].upper(): fn for name, fn in dict(globals()).items() if re.match(r"r\d+_", name)}


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
