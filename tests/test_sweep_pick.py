"""``make reproduce-table2`` resumes by itself: the sweep folder it picks, and the Makefile around it.

The folder logic runs on fake sweep folders (``results.json`` / ``last.ckpt`` files, no training);
the Makefile runs against a stub ``.venv`` whose ``fcnlab-train`` and ``fcnlab-report`` record what
they were called with (only ``--pick-sweep`` goes to the real ``fcnlab-report``).
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcnlab.cli.report import main as report_main
from fcnlab.reporting.sweep_pick import code_fingerprint, pick_sweep

REPO = Path(__file__).resolve().parents[1]
NOON = datetime.datetime(2026, 12, 1, 12, 0, 0)


def fake_job(sweep: Path, name: str, finished: bool) -> None:
    """A job folder as a killed (last.ckpt) or finished (results.json, status ok) job leaves it."""
    job = sweep / name
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"not read here")
    if finished:
        (job / "results.json").write_text(json.dumps({"status": "ok", "variant": name}))


def test_the_same_code_and_seeds_pick_the_same_folder_again(tmp_path):
    first = pick_sweep(tmp_path, 1, "abcd1234")
    assert first == tmp_path / "table2_seeds1_abcd1234" and not first.exists()  # nothing is created
    fake_job(first, "fcn32s_fixed_seed0", finished=True)
    fake_job(first, "fcn32s_seed0", finished=False)  # the kill came here
    assert pick_sweep(tmp_path, 1, "abcd1234") == first
    assert pick_sweep(tmp_path, 3, "abcd1234") == tmp_path / "table2_seeds3_abcd1234"
    assert pick_sweep(tmp_path, 1, "ffff0000") == tmp_path / "table2_seeds1_ffff0000"  # other code


def test_fresh_is_a_new_folder_and_then_the_one_resumed(tmp_path):
    plain = pick_sweep(tmp_path, 1, "abcd1234")
    fake_job(plain, "fcn32s_fixed_seed0", finished=True)
    fresh = pick_sweep(tmp_path, 1, "abcd1234", fresh=True, now=NOON)
    assert fresh == tmp_path / "table2_seeds1_abcd1234_20261201_120000" and not fresh.exists()
    fake_job(fresh, "fcn32s_fixed_seed0", finished=False)
    assert pick_sweep(tmp_path, 1, "abcd1234") == fresh  # the newest of this code and seed count
    again = pick_sweep(tmp_path, 1, "abcd1234", fresh=True, now=NOON)  # the same second
    assert again == tmp_path / "table2_seeds1_abcd1234_20261201_120000_2"
    again.mkdir()
    later = pick_sweep(tmp_path, 1, "abcd1234", fresh=True, now=NOON + datetime.timedelta(seconds=1))
    later.mkdir()
    assert pick_sweep(tmp_path, 1, "abcd1234") == later
    # folders of other names are never picked: an older timestamped sweep, another seed count, a file
    (tmp_path / "table2_20991231_235959").mkdir()
    (tmp_path / "table2_seeds1_abcd1234_notastamp").mkdir()
    (tmp_path / "table2_seeds1_abcd1234_20991231_235959.txt").write_text("")
    assert pick_sweep(tmp_path, 1, "abcd1234") == later


def test_the_fingerprint_follows_training_code_and_config_only(tmp_path):
    pkg, conf = tmp_path / "fcnlab", tmp_path / "conf"
    for path, text in {
        pkg / "training" / "run.py": "x = 1\n",
        pkg / "bench" / "suite.py": "y = 1\n",
        pkg / "reporting" / "table.py": "z = 1\n",
        conf / "train.yaml": "seed: 0\n",
    }.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    base = code_fingerprint([pkg, conf])
    assert base == code_fingerprint([pkg, conf]) and len(base) == 8
    (pkg / "bench" / "suite.py").write_text("y = 2\n")  # benchmarking and reporting change no run
    (pkg / "reporting" / "table.py").write_text("z = 2\n")
    (pkg / "README.md").write_text("docs\n")
    assert code_fingerprint([pkg, conf]) == base
    (conf / "train.yaml").write_text("seed: 1\n")
    changed_conf = code_fingerprint([pkg, conf])
    (pkg / "training" / "run.py").write_text("x = 2\n")
    assert len({base, changed_conf, code_fingerprint([pkg, conf])}) == 3
    assert code_fingerprint([pkg, conf], libraries=["torch", "no-such-library"]) != code_fingerprint(
        [pkg, conf], libraries=["torch"]
    )


def test_pick_sweep_command_prints_one_stable_folder(tmp_path, capsys):
    argv = ["--pick-sweep", "--seeds", "2", "--runs-dir", str(tmp_path)]
    report_main(argv)
    first = Path(capsys.readouterr().out.strip())
    assert first.parent == tmp_path and first.name.startswith("table2_seeds2_")
    report_main(argv)
    assert Path(capsys.readouterr().out.strip()) == first
    report_main([*argv, "--fresh"])
    fresh = Path(capsys.readouterr().out.strip())
    assert fresh != first and fresh.name.startswith(first.name + "_")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pick-sweep", "--seeds", "0"], "error: SEEDS=0: the number of seeds must be at least 1"),
        ([], "error: fcnlab-report needs the sweep dir to report, e.g. fcnlab-report results/runs/<sweep>"),
    ],
)
def test_pick_sweep_bad_input_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        report_main(argv)
    assert e.value.code == 2 and capsys.readouterr().err.strip() == message


def stub_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A ``.venv`` make takes as installed, with recording ``fcnlab-train`` / ``fcnlab-report``."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    cksum = subprocess.run(
        "cat pyproject.toml | cksum", shell=True, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    (venv / f".installed-{cksum}").touch()
    (venv / "bin" / "python").symlink_to(sys.executable)
    record = f'echo "$(basename "$0") $*" >> {log}\n'
    (venv / "bin" / "fcnlab-train").write_text(f"#!/bin/sh\n{record}")
    pick = f'case "$*" in *--pick-sweep*) exec {sys.executable} -m fcnlab.cli.report "$@";; esac\n'
    (venv / "bin" / "fcnlab-report").write_text(f"#!/bin/sh\n{pick}{record}")
    for script in ("fcnlab-train", "fcnlab-report"):
        (venv / "bin" / script).chmod(0o755)
    return venv, log


def make_table2(venv: Path, log: Path, runs: Path, *extra: str) -> tuple[str, str]:
    """``make reproduce-table2`` with the stub venv: (the sweep's hydra.sweep.dir, the dir reported)."""
    log.write_text("")
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "reproduce-table2", f"VENV={venv}", f"RUNS_DIR={runs}", *extra],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    sweep = next(c for c in calls if c.startswith("fcnlab-train -m"))
    report = next(c for c in calls if c.startswith("fcnlab-report"))
    return sweep.split("hydra.sweep.dir=")[1].split()[0], report.split()[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_reproduce_table2_reruns_into_the_same_sweep(tmp_path):
    venv, log = stub_venv(tmp_path)
    runs = tmp_path / "runs"
    first, reported = make_table2(venv, log, runs)
    assert reported == first and Path(first).parent == runs
    Path(first).mkdir(parents=True)  # the killed sweep's folder
    assert make_table2(venv, log, runs) == (first, first)
    fresh, reported = make_table2(venv, log, runs, "FRESH=1")
    assert fresh != first and reported == fresh and fresh.startswith(first + "_")
    Path(fresh).mkdir()
    assert make_table2(venv, log, runs) == (fresh, fresh)  # the newest is the one resumed
    assert make_table2(venv, log, runs, "FRESH=0") == (fresh, fresh)
    assert make_table2(venv, log, runs, "SEEDS=3")[0] != fresh
    given = str(tmp_path / "mine")
    assert make_table2(venv, log, runs, f"SWEEP_DIR={given}") == (given, given)
