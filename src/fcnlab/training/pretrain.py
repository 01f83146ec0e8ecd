"""Pretraining a tiny backbone as a classifier on the generated classification set.

This is the embedded default's stand-in for ImageNet: the FCN paper starts from a classifier and
convolutionalizes it. A tiny VGG16 or AlexNet without BatchNorm does not learn this set from
scratch, so it is trained *with* BatchNorm, and the BatchNorm is then folded into the conv weights
(:func:`fcnlab.models.backbone.fold_batchnorm`): the saved classifier is a plain net of the family's
topology in torchvision's layout, loadable with ``model.pretrained=<file>`` exactly like the real
ImageNet weights. GoogLeNet has BatchNorm in its own layout, and keeps it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from torchvision import datasets
from torchvision.transforms import v2

from fcnlab.atomic import atomic_path, exclusive, write_json
from fcnlab.data.datamodule import worker_start_method
from fcnlab.data.input_space import IMAGENET_MEAN, IMAGENET_STD
from fcnlab.models import backbone_options, backbone_spec
from fcnlab.models.backbone import fold_batchnorm
from fcnlab.training.callbacks import AtomicModelCheckpoint, progress_callbacks

log = logging.getLogger(__name__)


def _loader(folder: Path, train: bool, batch_size: int, workers: int, seed: int) -> DataLoader:
    steps = [v2.ToImage()]
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.RandomResizedCrop(folder_size(folder), scale=(0.6, 1.0))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    data = datasets.ImageFolder(str(folder), transform=v2.Compose(steps))
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=train,
        num_workers=workers,
        drop_last=train,
        persistent_workers=workers > 0,
        multiprocessing_context=worker_start_method(workers),
        worker_init_fn=_keep_torch_worker_seed,
        generator=torch.Generator().manual_seed(seed),
    )


def folder_size(folder: Path) -> int:
    first = next(p for p in sorted(folder.rglob("*.jpg")))
    from PIL import Image

    with Image.open(first) as img:
        return img.size[0]


def _keep_torch_worker_seed(worker_id: int) -> None:
    """No-op on purpose: torch already seeded this worker from the loader's generator. Set, it keeps
    Lightning (``seed_everything(workers=True)``) from re-seeding the workers, which would change the
    augmentation draws and so the saved backbone."""


class ClassifierModule(L.LightningModule):
    """The backbone's classification pretraining: cross-entropy, nesterov SGD with a one-cycle schedule
    stepped every batch; validation reports top-1 accuracy (torchmetrics)."""

    def __init__(
        self, model: torch.nn.Module, lr: float = 0.1, weight_decay: float = 5e-4, total_steps: int = 1
    ) -> None:
        super().__init__()
        self.model, self.lr, self.weight_decay, self.total_steps = model, lr, weight_decay, total_steps
        self.val_acc = MulticlassAccuracy(model.num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_acc.update(self(x).argmax(1), y)
        self.log("val/acc", self.val_acc, prog_bar=True, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self) -> dict:
        opt = torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay, nesterov=True
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, self.lr, total_steps=self.total_steps, pct_start=0.15
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _trainer(log_dir: Path, epochs: int, steps_per_epoch: int, progress: bool) -> L.Trainer:
    """A CPU trainer that validates each epoch; CSV log and ``checkpoints/last.ckpt`` in ``log_dir``."""
    checkpoint = AtomicModelCheckpoint(
        dirpath=log_dir / "checkpoints", filename="last", monitor=None, enable_version_counter=False
    )
    return L.Trainer(
        accelerator="cpu",
        strategy=SingleDeviceStrategy(torch.device("cpu")),  # what it ran on before; never a DDP job's ranks
        max_epochs=epochs,
        logger=CSVLogger(log_dir.parent, name=log_dir.name, version=""),
        callbacks=[checkpoint, *progress_callbacks(progress)],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
    )


def _pretrain_backbone(
    data_root: str | os.PathLike,
    out: str | os.PathLike,
    backbone: str = "vgg16_tiny",
    backbone_kwargs: dict | None = None,
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 0.1,
    weight_decay: float = 5e-4,
    num_workers: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train, fold BatchNorm, save the plain classifier to ``out`` (+ ``out``.json with its accuracy).

    The run's CSV log and ``checkpoints/last.ckpt`` go to the folder ``out`` without its suffix.
    Reuses ``out`` when it exists with the same settings. Returns the summary dict.
    """
    out = Path(out)
    settings = {
        "data_root": str(data_root),
        "backbone": backbone,
        "backbone_kwargs": backbone_options(backbone, backbone_kwargs),  # with its defaults: the architecture
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
    }
    manifest = Path(data_root) / "fcnlab_synthetic.json"  # a regenerated dataset invalidates the cache
    settings["data_manifest"] = json.loads(manifest.read_text()) if manifest.is_file() else None
    summary_path = out.with_suffix(".json")
    if out.is_file() and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("settings") == settings:
            log.info(
                "pretrained backbone reused: %s (val accuracy %.1f%%)", out, 100 * summary["val_accuracy"]
            )
            return summary
    torch.manual_seed(seed)
    root = Path(data_root) / "classification"
    spec = backbone_spec(backbone, backbone_kwargs)
    train = _loader(root / "train", True, batch_size, num_workers, seed)
    val = _loader(root / "val", False, 100, 0, seed)
    num_classes = len(train.dataset.classes)
    model = spec.classifier(num_classes, batch_norm=True)
    if spec.nhwc_weights:  # the tiny VGG: NHWC weights and input, 1.6x faster steps (docs/performance.md)
        model = model.to(memory_format=torch.channels_last)
    module = ClassifierModule(model, lr, weight_decay, total_steps=epochs * len(train))
    trainer = _trainer(out.with_suffix(""), epochs, len(train), progress)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    plain = fold_batchnorm(model.eval())
    (scores,) = trainer.validate(ClassifierModule(plain), dataloaders=val, verbose=False)  # the saved net
    val_acc = round(scores["val/acc"], 6)  # a float32 of correct / total, back to that fraction
    summary = {
        "settings": settings,
        "val_accuracy": val_acc,
        "train_seconds": round(time.perf_counter() - start, 1),
        "classes": train.dataset.classes,
    }
    with atomic_path(out) as tmp, tmp.open("wb") as f:  # a file object: no temp name inside the archive
        torch.save(plain.state_dict(), f)
    write_json(summary_path, summary)
    log.info("pretrained %s: val accuracy %.1f%% after %d epochs", backbone, 100 * val_acc, epochs)
    return summary


@functools.wraps(_pretrain_backbone)
def pretrain_backbone(data_root: str | os.PathLike, out: str | os.PathLike, *args, **kwargs) -> dict:
    with exclusive(out):  # jobs started side by side (a sweep's lanes): one pretrains, the rest reuse it
        return _pretrain_backbone(data_root, out, *args, **kwargs)
