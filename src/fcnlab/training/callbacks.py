"""Checkpoints that appear whole or not at all; a progress display that suits where the run's output goes."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar, RichProgressBar

from fcnlab.errors import FCNLabError

log = logging.getLogger("fcnlab.train")


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing each file beside its target, then renaming it into place.

    Lightning's own save goes through a temp file in the system temp dir and a move, which is a
    copy (not atomic) when that dir is on another filesystem; a kill mid-copy would leave a
    truncated ``best.ckpt`` that looks complete. A rename within one folder cannot. (Not a
    ``CheckpointIO`` plugin: every trainer config would need it, and a trainer without it would
    silently write non-atomically; this travels with the checkpoint callbacks.)
    """

    # Private hook, pinned to lightning >=2.5,<2.7 (tests/test_lightning_pins.py).
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        try:
            super()._save_checkpoint(trainer, partial)
        except OSError as e:  # disk full, quota, permissions: never leave half a file behind
            with contextlib.suppress(OSError):
                os.remove(partial)
            kept = " (the previous one is intact)" if os.path.exists(filepath) else ""
            raise FCNLabError(
                f"{filepath}: could not save the checkpoint ({e.strerror or e}){kept}; free space and rerun "
                "the same command to resume"
            ) from None
        if trainer.is_global_zero and os.path.exists(partial):
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath


class ValidateAtLastStep(Callback):
    """Validate on the final step when ``trainer.max_steps`` ends training inside an epoch.

    Lightning validates at epoch ends (or every ``val_check_interval`` batches) and skips the steps a
    run makes after the last of those when ``max_steps`` stops it mid-epoch, so ``best.ckpt`` (the
    reported numbers, the next stage's init) would never see them. Asking the trainer to stop on that
    step takes Lightning's own early-stopping path: it validates there, and the checkpoint callbacks
    see that validation like any other. A run that ends on an epoch end or a ``val_check_interval``
    step is validated once, as before.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args, **kwargs) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


def interactive_terminal() -> bool:
    """True when stdout is a terminal and no CI system is running us (CI sets ``CI``)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return bool(getattr(sys.stdout, "isatty", lambda: False)()) and not ci


class EpochSummaryLogger(Callback):
    """One ``fcnlab.train`` log line per epoch (losses, val scores, time): CI and job logs read well."""

    SCORES = ("val/pixel_acc", "val/mean_acc", "val/mean_iu", "val/fw_iu")

    def __init__(self) -> None:
        super().__init__()
        self._enabled, self._start, self._val_epoch = True, time.monotonic(), -1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch  # the val metrics are this epoch's, not stale ones

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info(self.line(trainer, time.monotonic() - self._start))

    def line(self, trainer: L.Trainer, seconds: float) -> str:
        """``epoch 3/10: train/loss 0.8123, val/loss 0.7011, val/pixel_acc 81.2%, ... (12.3 s)``."""
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        parts = []
        if "train/loss_epoch" in metrics:
            parts.append(f"train/loss {metrics['train/loss_epoch']:.4f}")
        if self._val_epoch == trainer.current_epoch:
            if "val/loss" in metrics:
                parts.append(f"val/loss {metrics['val/loss']:.4f}")
            parts += [f"{k} {100 * metrics[k]:.1f}%" for k in self.SCORES if k in metrics]
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        summary = ", ".join(parts) or "no metrics"
        return f"epoch {trainer.current_epoch + 1}{total}: {summary} ({seconds:.1f} s)"


class EpochLineProgressBar(EpochSummaryLogger, ProgressBar):
    """The epoch lines standing in as the trainer's progress bar, so Lightning adds no bar of its own."""

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True


def progress_callbacks(enable: bool, interactive: bool | None = None) -> list[Callback]:
    """Rich's bar on a terminal, else (CI, redirected, or ``enable=False``) only one log line per epoch."""
    if interactive is None:
        interactive = interactive_terminal()
    if not enable:
        return [EpochSummaryLogger()]  # Lightning refuses any ProgressBar when the bar is disabled
    if interactive:
        return [RichProgressBar(), EpochSummaryLogger()]
    return [EpochLineProgressBar()]
