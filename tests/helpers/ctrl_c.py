"""A callback that presses Ctrl-C: raises KeyboardInterrupt as training step ``at`` starts.

Loaded into a real ``fcnlab-train`` subprocess (``+callbacks.ctrl_c._target_=ctrl_c.CtrlC``, this folder
on ``PYTHONPATH``): the interruption lands at a known point, whatever the machine's speed.
"""

from __future__ import annotations

import lightning as L


class CtrlC(L.Callback):
    def __init__(self, at: int = 1) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise KeyboardInterrupt
