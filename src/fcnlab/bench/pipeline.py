"""The embedded default end to end: loader vs training throughput, metric cost, Table 2 wall time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from fcnlab.bench.measure import median, time_calls
from fcnlab.config import compose_train_config
from fcnlab.data.throughput import loader_images_per_s


def default_throughput(overrides: list[str], reps: int) -> dict:
    """Train-loader images/s vs training-step images/s of the default run (tiny FCN-8s, shapes data).

    The step is timed on one real batch of the loader's shape (random weights: the speed does not
    depend on them), without Lightning's bookkeeping, so it is an upper bound on training speed
    and the loader/training ratio a lower bound. The loader is timed on its second epoch (the
    first starts its workers), alone on the machine; in a real run its workers share the cores.
    """
    from hydra.utils import instantiate

    from fcnlab.data.classes import VOID
    from fcnlab.data.transforms import pad_collate
    from fcnlab.models import create_model
    from fcnlab.training.optim import build_optimizer
    from fcnlab.training.run import model_kwargs

    cfg = compose_train_config(overrides, job="bench")
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # generates data/shapes on first use
    datamodule.setup("fit")
    batch = min(cfg.data.batch_size, len(datamodule.train_set))
    images, masks = pad_collate([datamodule.train_set[i] for i in range(batch)])
    model = create_model(**{**model_kwargs(cfg.model), "pretrained": None}).train()
    optimizer = build_optimizer(instantiate(cfg.optimizer), model, cfg.loss.bias_lr_mult)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), masks, ignore_index=VOID).backward()
        optimizer.step()

    step_ms = median(time_calls(step, reps, torch.device("cpu")))
    epochs = 2
    loader_rate, seen = loader_images_per_s(datamodule, epochs)
    train_rate = batch / step_ms * 1000
    return {
        "loader_images_per_s": loader_rate,
        "train_images_per_s": train_rate,
        "loader_over_train": loader_rate / train_rate,
        "default_setup": (
            f"{cfg.model.name} {cfg.model.backbone} {cfg.model.geometry}, batch {batch} of "
            f"{tuple(images.shape[-2:])} crops, {datamodule.num_workers} loader workers, "
            f"{epochs} epochs of {seen} images (the last timed), step median of {reps}"
        ),
    }


def metric_cost(reps: int, height: int = 375, width: int = 500, num_classes: int = 21) -> dict:
    """Per-image validation bookkeeping at VOC size: argmax, confusion-matrix update, the four scores."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    from fcnlab.data.classes import VOID
    from fcnlab.evaluation import segmentation_scores

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, num_classes, height, width, generator=gen)
    target = torch.randint(0, num_classes, (1, height, width), generator=gen)
    target[:, ::17] = VOID  # some void pixels, as VOC's boundaries
    confusion = MulticlassConfusionMatrix(num_classes, ignore_index=VOID, validate_args=False)
    pred = logits.argmax(1)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        argmax_ms = median(time_calls(lambda: logits.argmax(1), reps, cpu))
        update_ms = median(time_calls(lambda: confusion.update(pred, target), reps, cpu))
        scores_ms = median(time_calls(lambda: segmentation_scores(confusion.compute()), reps, cpu))
    return {
        "metric_image": f"{height}x{width}, {num_classes} classes",
        "argmax_ms_per_image": argmax_ms,
        "confusion_update_ms_per_image": update_ms,
        "segmentation_scores_ms": scores_ms,
    }


def table2_wall_time(runs_dir: str | os.PathLike = "results/runs") -> dict | None:
    """Per-stage wall seconds of the newest Table 2 sweep under ``runs_dir``, or None if none ran."""
    found = sorted(Path(runs_dir).glob("*/**/results.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    sweep = Path(runs_dir) / found[-1].relative_to(runs_dir).parts[0]
    stages = {}
    for path in sorted(sweep.glob("**/results.json")):
        record = json.loads(path.read_text())
        stages[path.parent.relative_to(sweep).as_posix()] = record.get("wall_seconds")
    known = [s for s in stages.values() if isinstance(s, (int, float))]
    return {"sweep": sweep.as_posix(), "stages_seconds": stages, "total_seconds": sum(known)}
