"""Kill a real training process with SIGKILL mid-epoch, run the same command again: same final numbers.

Also: a killed sweep re-run with the same ``hydra.sweep.dir`` skips its finished jobs, and the same seed
gives the same metrics twice.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.training.run import train
from helpers.hang import HANG_GUARD_S
from test_train import make_cfg, tiny_overrides, train_command

HELPERS = Path(__file__).parent / "helpers"


def train_cmd(
    data_root: str, tmp_path: Path, *extra: str, multirun: bool = False, default_loader: bool = False
) -> list[str]:
    # scheduler=poly: its state must come back too
    cmd = train_command(data_root, tmp_path, "scheduler=poly", *extra, multirun=multirun)
    # default_loader: data.num_workers as a user gets it (null: half the cores, persistent workers)
    return [a for a in cmd if a != "data.num_workers=0"] if default_loader else cmd


def start(cmd: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{HELPERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = HANG_GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before the kill point:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = HANG_GUARD_S) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def step_of(marker: Path) -> int:
    try:
        return int(marker.read_text())
    except (OSError, ValueError):
        return -1


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_gives_identical_results(tiny_data, tmp_path):
    # 24 training images, batch 4: 6 steps an epoch; last.ckpt is written at step 6, the kill lands at 9.
    common = [
        "model=fcn16s",
        "optimizer=adam",
        "trainer.max_epochs=3",
        "+callbacks.marker._target_=step_marker.StepMarker",
    ]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    marker = tmp_path / "step"
    cmd = train_cmd(
        tiny_data,
        tmp_path,
        *common,
        f"hydra.run.dir={killed}",
        f"+callbacks.marker.path={marker}",
        "+callbacks.marker.hold_at=9",  # the run waits there to be killed (once: the rerun goes on)
        default_loader=True,
    )
    proc = start(cmd, tmp_path)
    wait_for(lambda: step_of(marker) >= 9, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (killed / "checkpoints" / "last.ckpt").is_file() and not (killed / "results.json").exists()
    assert (killed / ".fcnlab.lock").is_file()  # left by the dead process: the rerun takes it over

    resumed = finish(start(cmd, tmp_path))
    assert "resuming from" in resumed
    uninterrupted = finish(
        start(
            train_cmd(
                tiny_data,
                tmp_path,
                *common,
                f"hydra.run.dir={clean}",
                f"+callbacks.marker.path={tmp_path / 'clean_step'}",
                "+callbacks.marker.pause=0",
                default_loader=True,
            ),
            tmp_path,
        )
    )
    assert "resuming" not in uninterrupted

    a = json.loads((killed / "results.json").read_text())
    b = json.loads((clean / "results.json").read_text())
    assert a["resumed_from"].endswith("last.ckpt") and b["resumed_from"] is None
    assert a["steps"] == b["steps"] == 18
    assert a["metrics"] == b["metrics"]  # exactly, not approximately
    assert a["confusion"] == b["confusion"]
    wa = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    wb = torch.load(clean / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wb), "final weights differ after resume"
    # the resumed run's curves keep the epochs before the kill, and the replayed steps appear once
    rows_a, rows_b = csv_rows(killed), csv_rows(clean)
    # one validation row per epoch, then the best checkpoint's re-validation after the fit
    assert [r["epoch"] for r in rows_a if r["val/loss"]] == ["0", "1", "2", "3"]
    assert rows_a == rows_b


@pytest.mark.slow
def test_killed_sweep_rerun_skips_finished_jobs(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = train_cmd(
        tiny_data,
        tmp_path,
        "model=fcn32s,fcn16s",
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${stage.variant}",
        "+callbacks.marker._target_=step_marker.StepMarker",
        "+callbacks.marker.path=${paths.output_dir}/step",
        "+callbacks.marker.pause=0",
        "+callbacks.marker.hold_at=8",  # fcn16s waits in its epoch 2 to be killed (once: the rerun goes on)
        "+callbacks.marker.hold_if=/fcn16s/",
        multirun=True,
    )
    proc = start(cmd, tmp_path)
    first = sweep / "fcn32s" / "results.json"
    wait_for(lambda: first.exists() and step_of(sweep / "fcn16s" / "step") >= 8, proc)  # in its epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (sweep / "fcn16s" / "results.json").exists()
    before = first.stat().st_mtime_ns

    out = finish(start(cmd, tmp_path))
    assert "already finished" in out and out.count("already finished") == 1
    assert "resuming from" in out  # the second job continues from its last checkpoint
    assert first.stat().st_mtime_ns == before  # the finished job was not redone
    second = json.loads((sweep / "fcn16s" / "results.json").read_text())
    assert second["status"] == "ok" and second["steps"] == 12


def test_same_seed_same_metrics_and_the_run_is_recorded(tiny_data, tmp_path):
    runs = []
    for name in ("a", "b"):
        overrides = tiny_overrides(tiny_data, "model=fcn32s", "trainer.max_epochs=1", "seed=7")
        runs.append(train(make_cfg("train", overrides, tmp_path / name)))
    a, b = runs
    assert a["metrics"] == b["metrics"] and a["confusion"] == b["confusion"]
    assert a["seed"] == 7 and a["versions"]["torch"] == torch.__version__ and a["git_sha"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["seed"] == 7 and saved["versions"] == a["versions"] and saved["git_sha"] == a["git_sha"]


class _AtEpoch:
    def __init__(self, epoch: int) -> None:
        self.current_epoch = epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epochs_batches_depend_on_seed_and_epoch_only(tiny_data, workers):
    def batches(epoch: int, num_workers: int) -> list[torch.Tensor]:
        dm = SegmentationDataModule(
            tiny_data, crop_size=48, scale_range=(0.5, 1.5), batch_size=4, num_workers=num_workers, seed=5
        )
        dm.trainer = _AtEpoch(epoch)
        dm.setup("fit")
        torch.manual_seed(epoch * 77 + num_workers)  # the global RNG's state must not matter
        return [images for images, _ in dm.train_dataloader()]

    reference = batches(1, 0)
    assert all(torch.equal(a, b) for a, b in zip(reference, batches(1, workers), strict=True))
    assert not torch.equal(reference[0], batches(2, workers)[0])  # a new epoch, new order and crops
