"""Checks Hydra runs before it creates a job's folder, so a bad output dir is one line, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _writable(folder: str, option: str) -> None:
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".fcnlab-write-test-{id(path)}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        message = f"{option}={folder}: cannot write there ({e.strerror}); choose another folder"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


class OutputDirCheck(Callback):
    """Refuse an output folder that cannot be created or written, before any work starts."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _writable(config.hydra.sweep.dir, "hydra.sweep.dir")
