"""A miniature Table 2 sweep through the real Hydra multirun, then the report (slow: ~1 minute)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fcnlab.cli.report import build_report
from test_train import train_command


def run_sweep(sweep_dir: Path, data_root: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "fcnlab.cli.train",
        "-m",
        "--config-name",
        "table2",
        f"hydra.sweep.dir={sweep_dir}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        "data.generate=null",
        "data.crop_size=48",
        "data.batch_size=4",
        "data.num_workers=0",
        f"pretrain.data_root={data_root}",
        f"pretrain.output={tmp_path}/pretrained/tiny.pth",
        "pretrain.epochs=1",
        "stage_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_miniature_table2_sweep_and_report(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, tiny_data, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["fcn16s_seed0", "fcn32s_fixed_seed0", "fcn32s_long_seed0", "fcn32s_seed0", "fcn8s_seed0"]

    # Staged init: 16s from 32s's best checkpoint, 8s from 16s's; 32s-fixed/32s from the backbone.
    results = {j: json.loads((sweep / j / "results.json").read_text()) for j in jobs}
    assert results["fcn16s_seed0"]["init_from"] == str(sweep / "fcn32s_seed0/checkpoints/best.ckpt")
    assert results["fcn8s_seed0"]["init_from"] == str(sweep / "fcn16s_seed0/checkpoints/best.ckpt")
    assert results["fcn32s_seed0"]["init_from"] is None
    assert results["fcn32s_seed0"]["pretrained"] == f"{tmp_path}/pretrained/tiny.pth"
    pretrained = json.loads((tmp_path / "pretrained" / "tiny.json").read_text())["settings"]
    assert pretrained["backbone_kwargs"] == {"width_divisor": 8, "pool5_size": 3, "dropout": 0.0}  # defaults
    assert "initialised from" in (sweep / "fcn8s_seed0/table2.log").read_text()
    assert results["fcn32s_long_seed0"]["epochs"] == 3 * results["fcn32s_seed0"]["epochs"]

    out = tmp_path / "results"
    rows = build_report(sweep, out)
    assert [r["variant"] for r in rows] == ["fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s", "fcn32s_long"]
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
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
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
    assert capsys.readouterr().err.splitlines() == [f"warning: {said}"]
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "ok"), ("fcn8s", "failed")]
    assert f"- fcn8s: {said}" in (tmp_path / "results" / "table2.md").read_text()
