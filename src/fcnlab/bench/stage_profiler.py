"""``StageProfiler``: a Lightning callback charging a training process's wall time to its stages.

Added to a job with ``+callbacks.stage_profiler._target_=fcnlab.bench.stage_profiler.StageProfiler
+callbacks.stage_profiler.out=<file.json>`` (``fcnlab-bench --table2-profile`` does). From the process's
start to its exit every second goes to one stage (:class:`fcnlab.bench.stages.StageClock`):

- start-up: Python, the imports, then Hydra's config, the checks and building data and model (split
  where :mod:`fcnlab.cli.profiled_train` marked them), then the trainer and fit set-up;
- per training batch: the data-loading wait (from a batch's end to the next one's start, with the
  loader's start each epoch), forward (with ``zero_grad`` and the loss), backward, optimizer step;
- validation each epoch (its data-loading wait, and forward plus metrics), the final re-validation
  of ``best.ckpt``, checkpoint writes (``trainer.save_checkpoint``), logger calls (``log_metrics``,
  ``save``, ...), epoch-end bookkeeping, what follows ``fit`` (Figure-4 panels, results.json), and
  the exit handlers (loader workers joined, loggers closed).

Checkpoint writes and logger calls are timed wherever they happen and taken out of the stage around
them. The record is written (atomically) by the last exit handler; the process's start-up and exit
come from the marks and handlers of :mod:`fcnlab.bench.stages`.
"""

from __future__ import annotations

import atexit
import functools
import os
import time
from pathlib import Path

import lightning as L
import torch

from fcnlab.atomic import write_json
from fcnlab.bench.stages import PROCESS_MARKS, StageClock, at_last_exit, process_start

STARTUP = "start-up: Python, imports, config, data + model"
PYTHON, IMPORTS, BUILD, FIT_SETUP = (
    "start-up: Python",
    "start-up: imports (torch, Lightning, Hydra)",
    "start-up: Hydra config, checks, data + model",
    "start-up: trainer + fit set-up",
)
DATA, FORWARD, BACKWARD, OPTIMIZER = (
    "train: data loading (wait)",
    "train: forward + loss",
    "train: backward",
    "train: optimizer step",
)
VAL_DATA, VAL_FORWARD, FINAL_VAL = (
    "validation: data loading (wait)",
    "validation: forward + metrics",
    "final validation of best.ckpt",
)
CHECKPOINT, LOGGING, EPOCH_END, AFTER_FIT = (
    "checkpoint writes",
    "logging (logger calls)",
    "epoch-end bookkeeping",
    "after fit: reload best, Figure-4 panels, results.json",
)
EXIT_HOOKS = "exit: atexit handlers (loader workers, loggers, ...)"
STAGES = (
    PYTHON,
    IMPORTS,
    BUILD,
    FIT_SETUP,
    DATA,
    FORWARD,
    BACKWARD,
    OPTIMIZER,
    VAL_DATA,
    VAL_FORWARD,
    FINAL_VAL,
    CHECKPOINT,
    LOGGING,
    EPOCH_END,
    AFTER_FIT,
    EXIT_HOOKS,
)
LOGGER_METHODS = ("log_metrics", "log_hyperparams", "save", "finalize")


class StageProfiler(L.Callback):
    """Charges the process's wall time to the stages above; writes them to ``out`` at exit."""

    def __init__(self, out: str) -> None:
        now = time.monotonic()
        self.out = Path(out)
        marks = ((IMPORTS, "python"), (BUILD, "imports"))
        if all(mark in PROCESS_MARKS for _, mark in marks):  # started by fcnlab.cli.profiled_train
            self.clock = StageClock(PYTHON, process_start())
            for stage, mark in marks:
                self.clock.switch(stage, PROCESS_MARKS[mark])
        else:  # a plain fcnlab-train: start-up in one piece
            self.clock = StageClock(STARTUP, process_start())
        self.clock.switch(FIT_SETUP, now)
        self.train_batches = self.train_images = self.val_batches = self.optimizer_steps = 0
        self.context: dict = {}
        self._wrapped: set[int] = set()
        atexit.register(self.clock.switch, EXIT_HOOKS)  # the first handler to run (registered last)
        at_last_exit(self.write)

    # -- timing things that are not hooks: checkpoint writes and logger calls --

    def _timed(self, stage: str, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            self.clock.push(stage)
            try:
                return fn(*args, **kwargs)
            finally:
                self.clock.pop()

        return run

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if id(trainer) not in self._wrapped:
            self._wrapped.add(id(trainer))
            trainer.save_checkpoint = self._timed(CHECKPOINT, trainer.save_checkpoint)
            for logger in trainer.loggers:
                for name in LOGGER_METHODS:
                    if hasattr(logger, name):
                        setattr(logger, name, self._timed(LOGGING, getattr(logger, name)))
        if stage == "fit":
            self.context = {
                "max_epochs": trainer.max_epochs,
                "batch_size": getattr(trainer.datamodule, "batch_size", None),
                "torch_threads": torch.get_num_threads(),
                "loader_workers": getattr(trainer.datamodule, "num_workers", None),
                "pid": os.getpid(),
            }

    # -- training --

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.clock.switch(DATA)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.switch(FORWARD)
        self.train_batches += 1
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.train_images += int(getattr(first, "shape", [1])[0])

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.clock.switch(BACKWARD)

    def on_after_backward(self, trainer, pl_module) -> None:
        self.clock.switch(OPTIMIZER)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.optimizer_steps += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.switch(DATA)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.switch(EPOCH_END)

    # -- validation: each epoch's inside fit, the final one of best.ckpt after it --

    def _final(self, trainer: L.Trainer) -> bool:
        return trainer.state.fn != "fit"

    def on_validation_start(self, trainer, pl_module) -> None:
        self.clock.push(FINAL_VAL if self._final(trainer) else VAL_DATA)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._final(trainer):
            self.clock.switch(VAL_FORWARD)
            self.val_batches += 1

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not self._final(trainer):
            self.clock.switch(VAL_DATA)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._final(trainer):
            self.clock.switch(VAL_FORWARD)  # the epoch's scores are computed after this hook

    def on_validation_end(self, trainer, pl_module) -> None:
        self.clock.pop()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.clock.switch(AFTER_FIT)

    # -- the record --

    def write(self) -> None:
        """Charge up to now and write the record to ``out`` (at exit; callable before)."""
        self.clock.stop()
        record = self.clock.record()
        record.update(
            self.context,
            train_batches=self.train_batches,
            train_images=self.train_images,
            optimizer_steps=self.optimizer_steps,
            val_batches=self.val_batches,
        )
        write_json(self.out, record)
