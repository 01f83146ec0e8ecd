"""make gpu-check: one line and exit 0 without CUDA; the bf16 verdict; every step runs (on the CPU, tiny)."""

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


def test_bf16_verdict_needs_losses_and_scoring_update_to_agree():
    fp32, update = [6.0e5, 5.5e5, 5.0e5], torch.full((21, 8), 1e-6)
    close = gpu_check.compare_precisions(fp32, [6.003e5, 5.49e5, 5.0e5, 1.0], update, update * 1.01)
    assert close["steps"] == 3 and close["loss_max_rel_diff"] == pytest.approx(1e3 / 5.5e5)
    assert close["update_rel_diff"] == pytest.approx(0.01, rel=1e-4) and close["bf16_safe"] is True
    far_loss = gpu_check.compare_precisions(fp32, [6.0e5, 5.5e5, 5.2e5], update, update)
    assert far_loss["loss_max_rel_diff"] == pytest.approx(0.04) and far_loss["bf16_safe"] is False
    far_update = gpu_check.compare_precisions(fp32, fp32, update, update * 1.05)
    assert far_update["loss_max_rel_diff"] == 0 and far_update["bf16_safe"] is False
    with pytest.raises(gpu_check.CheckFailed, match="no losses"):
        gpu_check.compare_precisions([], [], update, update)
    with pytest.raises(gpu_check.CheckFailed, match="did not move"):
        gpu_check.compare_precisions(fp32, fp32, update * 0, update)


@pytest.mark.slow
def test_smoke_runs_every_step_through_the_entry_points(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert main(["--smoke", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    plan = gpu_check.Plan.smoke()
    for run in ("heavy", "paper"):
        assert figures[run]["images_per_s"] > 0 and figures[run]["ms_per_iteration"] > 0
    assert figures["heavy"]["iterations_timed"] == plan.heavy_steps - plan.warmup
    assert figures["paper"]["iterations_timed"] == plan.paper_updates - plan.warmup
    assert figures["heavy"]["precision"] == "32-true"
    comparison = figures["bf16_vs_fp32"]
    assert comparison["steps"] == plan.compare_steps
    assert comparison["update_rel_diff"] > 0  # CPU autocast to bf16 really changed the numerics
    assert figures["eval"]["images"] == 2 and figures["eval"]["seconds"] > 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and printed[-1] == f"figures written to {out}"
