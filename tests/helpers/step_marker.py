"""A callback for kill tests: after every training step, record the step in a file and pause briefly.

Loaded into a real ``fcnlab-train`` subprocess (``+callbacks.marker._target_=step_marker.StepMarker``
with this folder on ``PYTHONPATH``) so a test can SIGKILL the run at a step of its choosing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class StepMarker(L.Callback):
    """Writes the global step to ``path`` after each optimizer step, then sleeps ``pause`` seconds."""

    def __init__(self, path: str, pause: float = 0.2) -> None:
        self.path, self.pause = Path(path), pause

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.path)
        time.sleep(self.pause)
