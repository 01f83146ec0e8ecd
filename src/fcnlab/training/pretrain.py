"""Pretraining the tiny backbone as a classifier on the generated classification set.

This is the embedded default's stand-in for ImageNet: the FCN paper starts from a classifier and
convolutionalizes it. A tiny VGG16 without BatchNorm does not learn this set from scratch, so it
is trained *with* BatchNorm, and the BatchNorm is then folded into the conv weights
(:func:`fcnlab.models.vgg.fold_batchnorm`): the saved classifier is a plain VGG16-topology net in
torchvision's layout, loadable with ``model.pretrained=<file>`` exactly like the real VGG16 weights.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from fcnlab.data.input_space import IMAGENET_MEAN, IMAGENET_STD
from fcnlab.models.vgg import VGGClassifier, backbone_options, backbone_spec, fold_batchnorm

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
        generator=torch.Generator().manual_seed(seed),
    )


def folder_size(folder: Path) -> int:
    first = next(p for p in sorted(folder.rglob("*.jpg")))
    from PIL import Image

    with Image.open(first) as img:
        return img.size[0]


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def pretrain_backbone(
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
) -> dict:
    """Train, fold BatchNorm, save the plain classifier to ``out`` (+ ``out``.json with its accuracy).

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
    model = VGGClassifier(spec, num_classes, batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * len(train), pct_start=0.15)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        seen = loss_sum = 0.0
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
        log.info("pretrain epoch %d/%d: loss %.3f", epoch + 1, epochs, loss_sum / seen)
    plain = fold_batchnorm(model.eval())
    val_acc = accuracy(plain, val)
    summary = {
        "settings": settings,
        "val_accuracy": val_acc,
        "train_seconds": round(time.perf_counter() - start, 1),
        "classes": train.dataset.classes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(plain.state_dict(), tmp)
    os.replace(tmp, out)
    summary_path.write_text(json.dumps(summary, indent=1))
    log.info("pretrained %s: val accuracy %.1f%% after %d epochs", backbone, 100 * val_acc, epochs)
    return summary
