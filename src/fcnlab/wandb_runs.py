"""Naming and closing wandb runs: shared by training's logger and the report's ``--wandb`` run.

Imports neither torch nor wandb (wandb only once a run is open), so ``fcnlab-report`` stays torch-free.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

log = logging.getLogger("fcnlab.train")


def sweep_group(group: str, sweep_dir: str | Path | None) -> str:
    """``<group>-<sweep dir name>`` in a multirun (unique per sweep, shared by its jobs), else ``group``."""
    if not sweep_dir:
        return group
    return f"{group}-{Path(sweep_dir).name}" if group else Path(sweep_dir).name


def _logs_to_stdout(logger: logging.Logger) -> bool:
    """Whether a record from ``logger`` already reaches stdout (Hydra's console handler does)."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                return True
        current = current.parent if current.propagate else None
    return False


def finish_wandb() -> str | None:
    """Finish and flush the open wandb run; if offline, log/print (and return) the ``wandb sync`` command."""
    if "wandb" not in sys.modules:
        return None
    import wandb

    run = wandb.run
    if run is None:
        return None
    offline, sync_dir, url = run.offline, run.settings.sync_dir, None if run.offline else run.url
    run.finish()
    wandb.teardown()  # waits for wandb-core: the run's files are complete once a job ends
    if not offline:
        log.info("wandb: run logged to %s", url)
        return None
    command = f"wandb sync {shlex.quote(str(sync_dir))}"
    log.info("wandb: offline run saved in %s; upload it with: %s", sync_dir, command)
    if not _logs_to_stdout(log):
        print(f"wandb: offline run saved in {sync_dir}; upload it with: {command}")
    return command
