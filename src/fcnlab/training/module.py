"""``FCNModule``: any registered FCN trained with per-pixel cross-entropy and scored like the paper."""

from __future__ import annotations

import functools
import logging
import math
import random

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from fcnlab.data.classes import VOID
from fcnlab.data.sampling import EPOCH_STRIDE
from fcnlab.errors import FCNLabError
from fcnlab.evaluation import SegmentationScores, segmentation_scores
from fcnlab.models import create_model
from fcnlab.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


class FCNModule(L.LightningModule):
    """Wraps ``create_model(**model)``; validation accumulates one confusion matrix per epoch.

    ``loss_normalize=False`` sums the loss over pixels, as the reference release does with batch 1
    and momentum 0.99 (and tiny learning rates); ``True`` averages over labelled pixels.
    """

    def __init__(
        self,
        model: dict,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        loss_normalize: bool = True,
        bias_lr_mult: float = 2.0,
        class_names: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model = create_model(**model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_normalize, self.bias_lr_mult, self.seed = loss_normalize, bias_lr_mult, seed
        num_classes = model.get("num_classes", 21)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.val_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=VOID, validate_args=False)
        self.last_scores: SegmentationScores | None = None
        self.last_confusion: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        reduction = "mean" if self.loss_normalize else "sum"
        if not (masks != VOID).any():  # a crop of void only: no signal, and "mean" would be nan
            return logits.sum() * 0.0
        return F.cross_entropy(logits, masks, ignore_index=VOID, reduction=reduction)

    def on_fit_start(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        log.info("%s: %s of %s parameters trainable", self.model.name, f"{trainable:,}", f"{total:,}")
        for logger in self.loggers:
            logger.log_hyperparams({"trainable_params": trainable, "total_params": total})

    def on_train_epoch_start(self) -> None:
        # Dropout & co. draw from the global RNG: key it to (seed, epoch) so a run resumed from the
        # end of epoch k-1 replays epoch k exactly as an uninterrupted run would (data is keyed too).
        epoch_seed = (self.seed * EPOCH_STRIDE + self.current_epoch) % 2**32
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)
        random.seed(epoch_seed)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        loss = self.loss(self(images), masks)
        if not torch.isfinite(loss):
            raise FCNLabError(self._non_finite_message(loss.item()))
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(images),
            sync_dist=True,
        )
        return loss

    def _non_finite_message(self, value: float) -> str:
        saved = [
            (c._last_global_step_saved, c._last_checkpoint_saved)
            for c in (self.trainer.checkpoint_callbacks if self._trainer is not None else [])
            if getattr(c, "_last_checkpoint_saved", None)
        ]
        kept = f"last good checkpoint {max(saved)[1]} (kept)" if saved else "no checkpoint written yet"
        return (
            f"loss is {value} at step {self.global_step} (epoch {self.current_epoch}); training stopped, "
            f"{kept}; lower optimizer.lr or check the data"
        )

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()  # the sanity check must not leak into the first epoch

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        logits = self(images)
        self.log("val/loss", self.loss(logits, masks), on_epoch=True, batch_size=len(images), sync_dist=True)
        self.val_confusion.update(logits.argmax(1), masks)

    def on_validation_epoch_end(self) -> None:
        confusion = self.val_confusion.compute()  # summed over processes: exact under DDP
        self.val_confusion.reset()
        if confusion.sum() == 0:
            return
        scores = segmentation_scores(confusion)
        self.last_scores, self.last_confusion = scores, confusion.cpu()
        # Every rank holds the same summed matrix, so syncing these is a no-op that keeps DDP quiet.
        self.log_dict(scores.as_dict("val/"), prog_bar=True, sync_dist=True)
        for name, iu in zip(self.class_names, scores.per_class_iu, strict=False):
            if not math.isnan(iu):
                self.log(f"val_iu/{name}", iu, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The resolved config and git sha travel with every checkpoint (set by fcnlab.train).
        checkpoint["fcnlab"] = getattr(self, "run_info", {})

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("FCNModule needs an optimizer to train")
        optimizer = build_optimizer(self.optimizer_factory, self.model, self.bias_lr_mult)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(
            self.scheduler_factory, optimizer, self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_module(checkpoint: str, map_location: str = "cpu") -> FCNModule:
    """An ``FCNModule`` from a training checkpoint, for evaluation or prediction (one read of the file).

    The stored model options are reused with ``pretrained=None``: the checkpoint holds every weight,
    so the backbone's original weights file need not exist any more.
    """
    from pathlib import Path

    if not Path(checkpoint).is_file():
        raise FCNLabError(f"ckpt={checkpoint}: no such file; check the path")
    try:  # our own training checkpoints: they pickle the run's hyperparameters
        saved = torch.load(checkpoint, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise FCNLabError(
            f"ckpt={checkpoint}: not a readable checkpoint ({type(e).__name__}); truncated?"
        ) from None
    hparams = saved.get("hyper_parameters", {}) if isinstance(saved, dict) else {}
    if "model" not in hparams or "state_dict" not in saved:
        raise FCNLabError(f"ckpt={checkpoint}: not an fcnlab training checkpoint (no model options stored)")
    module = FCNModule(**{**hparams, "model": {**hparams["model"], "pretrained": None}})
    module.load_state_dict(saved["state_dict"])
    return module
