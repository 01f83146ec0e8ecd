"""Evaluate a trained FCN on a protocol's val split: the four metrics and per-class IU.

One confusion matrix over the whole split, as training's validation. The data is fed in the
checkpoint's input space (stored in it; caffe for a torchfcn file), whatever the data config says.
``infer`` (``conf/infer/``: single-scale by default, ``infer=msflip`` …) is how the net is run on
each image (:func:`fcnlab.models.tta.infer_logits`). ``sweep=<dir>`` evaluates every finished
job of a sweep instead (:mod:`fcnlab.inference.sweep_eval`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from fcnlab.atomic import own_outputs, refuse_foreign, write_json
from fcnlab.errors import FCNLabError
from fcnlab.inference.budget import describe, is_out_of_memory
from fcnlab.models.tta import InferSettings, infer_settings

EVAL_JSON = "eval.json"  # the run folder's record (a sweep's pass: the summary; each job: results_tta.json)


def _short(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def check_same_classes(ckpt: str, module, datamodule) -> list[str]:
    """The class names to score under: the checkpoint's (a file that names none takes the data's);
    another count or other names than the data's is one line."""
    if module.model.num_classes != datamodule.num_classes:
        raise FCNLabError(
            f"ckpt={ckpt} predicts {module.model.num_classes} classes, data has "
            f"{datamodule.num_classes}; evaluate on the data it was trained for"
        )
    stored = module.hparams.get("class_names")
    if stored is None:
        return list(datamodule.class_names)
    if list(stored) != list(datamodule.class_names):
        k = next(i for i, (a, b) in enumerate(zip(stored, datamodule.class_names, strict=True)) if a != b)
        raise FCNLabError(
            f"ckpt={ckpt} was trained on classes {_short(list(stored))} but the data's class {k} is "
            f"{datamodule.class_names[k]!r}, not {stored[k]!r}; evaluate on the data it was trained for "
            "(same classes, same order)"
        )
    return list(stored)


def evaluate(cfg: DictConfig) -> dict:
    """One checkpoint (``ckpt=``) or, with ``sweep=<dir>``, every finished job of a sweep."""
    settings = infer_settings(cfg.get("infer"))  # before anything is loaded
    out_dir = Path(cfg.paths.output_dir)
    refuse_foreign([out_dir / EVAL_JSON], "fcnlab-eval", "choose another hydra.run.dir")
    with own_outputs(out_dir, [EVAL_JSON], "fcnlab-eval"):
        if cfg.get("sweep"):
            from fcnlab.inference.sweep_eval import evaluate_sweep

            return evaluate_sweep(cfg, settings)
        result = evaluate_checkpoint(cfg, str(cfg.ckpt), cfg.data, settings)
        write_json(out_dir / EVAL_JSON, result)
    return result


def evaluate_checkpoint(cfg: DictConfig, ckpt: str, data: DictConfig, settings: InferSettings) -> dict:
    """The four metrics, per-class IU and time per image of ``ckpt`` on ``data``, run as ``settings``."""
    from hydra.utils import instantiate

    from fcnlab.training import load_module
    from fcnlab.training.settings import build

    torch.set_flush_denormal(True)
    module = load_module(ckpt, name=cfg.model.get("name"))
    module.infer = settings
    # The net's own input space, never the data config's: a model is not fed another input.
    datamodule = build("data", data, _convert_="all", input_space=module.input_space.as_dict())
    module.class_names = check_same_classes(str(ckpt), module, datamodule)
    trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False, enable_checkpointing=False
    )
    start = time.perf_counter()
    try:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        raise FCNLabError(
            f"ckpt={ckpt}: out of memory while evaluating ({describe(settings)}); lower infer.scales or "
            "infer.crop (infer=slide), or use another device"
        ) from None
    seconds = time.perf_counter() - start
    images = len(trainer.val_dataloaders.dataset)
    scores = module.last_scores
    return {
        "ckpt": str(ckpt),
        "model": module.model.name,
        "input_space": module.input_space.name,
        "infer": settings.as_dict(),
        "metrics": scores.as_dict(),
        "per_class_iu": dict(zip(module.class_names, scores.per_class_iu, strict=False)),
        "class_names": list(module.class_names),
        "class_colors": module.class_colors,
        "images": images,
        "seconds": round(seconds, 2),
        "ms_per_image": round(1000 * seconds / max(1, images), 1),
    }


def format_table(result: dict) -> str:
    """The four metrics, then IU per class under the checkpoint's class names (the column fits them)."""
    if "jobs" in result:
        from fcnlab.inference.sweep_eval import format_sweep

        return format_sweep(result)
    width = max([22, *(len(k) for k in result["per_class_iu"])])
    lines = [f"inference: {result['infer']['label']}, {result['ms_per_image']:.0f} ms/image", ""]
    lines += [f"{'metric':<{width}} {'%':>6}", "-" * (width + 7)]
    lines += [f"{k:<{width}} {100 * v:6.1f}" for k, v in result["metrics"].items()]
    lines += ["", f"{'class':<{width}} {'IU %':>6}", "-" * (width + 7)]
    lines += [
        f"{k:<{width}} {'—' if math.isnan(v) else f'{100 * v:.1f}':>6}"
        for k, v in result["per_class_iu"].items()
    ]
    return "\n".join(lines)
