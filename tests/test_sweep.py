"""A miniature Table 2 sweep through the real Hydra multirun, then the report (slow: ~1 minute)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fcnlab.cli.report import build_report
from helpers.hang import HANG_GUARD_S
from test_train import train_command


def run_sweep(
    sweep_dir: Path, data_root: str, tmp_path: Path, *extra: str, config: str = "table2"
) -> subprocess.CompletedProcess:
    """The ``config`` multirun on the tiny data: one epoch of pretraining, one of each stage, 3 batches."""
    cmd = [
        sys.executable,
        "-m",
        "fcnlab.cli.train",
        "-m",
        "--config-name",
        config,
        f"hydra.sweep.dir={sweep_dir}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        "data.generate=null",
        "data.crop_size=48",
        "data.batch_size=4",
        "data.num_workers=0",
        f"pretrain.data_root={data_root}",
        "pretrain.epochs=1",
        "stage_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)


@pytest.fixture(scope="module")
def table2_sweep(tiny_data, tmp_path_factory) -> Path:
    """The miniature Table 2 sweep (all five rows, one seed), run once for this module's tests."""
    root = tmp_path_factory.mktemp("table2")
    proc = run_sweep(root / "sweep", tiny_data, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep"


@pytest.mark.slow
def test_miniature_table2_sweep_and_report(table2_sweep, tmp_path):
    sweep = table2_sweep
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [
        "fcn16s_seed0",
        "fcn32s_fixed_seed0",
        "fcn32s_long_seed0",
        "fcn32s_mid_seed0",
        "fcn32s_seed0",
        "fcn8s_seed0",
    ]

    # Staged init: 16s from 32s's best checkpoint, 8s from 16s's; 32s-fixed/32s from the backbone;
    # the control chain 32s -> mid -> long the same way.
    results = {j: json.loads((sweep / j / "results.json").read_text()) for j in jobs}
    assert results["fcn16s_seed0"]["init_from"] == str(sweep / "fcn32s_seed0/checkpoints/best.ckpt")
    assert results["fcn8s_seed0"]["init_from"] == str(sweep / "fcn16s_seed0/checkpoints/best.ckpt")
    assert results["fcn32s_seed0"]["init_from"] is None
    assert results["fcn32s_seed0"]["pretrained"] == f"{sweep.parent}/data/pretrained/vgg16_tiny_shapes.pth"
    pretrained = json.loads((sweep.parent / "data/pretrained/vgg16_tiny_shapes.json").read_text())["settings"]
    assert pretrained["backbone_kwargs"] == {"width_divisor": 8, "pool5_size": 3, "dropout": 0.0}  # defaults
    assert "initialised from" in (sweep / "fcn8s_seed0/table2.log").read_text()
    assert results["fcn32s_mid_seed0"]["init_from"] == str(sweep / "fcn32s_seed0/checkpoints/best.ckpt")
    assert results["fcn32s_long_seed0"]["init_from"] == str(sweep / "fcn32s_mid_seed0/checkpoints/best.ckpt")
    assert {r["epochs"] for r in results.values()} == {results["fcn32s_seed0"]["epochs"]}  # one stage each
    # Two lanes (table2_shapes): waves 32s-fixed, 32s | 16s, mid | 8s, long ran side by side, 1 thread each.
    start = {j: (sweep / j / ".hydra/config.yaml").stat().st_mtime for j in jobs}
    end = {j: (sweep / j / "results.json").stat().st_mtime for j in jobs}
    for child, parent in [("fcn16s", "fcn32s"), ("fcn8s", "fcn16s"), ("fcn32s_mid", "fcn32s")]:
        assert end[f"{parent}_seed0"] <= start[f"{child}_seed0"], (child, parent)  # waves: parent first
    for a, b in [("fcn32s", "fcn32s_fixed"), ("fcn16s", "fcn32s_mid"), ("fcn8s", "fcn32s_long")]:
        assert start[f"{a}_seed0"] < end[f"{b}_seed0"] and start[f"{b}_seed0"] < end[f"{a}_seed0"], (a, b)
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # table2_shapes: lanes 2
    assert results["fcn8s_seed0"]["hardware"].endswith(f" {threads} threads")

    out = tmp_path / "results"
    rows = build_report(sweep, out)
    assert [r["variant"] for r in rows] == [
        "fcn32s_fixed",
        "fcn32s",
        "fcn16s",
        "fcn8s",
        "fcn32s_mid",
        "fcn32s_long",
    ]
    with (out / "table2.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == [r["variant"] for r in rows]
    assert {"pixel_acc", "mean_acc", "mean_iu", "fw_iu", "paper_mean_iu", "status"} <= set(table[0])
    assert float(table[3]["paper_mean_iu"]) == 62.7 and all(r["status"] == "ok" for r in table)
    expected = results["fcn8s_seed0"]["metrics"]["mean_iu"] * 100
    assert float(table[3]["mean_iu"]) == pytest.approx(expected, abs=0.01)
    md = (out / "table2.md").read_text()
    assert "fcn32s_long" in md and "ordering" in md
    for png in ("table2_metrics.png", "table2_per_class_iu.png", "table2_curves.png", "table2_figure4.png"):
        assert (out / png).stat().st_size > 1000, png


@pytest.mark.slow
def test_each_job_writes_figure4_panels_of_its_best_checkpoint(table2_sweep):
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import tv_tensors

    from fcnlab.data.loading import load_sample
    from fcnlab.data.transforms import eval_transform
    from fcnlab.data.voc import protocol_samples
    from fcnlab.training import load_module

    jobs = sorted(p for p in table2_sweep.iterdir() if p.is_dir())
    indexes = {j.name: json.loads((j / "figure4/index.json").read_text()) for j in jobs}
    ids = indexes["fcn8s_seed0"]["ids"]
    assert len(ids) == 4 and all(ix["ids"] == ids for ix in indexes.values())  # one image set per sweep
    record = json.loads((jobs[0] / "results.json").read_text())
    _, val, _ = protocol_samples(record["data_root"], record["protocol"])
    by_id = {s.id: s for s in val[:40]}
    classes = {i: len(load_sample(s)[1].unique()) for i, s in by_id.items()}
    assert set(ids) <= set(by_id)  # from the first 40 val images, those with the most classes
    assert min(classes[i] for i in ids) >= max(c for i, c in classes.items() if i not in ids)
    for job in jobs:
        index, best = indexes[job.name], json.loads((job / "results.json").read_text())["best_checkpoint"]
        assert index["checkpoint"] == best and index["class_names"] == record["class_names"]
        module = load_module(best).eval()
        for i in ids:
            image, mask = load_sample(by_id[i])
            with Image.open(job / f"figure4/pred_{i}.png") as png:
                assert png.mode == "P"
                pred = np.asarray(png)
            x = eval_transform(module.input_space)(tv_tensors.Image(image)).as_subclass(torch.Tensor)
            with torch.inference_mode():
                expected = module(x[None]).argmax(1)[0].numpy()
            np.testing.assert_array_equal(pred, expected, err_msg=f"{job.name} {i}")
            truth = np.asarray(Image.open(job / f"figure4/truth_{i}.png"))
            np.testing.assert_array_equal(truth, mask.numpy())
            rgb = np.asarray(Image.open(job / f"figure4/image_{i}.png"))
            np.testing.assert_array_equal(rgb, image.permute(1, 2, 0).numpy())


BLOCK_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "torchmetrics", "lightning", "lightning_fabric"):
            raise ImportError(f"the report imported {name}")
        return None

sys.meta_path.insert(0, BlockTorch())
from fcnlab.cli.report import main

main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "torchvision"))
assert not leaked, leaked
"""


@pytest.mark.slow
def test_report_builds_without_torch_or_lightning(table2_sweep, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-c", BLOCK_TORCH, str(table2_sweep), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fcn8s |" in proc.stdout and "info:" not in proc.stderr
    for name in ("table2.md", "table2.csv", "table2_metrics.png", "table2_curves.png", "table2_figure4.png"):
        assert (out / name).stat().st_size > 100, name


@pytest.mark.slow
def test_report_of_a_sweep_without_figure4_writes_the_table(table2_sweep, tmp_path, capsys):
    old = tmp_path / "old_sweep"  # as a run from before jobs wrote their panels
    shutil.copytree(table2_sweep, old, ignore=shutil.ignore_patterns("figure4", "checkpoints"))
    rows = build_report(old, tmp_path / "results")
    assert [r["status"] for r in rows] == ["ok"] * 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"info: Figure 4 skipped: {old}/fcn32s_seed0/figure4 is missing or unreadable (a run from before "
        "fcnlab-train wrote prediction panels; retrain it to get the grid)"
    ]
    with (tmp_path / "results/table2.csv").open() as f:
        assert [r["variant"] for r in csv.DictReader(f)] == [r["variant"] for r in rows]
    md = (tmp_path / "results/table2.md").read_text()
    assert "| fcn8s |" in md and "table2_figure4.png" not in md
    assert not (tmp_path / "results/table2_figure4.png").exists()
    assert (tmp_path / "results/table2_curves.png").is_file()


@pytest.mark.slow
def test_stage_without_parent_fails_clearly_and_report_marks_it(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, tiny_data, tmp_path, "model=fcn16s")
    assert proc.returncode != 0
    record = json.loads((sweep / "fcn16s_seed0/results.json").read_text())
    assert record["status"] == "failed"
    assert "fcn32s_seed0/checkpoints/best.ckpt: no such file" in record["error"]
    assert not (sweep / "fcn16s_seed0/checkpoints").exists()  # never trained from scratch
    rows = build_report(sweep, tmp_path / "results")
    assert rows[0]["variant"] == "fcn16s" and rows[0]["status"] == "failed"
    assert "Failed rows" in (tmp_path / "results/table2.md").read_text()


@pytest.mark.slow
def test_optuna_lr_search_runs_two_trials_and_reports_the_best(tiny_data, tmp_path):
    sweep = tmp_path / "lr_search"
    search = ["--config-name", "lr_search", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]
    limits = ["stage_epochs=1", "trainer.limit_train_batches=3"]
    cmd = train_command(tiny_data, tmp_path, *limits, multirun=True)
    cmd[4:4] = search  # --config-name comes before the overrides
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [json.loads((sweep / f"trial{i}" / "results.json").read_text()) for i in (0, 1)]
    params = [yaml.safe_load((sweep / f"trial{i}/.hydra/overrides.yaml").read_text()) for i in (0, 1)]
    lrs = [float(next(o for o in p if o.startswith("optimizer.lr=")).split("=")[1]) for p in params]
    assert lrs[0] != lrs[1] and all(1e-4 <= lr <= 3e-2 for lr in lrs)  # sampled, in the search space
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["metrics"]["mean_iu"] for t in trials))
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay"}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json at all", "invalid JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"seed": 0, "status": "ok"}', 'no "variant"'),
    ],
)
def test_report_skips_and_names_a_damaged_results_file(content, why, tmp_path, capsys):
    from test_reliability import fake_job

    sweep = tmp_path / "sweep"
    fake_job(sweep / "fcn32s_seed0", "fcn32s", 0)
    fake_job(sweep / "fcn8s_seed0", "fcn8s", 0)
    damaged = sweep / "fcn8s_seed0" / "results.json"
    damaged.write_text(content)
    rows = build_report(sweep, tmp_path / "results")
    said = f"{damaged}: not a results record ({why}); skipped, its row is marked failed"
    warnings = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("info: ")]
    assert warnings == [f"warning: {said}"]  # (the info line: no Figure-4 panels in these fake jobs)
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "ok"), ("fcn8s", "failed")]
    assert f"- fcn8s: {said}" in (tmp_path / "results" / "table2.md").read_text()
