"""The README's ``fcnlab-train`` commands, run exactly as written from a fresh directory.

No ``paths.root_dir`` or ``hydra.sweep.dir`` overrides: the default output folders must resolve outside
Hydra's job (the sweep dir is made before any job exists). A full default run trains for minutes, so
each command is stopped once its first job has claimed its folder under the working directory (its
``job.json``, written after the config is composed, resolved and checked); what is checked is that
it got there, in the folder the README promises, with nothing printed a user must learn to ignore.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.hang import HANG_GUARD_S

README = Path(__file__).resolve().parents[1] / "README.md"


def fcnlab_train() -> list[str]:
    """The console script, as the README calls it (``python -m fcnlab.cli.train`` if not installed)."""
    script = Path(sys.executable).with_name("fcnlab-train")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fcnlab.cli.train"]


def readme_command(prefix: str) -> list[str]:
    """The README's ``.venv/bin/fcnlab-train <args>`` line whose args start with ``prefix``."""
    for line in README.read_text().splitlines():
        head, _, _ = line.partition("#")
        if head.startswith(".venv/bin/fcnlab-train ") and head.split(None, 1)[1].startswith(prefix):
            return head.split()[1:]
    raise AssertionError(f"no README line `.venv/bin/fcnlab-train {prefix}...`")


def run_until_first_job(
    args: list[str], cwd: Path, job_glob: str, timeout: float = HANG_GUARD_S
) -> tuple[Path, str]:
    """Start the command in ``cwd``, wait for its first job's ``job.json``, stop it; (job dir, output)."""
    log = cwd.parent / f"{cwd.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*fcnlab_train(), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            while not (found := sorted(cwd.glob(f"{job_glob}/job.json"))):
                if proc.poll() is not None:
                    raise AssertionError(f"ended before its first job started:\n{log.read_text()[-4000:]}")
                assert time.monotonic() < deadline, (
                    f"no {job_glob}/job.json in time:\n{log.read_text()[-4000:]}"
                )
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return found[0].parent, log.read_text()


def assert_clean(output: str) -> None:
    for bad in ("Traceback", "InterpolationResolutionError", "UserWarning", "HydraConfig was not set"):
        assert bad not in output, output[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prefix", "job_glob"),
    [
        ("-m model=fcn32s,fcn8s seed=0,1", "multirun/train/*/0_fcn32s_seed0"),
        ("-m --config-name lr_search ", "multirun/lr_search/*/trial0"),
        ("-m hydra/launcher=submitit_local ", "multirun/train/*/0_fcn32s_seed0"),
        ("debug=fast", "outputs/debug/*"),
    ],
)
def test_readme_command_as_written_starts_in_a_fresh_directory(prefix, job_glob, tmp_path):
    args = readme_command(prefix)
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    job, output = run_until_first_job(args, cwd, job_glob)
    assert_clean(output)
    assert job.is_relative_to(cwd)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "option", "folder"), [([], "hydra.run.dir", "outputs"), (["-m"], "hydra.sweep.dir", "multirun")]
)
def test_an_unwritable_default_output_folder_is_one_line(args, option, folder, tmp_path):
    # A file where the default output folder goes: nothing can be created under it (as with a read-only
    # working directory, which root, running the tests here, could still write into).
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    (cwd / folder).write_text("")
    proc = subprocess.run(
        [*fcnlab_train(), *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "UserWarning" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    prefix = f"error: {option}={cwd}/{folder}/train/"
    assert line.startswith(prefix) and line.endswith(
        ": cannot write there (Not a directory); choose another folder"
    )
    assert not (cwd / "data").exists()  # refused before any work


@pytest.mark.slow
def test_unwritable_working_directory_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the test above covers the same check")
    cwd = tmp_path / "readonly"
    cwd.mkdir()
    cwd.chmod(0o555)
    try:
        proc = subprocess.run(fcnlab_train(), cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    finally:
        cwd.chmod(0o755)
        shutil.rmtree(cwd, ignore_errors=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write there (Permission denied); choose another folder" in proc.stderr.splitlines()[-1]
