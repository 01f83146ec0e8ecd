"""Hydra's submitit launcher: the SLURM preset's job script, and a real sweep through submitit_local."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from helpers.hang import HANG_GUARD_S
from test_train import train_command


def tiny_job(data_root: str, tmp_path: Path, *extra: str) -> list[str]:
    return train_command(data_root, tmp_path, "trainer.max_epochs=1", *extra, multirun=True)


def test_slurm_preset_writes_the_job_script_from_the_cluster_section(tiny_data, tmp_path):
    # No cluster here: stand-in `srun`/`sbatch` on PATH; sbatch keeps the script it is given and refuses.
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    for name, body in {"srun": "exit 0", "sbatch": f'cp "${{@: -1}}" {script}; exit 1'}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    cmd = tiny_job(
        tiny_data,
        tmp_path,
        "hydra/launcher=submitit_slurm",
        "trainer=ddp",
        "model=fcn32s,fcn16s",
        "cluster.partition=gpu",
        "cluster.account=lab",
        "cluster.gpus_per_node=4",
        "cluster.nodes=2",
        "cluster.timeout_min=90",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path, env=env)
    assert proc.returncode != 0 and script.is_file(), proc.stderr[-2000:]
    text = script.read_text()
    for line in (
        "--partition=gpu",
        "--account=lab",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--nodes=2",
        "--time=90",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--signal=USR2@120",
        "--array=0-1%2",
        f"--output={tmp_path}/sweep/.submitit/",
    ):
        assert f"#SBATCH {line}" in text, line
    assert "srun" in text and "submitit.core._submit" in text


@pytest.mark.slow
def test_submitit_local_runs_a_sweep_job_in_its_own_process(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = tiny_job(
        tiny_data, tmp_path, "hydra/launcher=submitit_local", "model=fcn32s", f"hydra.sweep.dir={sweep}"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((sweep / "0_fcn32s_seed0" / "results.json").read_text())
    assert results["status"] == "ok" and results["metrics"]["mean_iu"] > 0
    (job,) = [p for p in (sweep / ".submitit").iterdir() if p.name != "%j"]
    assert list(job.glob("*_result.pkl")) and list(job.glob("*_log.out"))  # submitit ran it, not Hydra
