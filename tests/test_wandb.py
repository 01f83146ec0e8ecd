"""logger=wandb, offline: one run per job with config, metrics, tables and mask overlays; a sweep is one
group, the report a run of that group; and the progress display chosen for the terminal."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from lightning import Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from fcnlab.training.callbacks import (
    EpochLineProgressBar,
    EpochSummaryLogger,
    interactive_terminal,
    progress_callbacks,
)
from fcnlab.training.run import train
from fcnlab.wandb_runs import finish_wandb, sweep_group
from helpers.hang import HANG_GUARD_S
from test_train import make_cfg, tiny_overrides, train_command


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """wandb offline, silent, and writing its caches and settings into this test's tmp dir only."""
    home = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home))
    yield home
    finish_wandb()  # never leave a run open for the next test


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``run-*.wandb`` file (LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), path
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer / padding
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def read_run(run_dir: Path) -> dict:
    """Run id, name, group, merged config and summary (top-level keys) of an offline run dir."""
    (path,) = run_dir.glob("run-*.wandb")
    out: dict = {"config": {}, "summary": {}, "history_keys": set(), "exit": False}

    def merge(target: dict, items) -> None:
        for item in items:
            keys = list(item.nested_key) or [item.key]
            node = target
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = json.loads(item.value_json)

    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group)
            merge(out["config"], record.run.config.update)
        elif kind == "config":
            merge(out["config"], record.config.update)
        elif kind == "summary":
            merge(out["summary"], record.summary.update)
        elif kind == "history":
            out["history_keys"] |= {(list(i.nested_key) or [i.key])[0] for i in record.history.item}
        elif kind == "exit":
            out["exit"] = True
    return out


def run_dirs(job_dir: Path) -> list[Path]:
    return sorted((job_dir / "wandb").glob("offline-run-*"))


def test_offline_run_holds_config_metrics_tables_and_overlays(offline_wandb, tiny_data, tmp_path, caplog):
    overrides = [
        "logger=wandb",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=3",
        "trainer.log_every_n_steps=1",
        "callbacks.wandb_media.every_n_epochs=1",
        "callbacks.wandb_media.num_images=2",
    ]
    job = tmp_path / "job"
    cfg = make_cfg("train", tiny_overrides(tiny_data, *overrides), job)
    with caplog.at_level("INFO", logger="fcnlab.train"):
        results = train(cfg)
        command = finish_wandb()
    (run_dir,) = run_dirs(job)
    assert command == f"wandb sync {run_dir}"
    assert f"upload it with: wandb sync {run_dir}" in caplog.text
    assert "epoch 2/2: train/loss" in caplog.text and "val/mean_iu" in caplog.text  # the epoch lines

    run = read_run(run_dir)
    assert run["exit"] and run["name"] == "fcn8s_seed0" and run["group"] == "train"
    config = run["config"]
    assert config["stage"]["variant"] == "fcn8s" and config["seed"] == 0  # the whole resolved job config
    assert config["optimizer"]["lr"] == cfg.optimizer.lr and config["data"]["root"] == tiny_data
    summary = run["summary"]
    for metric, value in results["metrics"].items():
        assert summary[f"best/{metric}"] == pytest.approx(value)  # the best checkpoint's = results.json
        assert f"val/{metric}" in summary
    logged = {"train/loss_step", "train/loss_epoch", "val/loss", "val_iu/background"}
    logged |= {"val/per_class_iu", "val/predictions", "val/confusion_heatmap", "best/per_class_iu"}
    assert logged <= run["history_keys"], logged - run["history_keys"]

    files = run_dir / "files"

    def media(kind: str, prefix: str, name: str) -> list[Path]:
        return sorted((files / "media" / kind / prefix).glob(f"{name}_*"))

    for prefix, count in (("val", 2), ("best", 1)):  # every epoch (every_n_epochs=1), then the best
        assert len(media("table", prefix, "per_class_iu")) == count
        assert len(media("table", prefix, "confusion_matrix_table")) == count
        assert len(media("images", prefix, "confusion_heatmap")) == count
        assert len(media("images", prefix, "predictions")) == 2 * count  # num_images=2 overlays
        assert len(media("images/mask", prefix, "predictions")) == 2 * 2 * count  # truth + prediction
    per_class = json.loads(media("table", "best", "per_class_iu")[0].read_text())
    assert per_class["columns"] == ["epoch", "class", "iu"] and len(per_class["data"]) == 21
    ius = {name: iu for _, name, iu in per_class["data"]}
    assert ius["background"] == pytest.approx(results["per_class_iu"]["background"])
    confusion = json.loads(media("table", "best", "confusion_matrix_table")[0].read_text())
    assert confusion["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert len(confusion["data"]) == 21 * 21
    assert sum(row[2] for row in confusion["data"]) == sum(map(sum, results["confusion"]))
    labels = config["_wandb"]["mask/class_labels"]
    assert {"void", "background"} <= set(next(iter(labels.values()))["value"].values())


def test_wandb_media_leaves_the_metrics_alone(offline_wandb, tiny_data, tmp_path):
    overrides = ["trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
    plain = train(make_cfg("train", tiny_overrides(tiny_data, *overrides), tmp_path / "csv"))
    media = ["logger=wandb", "callbacks.wandb_media.every_n_epochs=1", "callbacks.wandb_media.num_images=2"]
    logged = train(make_cfg("train", tiny_overrides(tiny_data, *overrides, *media), tmp_path / "wandb"))
    assert logged["metrics"] == plain["metrics"] and logged["confusion"] == plain["confusion"]


def test_a_second_job_in_one_process_gets_its_own_run(offline_wandb, tiny_data, tmp_path):
    import wandb

    overrides = ["logger=wandb", "debug=limit", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    train(make_cfg("train", tiny_overrides(tiny_data, *overrides, "model=fcn32s"), tmp_path / "a"))
    assert wandb.run is not None  # train() alone leaves it open (main() finishes it) ...
    train(make_cfg("train", tiny_overrides(tiny_data, *overrides, "model=fcn16s"), tmp_path / "b"))
    finish_wandb()  # ... and the next job's logger finishes it instead of logging into it
    a, b = (read_run(run_dirs(tmp_path / j)[0]) for j in "ab")
    assert a["id"] != b["id"] and (a["name"], b["name"]) == ("fcn32s_seed0", "fcn16s_seed0")
    assert a["exit"] and b["exit"]


@pytest.mark.slow
def test_multirun_is_one_group_of_runs_and_report_joins_it(offline_wandb, tiny_data, tmp_path):
    from fcnlab.cli.report import main as report_main

    sweep = tmp_path / "sweep"
    extra = ["model=fcn32s,fcn16s", "logger=wandb", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1"]
    extra += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
    extra += ["callbacks.wandb_media.num_images=1"]
    cmd = train_command(tiny_data, tmp_path, *extra, multirun=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0_fcn32s_seed0", "1_fcn16s_seed0"]
    runs = []
    for job in jobs:
        (run_dir,) = run_dirs(job)
        assert f"wandb sync {run_dir}" in proc.stdout
        runs.append(read_run(run_dir))
    assert [r["name"] for r in runs] == ["fcn32s_seed0", "fcn16s_seed0"]
    assert runs[0]["id"] != runs[1]["id"] and all(r["exit"] for r in runs)
    assert runs[0]["group"] == runs[1]["group"] == sweep_group("train", sweep) == "train-sweep"
    assert "best/mean_iu" in runs[1]["summary"]

    report_main([str(sweep), "--out", str(tmp_path / "results"), "--wandb"])
    (report_dir,) = run_dirs(sweep)
    report = read_run(report_dir)
    assert report["name"] == "train-report" and report["group"] == runs[0]["group"] and report["exit"]
    table = json.loads(next((report_dir / "files/media/table").glob("table2_*.table.json")).read_text())
    assert [row[0] for row in table["data"]] == ["fcn32s", "fcn16s"]
    assert len(list((report_dir / "files/media/images").rglob("*.png"))) >= 3
    report_main([str(sweep), "--out", str(tmp_path / "again")])  # the report run's folder is no job
    assert "| wandb |" not in (tmp_path / "again/table2.md").read_text()


def test_progress_display_suits_the_terminal(monkeypatch):
    kinds = [type(c) for c in progress_callbacks(True, interactive=True)]
    assert kinds == [RichProgressBar, EpochSummaryLogger]
    assert [type(c) for c in progress_callbacks(True, interactive=False)] == [EpochLineProgressBar]
    assert not any(isinstance(c, ProgressBar) for c in progress_callbacks(False, interactive=True))

    trainer = Trainer(logger=False, enable_progress_bar=True, callbacks=progress_callbacks(True, False))
    assert isinstance(trainer.progress_bar_callback, EpochLineProgressBar)  # no tqdm/rich bar added
    trainer = Trainer(logger=False, enable_progress_bar=False, callbacks=progress_callbacks(False, True))
    assert trainer.progress_bar_callback is None

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.delenv("CI", raising=False)
    assert interactive_terminal()
    monkeypatch.setenv("CI", "true")
    assert not interactive_terminal()
    monkeypatch.setenv("CI", "false")
    assert interactive_terminal()


def test_tables_masks_and_keys_carry_the_users_class_names(offline_wandb, tiny_data, tmp_path):
    from test_train import USER_CLASSES, class_overrides

    overrides = ["logger=wandb", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    overrides += ["trainer.limit_val_batches=2", "callbacks.wandb_media.num_images=1", *class_overrides()]
    job = tmp_path / "job"
    results = train(make_cfg("train", tiny_overrides(tiny_data, *overrides), job))
    finish_wandb()
    (run_dir,) = run_dirs(job)
    run = read_run(run_dir)
    (table,) = sorted((run_dir / "files/media/table/best").glob("per_class_iu_*"))
    per_class = json.loads(table.read_text())
    assert [name for _, name, _ in per_class["data"]] == USER_CLASSES
    ius = {name: iu for _, name, iu in per_class["data"]}
    want = {n: None if v != v else pytest.approx(v) for n, v in results["per_class_iu"].items()}  # nan: None
    assert ius == want
    labels = next(iter(run["config"]["_wandb"]["mask/class_labels"].values()))["value"]
    assert [labels[str(i)] for i in range(21)] == USER_CLASSES and labels["255"] == "void"
    assert "val_iu/background" in run["history_keys"]
    assert all(key.count("/") <= 1 for key in run["history_keys"])  # no class name nests a panel


def test_report_run_holds_iu_per_variant_under_the_runs_class_names(offline_wandb, tmp_path):
    from fcnlab.reporting.table import collect, summarize
    from fcnlab.reporting.wandb_report import log_to_wandb
    from test_report import fake_sweep

    names = ["background", "road / sidewalk", "café"]
    sweep = fake_sweep(
        tmp_path / "sweep", {"fcn32s_seed0": names, "fcn32s_seed1": names, "fcn8s_seed0": names}
    )
    out = tmp_path / "report"
    out.mkdir()
    log_to_wandb(sweep, out, summarize(collect(sweep)))
    (run_dir,) = run_dirs(sweep)
    (table,) = (run_dir / "files/media/table").glob("per_class_iu_*.table.json")
    data = json.loads(table.read_text())["data"]
    assert [row[:2] for row in data] == [[v, n] for v in ("fcn32s", "fcn8s") for n in names]
    assert [row[2] for row in data] == pytest.approx([0.0, 10.0, 20.0] * 2)  # fake_sweep: IU (k % 10) / 10
