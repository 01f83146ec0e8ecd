"""Checks Hydra runs before it creates a job's folder or writes a file, each one line naming the option.

- an output folder that cannot be created or written;
- a run or sweep folder that is, or lies inside, the data root (Hydra would write ``.hydra/`` and the
  log there, the run its split lists and checkpoints);
- a sweep folder that holds another sweep: a sweep folder belongs to the sweep that made it (its
  command's overrides, recorded in :data:`SWEEP_RECORD`), so the same command resumes it and any other
  is refused before a job starts (``resume=never`` takes it over).

And :class:`OneLineJobErrors`: a multirun job's one-line error stays one line at the sweep's end.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fcnlab.atomic import check_not_data, write_json
from fcnlab.errors import FCNLabError, exit_on_user_error, one_line

SWEEP_RECORD = ".fcnlab-sweep.json"


def _writable(folder: str, option: str) -> None:
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".fcnlab-write-test-{id(path)}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        why = f"{option}={folder}: cannot write there ({e.strerror}); choose another folder"
        raise FCNLabError(why) from None


def _data_root(config: DictConfig) -> object:
    try:
        return OmegaConf.select(config, "data.root", default=None)
    except Exception:  # an interpolation that cannot resolve yet: the job's own check names it
        return None


def sweep_identity(config: DictConfig) -> dict:
    """What makes a sweep the same sweep: its config and its overrides (``resume=`` aside)."""
    task = [o for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    return {
        "config_name": OmegaConf.select(config, "hydra.job.config_name", default=None),
        "overrides": sorted(str(o) for o in task if not str(o).startswith("resume=")),
    }


def _recorded_identity(sweep_dir: Path) -> dict | None:
    """The identity of the sweep that made ``sweep_dir``: its record, else its ``multirun.yaml``."""
    try:
        found = json.loads((sweep_dir / SWEEP_RECORD).read_text())
        if isinstance(found, dict) and "overrides" in found:
            return {"config_name": found.get("config_name"), "overrides": found["overrides"]}
    except (OSError, ValueError):
        pass
    try:
        return sweep_identity(OmegaConf.load(sweep_dir / "multirun.yaml"))
    except Exception:  # no multirun.yaml, or not one Hydra wrote
        return None


def claim_sweep_dir(sweep_dir: str, config: DictConfig) -> None:
    """Refuse ``sweep_dir`` if it holds another sweep (or files of no sweep); else record this sweep."""
    folder, ours = Path(sweep_dir), sweep_identity(config)
    take_over = "resume=never" in (OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    found = _recorded_identity(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    if not take_over and found is not None and found != ours:
        theirs = " ".join(found["overrides"]) or "no overrides"
        if found["config_name"] != ours["config_name"]:
            theirs += f", --config-name {found['config_name']}"
        raise FCNLabError(
            f"hydra.sweep.dir={sweep_dir} holds another sweep ({theirs}); use another hydra.sweep.dir, "
            "or resume=never to take it over"
        )
    if not take_over and found is None and entries:
        raise FCNLabError(
            f"hydra.sweep.dir={sweep_dir} is not empty and holds no sweep (first: {min(entries).name}); "
            "use a new or empty folder, or resume=never to write there anyway"
        )
    write_json(folder / SWEEP_RECORD, {**ours, "about": "the sweep this folder belongs to (fcnlab)"})


class OutputDirCheck(Callback):
    """Refuse an output folder that cannot be written, is in the data, or is another sweep's."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        with exit_on_user_error():
            folder = config.hydra.run.dir
            check_not_data(folder, "hydra.run.dir", _data_root(config))
            _writable(folder, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with exit_on_user_error():
            folder = config.hydra.sweep.dir
            check_not_data(folder, "hydra.sweep.dir", _data_root(config))
            _writable(folder, "hydra.sweep.dir")
            claim_sweep_dir(folder, config)


# Sweepers that end a sweep by raising its first failed job's error (Optuna's counts failed trials
# itself: its jobs' errors are left as they are).
RERAISING_SWEEPERS = ("BasicSweeper", "StagedSweeper")


class OneLineJobErrors(Callback):
    """A multirun job that failed on a user's mistake (:class:`FCNLabError`; its line was printed as it
    failed) ends the sweep, once every job has run, with that line and exit status 1, instead of the
    traceback Hydra prints for a job's error."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
        if job_return.status != JobStatus.FAILED or not sweeper.endswith(RERAISING_SWEEPERS):
            return
        error = job_return._return_value  # the getter would raise it
        if isinstance(error, FCNLabError):
            job_return.return_value = SystemExit(f"error: {one_line(error)}")
