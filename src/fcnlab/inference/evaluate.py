"""Evaluate a trained FCN on a protocol's val split: the four metrics and per-class IU.

One confusion matrix over the whole split, as training's validation. The data is fed in the
checkpoint's input space (stored in it; caffe for a torchfcn file), whatever the data config says.
``infer`` (``conf/infer/``: single-scale by default, ``infer=msflip`` …) is how the net is run on
each image (:func:`fcnlab.models.inference.infer_logits`). ``sweep=<dir>`` evaluates every finished
job of a sweep instead (:mod:`fcnlab.inference.sweep_eval`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from fcnlab.errors import FCNLabError
from fcnlab.models.inference import InferSettings, infer_settings
from fcnlab.runinfo import write_json


def evaluate(cfg: DictConfig) -> dict:
    """One checkpoint (``ckpt=``) or, with ``sweep=<dir>``, every finished job of a sweep."""
    settings = infer_settings(cfg.get("infer"))  # before anything is loaded
    if cfg.get("sweep"):
        from fcnlab.inference.sweep_eval import evaluate_sweep

        return evaluate_sweep(cfg, settings)
    result = evaluate_checkpoint(cfg, str(cfg.ckpt), cfg.data, settings)
    write_json(Path(cfg.paths.output_dir) / "eval.json", result)
    return result


def evaluate_checkpoint(cfg: DictConfig, ckpt: str, data: DictConfig, settings: InferSettings) -> dict:
    """The four metrics, per-class IU and time per image of ``ckpt`` on ``data``, run as ``settings``."""
    from hydra.utils import instantiate

    from fcnlab.training import load_module

    torch.set_flush_denormal(True)
    module = load_module(ckpt, name=cfg.model.get("name"))
    module.infer = settings
    # The net's own input space, never the data config's: a model is not fed another input.
    datamodule = instantiate(data, _convert_="all", input_space=module.input_space.as_dict())
    if module.model.num_classes != datamodule.num_classes:
        raise FCNLabError(
            f"ckpt={ckpt} predicts {module.model.num_classes} classes, data has "
            f"{datamodule.num_classes}; evaluate on the data it was trained for"
        )
    module.class_names = datamodule.class_names
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    start = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    seconds = time.perf_counter() - start
    images = len(trainer.val_dataloaders.dataset)
    scores = module.last_scores
    return {
        "ckpt": str(ckpt),
        "model": module.model.name,
        "input_space": module.input_space.name,
        "infer": settings.as_dict(),
        "metrics": scores.as_dict(),
        "per_class_iu": dict(zip(datamodule.class_names, scores.per_class_iu, strict=False)),
        "images": images,
        "seconds": round(seconds, 2),
        "ms_per_image": round(1000 * seconds / max(1, images), 1),
    }


def format_table(result: dict) -> str:
    if "jobs" in result:
        from fcnlab.inference.sweep_eval import format_sweep

        return format_sweep(result)
    lines = [f"inference: {result['infer']['label']}, {result['ms_per_image']:.0f} ms/image", ""]
    lines += [f"{'metric':<22} {'%':>6}", "-" * 29]
    lines += [f"{k:<22} {100 * v:6.1f}" for k, v in result["metrics"].items()]
    lines += ["", f"{'class':<22} {'IU %':>6}", "-" * 29]
    lines += [
        f"{k:<22} {'—' if math.isnan(v) else f'{100 * v:.1f}':>6}" for k, v in result["per_class_iu"].items()
    ]
    return "\n".join(lines)
