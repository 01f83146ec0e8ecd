"""Checks Hydra runs before it creates a job's folder, so a bad output dir is one line, not a traceback."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fcnlab.errors import FCNLabError, exit_on_user_error


def _writable(folder: str, option: str) -> None:
    path = Path(folder)
    with exit_on_user_error():
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".fcnlab-write-test-{id(path)}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            why = f"{option}={folder}: cannot write there ({e.strerror}); choose another folder"
            raise FCNLabError(why) from None


class OutputDirCheck(Callback):
    """Refuse an output folder that cannot be created or written, before any work starts."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _writable(config.hydra.sweep.dir, "hydra.sweep.dir")
