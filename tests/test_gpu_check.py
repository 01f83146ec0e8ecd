"""make gpu-check: one line and exit 0 without CUDA; a precision off true fp32 fails it; every step runs
(on the CPU, tiny)."""

from __future__ import annotations

import json

import pytest
import torch

from fcnlab.bench import gpu_check
from fcnlab.cli.gpu_check import main


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path / "gpu.json")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing measured"
    ]
    assert not err and not (tmp_path / "gpu.json").exists()


@pytest.mark.parametrize(("experiment", "fails"), [("table2_voc", True), ("table2_voc_heavy", False)])
def test_a_precision_off_true_fp32_fails_the_preset_that_ships_it(experiment, fails, tmp_path, monkeypatch):
    """bf16 5% off true fp32 on the score_fr update: the paper preset (bf16-mixed) fails the check; the
    heavy one (fp32) only reports it. TF32 within 0.1% agrees."""
    start = torch.randn(21, 8)
    torch.save({"state_dict": {"model.score_fr.weight": start}}, tmp_path / "init.ckpt")
    update = torch.randn(21, 8) * 1e-3
    off = {"fp32": 1.0, "tf32": 1.001, "bf16": 1.05}

    def fake_run(plan, work, data, name, experiment, steps, *args):
        mode = name.rsplit("_", 1)[1]
        (work / name / "checkpoints").mkdir(parents=True)
        state = {"model.score_fr.weight": start + update * off[mode]}
        torch.save({"state_dict": state}, work / name / "checkpoints" / "last.ckpt")
        return {"losses": [6.0e5, 5.9e5]}

    monkeypatch.setattr(gpu_check, "run", fake_run)
    plan = gpu_check.Plan.smoke()
    if fails:
        with pytest.raises(gpu_check.CheckFailed, match="table2_voc: its precision, bf16, is off true fp32"):
            gpu_check.compare(plan, tmp_path, tmp_path, experiment, tmp_path / "init.ckpt")
        return
    verdict = gpu_check.compare(plan, tmp_path, tmp_path, experiment, tmp_path / "init.ckpt")
    assert verdict["tf32"]["agrees"] and verdict["tf32"]["update"] == pytest.approx(1e-3, rel=1e-2)
    assert not verdict["bf16"]["agrees"] and verdict["bf16"]["update"] == pytest.approx(0.05, rel=1e-2)
    assert verdict["bf16"]["loss"] == 0


@pytest.mark.slow
def test_smoke_runs_every_step_through_the_trainers_path(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert main(["--smoke", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    plan = gpu_check.Plan.smoke()
    for run, steps in (("heavy", plan.steps[0]), ("paper", plan.steps[1])):
        assert figures[run]["steps"] == steps and figures[run]["iterations_timed"] == steps - plan.warmup
        assert figures[run]["images_per_s"] > 0 and 0 < figures[run]["busy_share"] <= 1
        assert 0 <= figures[run]["data_wait_share"] < 1
    for name in ("heavy_precision", "paper_precision"):  # CPU autocast to bf16 really changes the numbers
        assert figures[name]["bf16"]["update"] > 0 and figures[name]["bf16"]["agrees"] is True
    assert all(figures[m]["steps"] == plan.steps[3] for m in ("fcn16s", "fcn8s", "fcn8s_atonce", "ddp"))
    assert figures["eval"]["images"] == 2 and figures["eval"]["seconds"] > 0
    assert not torch.distributed.is_initialized()  # the DDP run's process group is gone
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if line.startswith(("table2_voc", "fcnlab-eval", "figures"))]
    assert len(lines) == 2 + 2 + 4 + 1 + 1 and lines[-1] == f"figures written to {out}"
