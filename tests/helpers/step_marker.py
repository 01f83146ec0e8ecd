"""A callback for kill tests: after every training step, record the step in a file and pause briefly.

Loaded into a real ``fcnlab-train`` subprocess (``+callbacks.marker._target_=step_marker.StepMarker``
with this folder on ``PYTHONPATH``) so a test can SIGKILL the run at a step of its choosing.
``hold_at``: at that step the run stops and waits to be killed, so the kill lands exactly there however
fast or slow the machine is (a pause only makes a late kill unlikely). It holds once: the same command
run again (the resume) finds ``<path>.held`` and goes on. ``hold_if``: hold only when ``path`` contains
it (one job of a sweep).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class StepMarker(L.Callback):
    """Writes the global step to ``path`` after each optimizer step, then sleeps ``pause`` seconds."""

    def __init__(self, path: str, pause: float = 0.2, hold_at: int = -1, hold_if: str = "") -> None:
        self.path, self.pause, self.hold_at, self.hold_if = Path(path), pause, hold_at, hold_if

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(str(trainer.global_step))
        held = self.path.with_name(self.path.name + ".held")
        if trainer.global_step == self.hold_at and self.hold_if in str(self.path) and not held.exists():
            held.write_text("")  # before the step shows: the test kills only once it is written
            os.replace(tmp, self.path)
            while True:  # until the test kills this process
                time.sleep(1)
        os.replace(tmp, self.path)
        time.sleep(self.pause)
