"""Weights & Biases extras: a logger factory (one fresh run per job, a sweep's jobs in one group), a
callback logging per-class IU, the confusion matrix and mask overlays, and the end-of-run ``wandb sync``
hint. Nothing here imports wandb unless a wandb run is actually used."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.seed import isolate_rng

from fcnlab.data.classes import VOID
from fcnlab.data.input_space import get_input_space
from fcnlab.wandb_runs import finish_wandb, sweep_group

log = logging.getLogger("fcnlab.train")


def _multirun_sweep_dir() -> str | None:
    """The sweep dir when this process runs a Hydra multirun job, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None


def wandb_logger(group_by_sweep: bool = True, **kwargs: Any) -> WandbLogger:
    """Lightning's ``WandbLogger`` on a fresh run (Lightning would reuse an open one), grouped by sweep."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            log.warning("wandb run %s was still open; finishing it so this job gets its own", wandb.run.name)
            finish_wandb()
    if group_by_sweep:
        kwargs["group"] = sweep_group(kwargs.get("group") or "", _multirun_sweep_dir()) or None
    logger = WandbLogger(**kwargs)
    # Lightning always passes `anonymous`, which wandb >= 0.2x only warns about in every job. Private
    # attribute, pinned to lightning >=2.5,<2.7 (tests/test_lightning_pins.py).
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def confusion_heatmap(confusion: np.ndarray, class_names: list[str], title: str) -> np.ndarray:
    """An RGB image (H, W, 3) of the row-normalised confusion matrix (rows: truth), for a wandb.Image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = confusion.astype(np.float64)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(class_names)
    size = max(4.0, 0.32 * n + 2)
    fig = Figure(figsize=(size + 1, size), dpi=90)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's pixels")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class WandbMediaCallback(Callback):
    """Per-class IU table each validation; confusion matrix (table, chart, heatmap) and mask overlays on the
    first ``num_images`` val images every ``every_n_epochs`` epochs and for the re-validated best checkpoint.

    A no-op unless a ``WandbLogger`` is among the trainer's loggers; logs from global rank 0 only. The extra
    forward passes run in eval mode under ``no_grad`` and leave every RNG as they found it, so training's
    metrics are the same with or without it. ``every_n_epochs=0``: images and confusion only for the best.
    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 8, log_config: bool = True) -> None:
        super().__init__()
        if every_n_epochs < 0 or num_images < 0:
            raise ValueError("callbacks.wandb_media: every_n_epochs and num_images must be >= 0")
        self.every_n_epochs, self.num_images, self.log_config = every_n_epochs, num_images, log_config
        self._samples: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._logged_confusion: torch.Tensor | None = None

    @staticmethod
    def _run(trainer: L.Trainer) -> Any:
        """The wandb run of the trainer's ``WandbLogger`` on global rank 0, else None."""
        if not trainer.is_global_zero:
            return None
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                return logger.experiment
        return None

    def _log_config(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The whole resolved job config as the run's config (set by train.py in ``run_info``)."""
        config = getattr(pl_module, "run_info", {}).get("config")
        run = self._run(trainer) if self.log_config and config else None
        if run is not None:
            run.config.update(config, allow_val_change=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_config(trainer, pl_module)  # after Lightning logged the hparams: the richer `model` wins

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # trainer.validate logged the hparams once more
            self._log_config(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        confusion = getattr(pl_module, "last_confusion", None)
        scores = getattr(pl_module, "last_scores", None)
        if confusion is None or scores is None or confusion is self._logged_confusion:
            return  # nothing new (an epoch with no labelled pixels keeps the previous one)
        run = self._run(trainer)
        if run is None:
            return
        self._logged_confusion = confusion
        # The extra forward passes must not shift training's draws (CUDA's too, once it is in use).
        with isolate_rng(include_cuda=torch.cuda.is_initialized()):
            self._log(run, trainer, pl_module, scores, confusion)

    def _log(self, run: Any, trainer: L.Trainer, pl_module: L.LightningModule, scores, confusion) -> None:
        import wandb

        best = trainer.state.fn == TrainerFn.VALIDATING  # train.py re-validates the best checkpoint
        prefix, epoch = ("best" if best else "val"), trainer.current_epoch
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(len(confusion))]))
        ius = [None if math.isnan(v) else float(v) for v in scores.per_class_iu]
        table = wandb.Table(
            columns=["epoch", "class", "iu"], data=[[epoch, n, iu] for n, iu in zip(names, ius, strict=False)]
        )
        payload: dict[str, Any] = {f"{prefix}/per_class_iu": table}
        if best:
            title = "per-class IU, best checkpoint"
            payload["best/per_class_iu_chart"] = wandb.plot.bar(table, "class", "iu", title=title)
            run.summary.update({f"best/{k}": v for k, v in scores.as_dict().items()})
        if best or (self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0):
            payload.update(self._confusion_payload(prefix, confusion.numpy(), names, epoch))
            if self.num_images and len(names) <= VOID:  # wandb masks hold 0..255, and 255 is void here
                payload[f"{prefix}/predictions"] = self._overlays(trainer, pl_module, names)
        payload.update({"epoch": epoch, "trainer/global_step": trainer.global_step})
        run.log(payload)

    @staticmethod
    def _confusion_payload(prefix: str, counts: np.ndarray, names: list[str], epoch: int) -> dict[str, Any]:
        import wandb

        rows = [[names[i], names[j], int(counts[i, j])] for i in range(len(names)) for j in range(len(names))]
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
        fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
        title = f"{prefix} confusion (pixels), epoch {epoch}"
        heatmap = confusion_heatmap(counts, names, f"{prefix} confusion, row-normalised, epoch {epoch}")
        return {
            f"{prefix}/confusion_matrix": wandb.plot_table(
                "wandb/confusion_matrix/v1", table, fields, {"title": title}
            ),
            f"{prefix}/confusion_heatmap": wandb.Image(heatmap),
        }

    def _val_samples(self, trainer: L.Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``num_images`` validation samples, read once (no augmentation, no random draws)."""
        if self._samples is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            dataset = getattr(loader, "dataset", None)
            if dataset is None:
                self._samples = []
            else:
                self._samples = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
        return self._samples

    def _overlays(self, trainer: L.Trainer, pl_module: L.LightningModule, names: list[str]) -> list:
        import wandb

        labels = {i: n for i, n in enumerate(names)} | {VOID: "void"}
        dm = trainer.datamodule
        space = get_input_space(getattr(dm, "input_space", None))
        samples = self._val_samples(trainer)
        was_training = pl_module.training
        pl_module.eval()
        shown = []
        try:
            for image, mask in samples:
                batch = trainer.precision_plugin.convert_input(image[None].to(pl_module.device))
                with torch.no_grad(), trainer.precision_plugin.forward_context():
                    pred = pl_module(batch).argmax(1)[0].cpu().numpy().astype(np.uint8)
                rgb = space.to_rgb(image).permute(1, 2, 0).numpy()
                shown.append((rgb, mask.numpy().astype(np.uint8), pred))
        finally:
            pl_module.train(was_training)
        # One size for the whole panel (wandb misdraws a list of differently sized images): pad
        # bottom/right with black pixels and void labels.
        h, w = max((s[0].shape[0] for s in shown), default=0), max((s[0].shape[1] for s in shown), default=0)
        images = []
        for index, (rgb, truth, pred) in enumerate(shown):
            pad = ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]))
            masks = {
                key: {"mask_data": np.pad(data, pad, constant_values=VOID), "class_labels": labels}
                for key, data in (("predictions", pred), ("ground_truth", truth))
            }
            caption = f"val image {index}"
            images.append(wandb.Image(np.pad(rgb, (*pad, (0, 0))), masks=masks, caption=caption))
        return images
