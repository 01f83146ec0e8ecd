"""A built wheel carries its configs and sweeps: installed into a fresh virtualenv (not editable),
``fcnlab-train debug=fast`` runs from an unrelated folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers.hang import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_trains_from_an_unrelated_directory(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, REPO],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = dist.glob("fcnlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"fcnlab/conf/train.yaml", "fcnlab/sweeps/table2.yaml", "fcnlab/data/seg11valid.txt"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=HANG_GUARD_S)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    # fcnlab from the wheel; its dependencies from this interpreter's site-packages, as a plain path
    # (so that folder's .pth files, among them an editable fcnlab's, are not read).
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "_fcnlab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import fcnlab.config as c; print(c.__file__); print(c.CONF_DIR)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # not the checkout's files

    run = subprocess.run(
        [venv / "bin" / "fcnlab-train", "debug=fast"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=HANG_GUARD_S,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr[-3000:]
    assert (elsewhere / "data" / "shapes").is_dir() and (elsewhere / "outputs" / "debug").is_dir()
