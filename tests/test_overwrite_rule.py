"""Issue 26's rule through the real commands: nothing replaced that a command did not write, no run
folder in the data, a sweep folder belongs to one sweep, Ctrl-C is one line (the library-level cases
and their messages are rows of docs/reliability.md, tests/test_reliability.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fcnlab.hydra_callbacks import SWEEP_RECORD
from test_train import train_command

HELPERS = Path(__file__).parent / "helpers"


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{HELPERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_folder_in_the_data_is_refused_before_hydra_writes_there(tiny_data, tmp_path):
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    before = files(data)
    folder = data / "VOCdevkit" / "runs"  # inside the data root (the root itself: R172)
    proc = run(train_command(str(data), tmp_path, f"hydra.run.dir={folder}"), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert line == (
        f"error: hydra.run.dir={folder} lies inside the data root {data}; a run writes split lists, "
        "checkpoints and logs into its folder: choose one outside the data"
    )
    assert files(data) == before  # not even Hydra's .hydra/ or the log


@pytest.mark.slow
def test_a_sweep_folder_belongs_to_its_sweep(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    bad = ("optimizer.lr=-1", "seed=0,1")  # every job fails at once: the sweep is quick

    first = run(train_command(tiny_data, tmp_path, *bad, f"hydra.sweep.dir={sweep}", multirun=True), tmp_path)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    assert (
        first.stderr.strip().splitlines()[-1] == "error: optimizer.lr=-1: the learning rate must be positive"
    )
    owned = files(sweep)
    assert SWEEP_RECORD in owned and "multirun.yaml" in owned

    other = run(
        train_command(
            tiny_data, tmp_path, "optimizer.lr=-1", "seed=2", f"hydra.sweep.dir={sweep}", multirun=True
        ),
        tmp_path,
    )
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
    [line] = [x for x in other.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith(f"error: hydra.sweep.dir={sweep} holds another sweep (")
    record = json.loads((sweep / SWEEP_RECORD).read_text())
    assert "seed=0,1" in record["overrides"] and not (sweep / "0_train_seed2").exists()


@pytest.mark.slow
def test_ctrl_c_in_training_is_one_line(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    extra = [
        "model=fcn32s",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
    ]
    extra += [f"hydra.run.dir={run_dir}", "+callbacks.ctrl_c._target_=ctrl_c.CtrlC", "+callbacks.ctrl_c.at=1"]
    proc = run(train_command(tiny_data, tmp_path, *extra), tmp_path)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"interrupted; nothing half-written left in {run_dir}; the same command resumes the run"
    )
    assert not (run_dir / "results.json").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith((".partial", ".tmp"))]
