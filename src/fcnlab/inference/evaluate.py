"""Evaluate a trained FCN on a protocol's val split: the four metrics and per-class IU.

One confusion matrix over the whole split, as training's validation. The data is fed in the
checkpoint's input space (stored in it; caffe for a torchfcn file), whatever the data config says.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from fcnlab.errors import FCNLabError
from fcnlab.runinfo import write_json


def evaluate(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate

    from fcnlab.training import load_module
    from fcnlab.training.checks import build

    torch.set_flush_denormal(True)
    module = load_module(cfg.ckpt, name=cfg.model.get("name"))
    # The net's own input space, never the data config's: a model is not fed another input.
    datamodule = build("data", cfg.data, _convert_="all", input_space=module.input_space.as_dict())
    if module.model.num_classes != datamodule.num_classes:
        raise FCNLabError(
            f"ckpt={cfg.ckpt} predicts {module.model.num_classes} classes, data has "
            f"{datamodule.num_classes}; evaluate on the data it was trained for"
        )
    module.class_names = datamodule.class_names
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    scores = module.last_scores
    result = {
        "ckpt": str(cfg.ckpt),
        "model": module.model.name,
        "input_space": module.input_space.name,
        "metrics": scores.as_dict(),
        "per_class_iu": dict(zip(datamodule.class_names, scores.per_class_iu, strict=False)),
    }
    write_json(Path(cfg.paths.output_dir) / "eval.json", result)
    return result


def format_table(result: dict) -> str:
    lines = [f"{'metric':<22} {'%':>6}", "-" * 29]
    lines += [f"{k:<22} {100 * v:6.1f}" for k, v in result["metrics"].items()]
    lines += ["", f"{'class':<22} {'IU %':>6}", "-" * 29]
    lines += [
        f"{k:<22} {'—' if math.isnan(v) else f'{100 * v:.1f}':>6}" for k, v in result["per_class_iu"].items()
    ]
    return "\n".join(lines)
