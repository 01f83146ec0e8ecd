"""``StepTimer``: the Lightning callback ``fcnlab-gpu-check`` adds to its training runs.

It times training steps after a warm-up and keeps the first losses, and writes them as JSON when
training ends (:mod:`fcnlab.bench.gpu_check` reads the file).
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from fcnlab.atomic import write_json


class StepTimer(L.Callback):
    """Times training steps after ``warmup`` iterations and writes the figures to ``out`` (JSON).

    The clock stops on the last iteration's batch, before the validation that follows it. Losses of
    the first ``keep_losses`` batches are kept (as tensors until the end: no sync per step).
    """

    def __init__(self, out: str, warmup: int = 5, keep_losses: int = 20) -> None:
        self.out, self.warmup, self.keep = Path(out), warmup, keep_losses
        self.losses: list[torch.Tensor] = []
        self.start: tuple[float, int, int] | None = None  # (time, batches, step) when timing began
        self.batches, self.record = 0, None

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, *args) -> None:
        self.batches += 1
        if len(self.losses) < self.keep:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(loss.detach().float() * trainer.accumulate_grad_batches)
        step = trainer.global_step
        if self.start is None and step >= self.warmup:
            self._sync()
            self.start = (time.perf_counter(), self.batches, step)
        elif self.start is not None and self.record is None and 0 < trainer.max_steps <= step:
            self._sync()
            t0, b0, s0 = self.start
            seconds = time.perf_counter() - t0
            images = (self.batches - b0) * trainer.datamodule.batch_size
            self.record = {
                "iterations_timed": step - s0,
                "seconds": seconds,
                "ms_per_iteration": 1000 * seconds / max(step - s0, 1),
                "images_per_s": images / seconds if seconds > 0 else float("nan"),
                "peak_memory_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
                "precision": str(trainer.precision),
            }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = dict(self.record or {})
        record["losses"] = [float(v) for v in self.losses]
        write_json(self.out, record)
