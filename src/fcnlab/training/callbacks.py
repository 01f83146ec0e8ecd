"""Checkpoints that appear whole or not at all."""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing each file beside its target, then renaming it into place.

    Lightning's own save goes through a temp file in the system temp dir and a move, which is a
    copy (not atomic) when that dir is on another filesystem; a kill mid-copy would leave a
    truncated ``best.ckpt`` that looks complete. A rename within one folder cannot.
    """

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero and os.path.exists(partial):
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath
