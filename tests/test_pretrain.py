"""Backbone pretraining through Lightning, for every tiny backbone: the same numbers as a plain loop, a
torchvision-layout file."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from fcnlab.models import backbone_spec, create_model, list_backbones
from fcnlab.models.backbone import fold_batchnorm
from fcnlab.training.pretrain import _loader, pretrain_backbone

SETTINGS = {"epochs": 2, "batch_size": 8, "lr": 0.02, "num_workers": 1, "seed": 4}


def plain_loop(data_root: str, backbone: str) -> tuple[dict, float]:
    """The pretraining written as a bare loop: folded weights and val accuracy to compare against."""
    torch.manual_seed(SETTINGS["seed"])
    root = Path(data_root) / "classification"
    train = _loader(root / "train", True, SETTINGS["batch_size"], SETTINGS["num_workers"], SETTINGS["seed"])
    val = _loader(root / "val", False, 100, 0, SETTINGS["seed"])
    spec = backbone_spec(backbone)
    model = spec.classifier(len(train.dataset.classes), batch_norm=True)
    if spec.nhwc_weights:  # as pretrain_backbone runs vgg16_tiny (NHWC)
        model = model.to(memory_format=torch.channels_last)
    lr, steps = SETTINGS["lr"], SETTINGS["epochs"] * len(train)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    for _ in range(SETTINGS["epochs"]):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    plain = fold_batchnorm(model.eval())
    with torch.no_grad():
        hits = [(plain(x).argmax(1) == y).sum().item() for x, y in val]
    return plain.state_dict(), sum(hits) / len(val.dataset)


@pytest.mark.parametrize("backbone", [b for b in list_backbones() if b.endswith("_tiny")])
def test_pretraining_equals_a_plain_loop_and_saves_a_torchvision_layout(backbone, tiny_data, tmp_path):
    L.seed_everything(0, workers=True)  # as fcnlab-train does first: Lightning must not re-seed workers
    out = tmp_path / "pretrained" / "tiny.pth"
    summary = pretrain_backbone(tiny_data, out, backbone, **SETTINGS)
    expected, accuracy = plain_loop(tiny_data, backbone)

    saved = torch.load(out, weights_only=True)
    assert list(saved) == list(expected) and all(torch.equal(saved[k], expected[k]) for k in expected)
    assert summary["val_accuracy"] == accuracy  # torchmetrics' accuracy, the exact fraction
    assert json.loads(out.with_suffix(".json").read_text()) == summary
    backbone_spec(backbone).classifier(len(summary["classes"])).load_state_dict(saved)  # strict: its layout
    # BatchNorm folded away, except GoogLeNet's own (part of torchvision's layout)
    assert any(k.endswith("running_mean") for k in saved) == (backbone == "googlenet_tiny")
    net = create_model("fcn32s", backbone=backbone, pretrained=str(out))  # loads as the FCN's backbone
    first_conv = next(m for m in net.backbone.features.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(first_conv.weight, next(iter(saved.values())))

    run = tmp_path / "pretrained" / "tiny"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert "train/loss_epoch" in rows[0] and "val/acc" in rows[0]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == SETTINGS["epochs"] - 1
    kept = sorted(p.name for p in out.parent.iterdir())
    assert kept == [".tiny.pth.lock", "tiny", "tiny.json", "tiny.pth"]  # no temp file; the lock stays, free

    stamp = out.stat().st_mtime_ns
    assert pretrain_backbone(tiny_data, out, backbone, **SETTINGS) == summary
    assert out.stat().st_mtime_ns == stamp
