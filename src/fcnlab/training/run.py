"""One training job, as ``fcnlab-train`` runs it (``fcnlab.cli.train``): check the config, own the
job's folder, fit, re-validate the best checkpoint and write ``results.json``.

Writes into the job's output dir: ``checkpoints/{best,last}.ckpt``, logs, the split lists used and
``results.json`` (the best checkpoint's four metrics, per-class IU, init, seed, wall time, git sha),
which ``fcnlab-report`` reads.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from fcnlab.atomic import write_json
from fcnlab.config import rank_suffix
from fcnlab.errors import FCNLabError
from fcnlab.models import backbone_options
from fcnlab.runinfo import git_sha, hardware, versions
from fcnlab.training.allocator import keep_freed_memory
from fcnlab.training.device import require_device, set_float32_precision
from fcnlab.training.distributed import use_job_commands_for_ranks
from fcnlab.training.rundir import (
    lock_run_dir,
    may_record_failure,
    resumable_last,
    unlock_run_dir,
)
from fcnlab.training.settings import build, check_config, check_resume_fits, check_scalars

log = logging.getLogger("fcnlab.train")


def model_kwargs(model_cfg: DictConfig | dict) -> dict:
    """The ``model`` group (``create_model``'s keywords) resolved, with the backbone's own defaults
    filled into ``backbone_kwargs`` so a checkpoint lists every option its net was built with."""
    cfg = (
        OmegaConf.to_container(model_cfg, resolve=True)
        if isinstance(model_cfg, DictConfig)
        else dict(model_cfg)
    )
    return {
        **cfg,
        "backbone_kwargs": backbone_options(cfg.get("backbone", "vgg16"), cfg.get("backbone_kwargs")),
    }


def stage_variant(cfg: DictConfig) -> str:
    """The Table-2 row a job stands for (``stage.variant``, set by each model config; else the net)."""
    return OmegaConf.select(cfg, "stage.variant", default=None) or cfg.model.name


def ensure_pretrained(cfg: DictConfig) -> None:
    """Pretrain the tiny backbone on the generated classification set if the run needs it and it's missing."""
    if cfg.model.pretrained is None or str(cfg.model.pretrained) != str(cfg.pretrain.output):
        return
    from fcnlab.data.synthetic import SyntheticConfig, generate
    from fcnlab.training.pretrain import pretrain_backbone

    if not (Path(cfg.pretrain.data_root) / "classification").is_dir():
        generate(cfg.pretrain.data_root, SyntheticConfig(**(cfg.data.get("generate") or {})))
    summary = pretrain_backbone(
        cfg.pretrain.data_root,
        cfg.pretrain.output,
        cfg.model.backbone,
        dict(cfg.model.backbone_kwargs or {}),
        epochs=cfg.pretrain.epochs,
        lr=cfg.pretrain.lr,
        batch_size=cfg.pretrain.batch_size,
    )
    log.info(
        "pretrained backbone %s: classification val accuracy %.1f%%",
        cfg.pretrain.output,
        100 * summary["val_accuracy"],
    )


def job_overrides() -> list[str]:
    """This job's command-line overrides (in a multirun: its own swept values), [] outside Hydra."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def claim_output_dir(out_dir: Path, overrides: list[str], take_over: bool = False) -> None:
    """Record which job owns ``out_dir``; refuse (unless ``take_over``) a folder left by a different job."""
    path = out_dir / "job.json"
    try:
        owner = json.loads(path.read_text())["overrides"]
    except (OSError, ValueError, KeyError):
        owner = None
    if owner is not None and owner != overrides and not take_over:
        raise FCNLabError(
            f"{out_dir} holds a run of other overrides ({' '.join(owner) or 'none'}); "
            "use another hydra.run.dir / hydra.sweep.dir, or resume=never to overwrite it"
        )
    if owner != overrides:
        write_json(path, {"overrides": overrides})


def finished_record(out_dir: Path) -> dict | None:
    """The results of a job that already finished in ``out_dir`` (None: not finished, or failed)."""
    try:
        record = json.loads((out_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("status") == "ok" else None


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """``ckpt_path`` if given, else (``resume=auto``) the ``last.ckpt`` a killed run left in ``out_dir``."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if cfg.resume != "auto":
        return None
    usable = resumable_last(out_dir / "checkpoints" / "last.ckpt")  # a truncated one: best.ckpt, said so
    return str(usable) if usable else None


def train(cfg: DictConfig) -> dict:
    """Fit, then re-validate the best checkpoint; returns (and writes) the results record."""
    start = time.perf_counter()
    torch.set_flush_denormal(True)  # random-init nets on CPU can crawl on denormal floats
    keep_freed_memory()  # large per-step tensors reuse heap memory (fcnlab.training.allocator)
    check_scalars(cfg)
    # Before any data is generated or backbone pretrained: a GPU run on a machine that cannot give
    # one stops here, in one line, instead of after minutes of work (or silently on the CPU).
    require_device(cfg.trainer.get("accelerator"), cfg.trainer.get("devices"))
    set_float32_precision(cfg.get("float32_matmul_precision", "highest"))
    if cfg.get("torch_threads"):  # sweeps running jobs side by side give each its share of the cores
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("pretrain_only"):  # make reproduce-table2 times this stage on its own
        ensure_pretrained(cfg)
        return {"variant": "pretrain", "seed": cfg.seed, "status": "ok", "metrics": {}}
    check_config(cfg)
    check_images_per_update(cfg)
    out_dir = Path(cfg.paths.output_dir)
    if not rank_suffix():  # DDP ranks > 0 run inside rank 0's job and folder
        lock_run_dir(out_dir)
    try:
        return _train_in(cfg, out_dir, start)
    finally:
        unlock_run_dir(out_dir)


def check_images_per_update(cfg: DictConfig) -> None:
    """``data.images_per_update``: FCNModule steps the optimizer itself, once per that many images
    (Lightning's accumulation counts batches); what that rules out, one line each."""
    n = cfg.data.get("images_per_update")
    if n is None:
        return
    key = f"data.images_per_update={n}"
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise FCNLabError(f"{key}: must be a whole number >= 1 (or null: one update a batch)")
    if (cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
        raise FCNLabError(f"{key} counts the update's images itself; drop trainer.accumulate_grad_batches")
    if cfg.trainer.get("gradient_clip_val"):
        raise FCNLabError(f"{key} steps the optimizer itself, which trainer.gradient_clip_val cannot clip")
    devices = cfg.trainer.get("devices")
    if cfg.trainer.get("strategy") not in (None, "auto") or (isinstance(devices, int) and devices > 1):
        raise FCNLabError(
            f"{key} trains on one device (its updates hold different numbers of batches, which DDP ranks "
            "cannot step in lockstep); use trainer=gpu, or data.images_per_update=null with crops"
        )


def _train_in(cfg: DictConfig, out_dir: Path, start: float) -> dict:
    """``train`` once this process holds ``out_dir``."""
    claim_output_dir(out_dir, job_overrides(), take_over=cfg.resume == "never")
    if cfg.resume == "auto" and (done := finished_record(out_dir)) is not None:
        log.info("%s already finished (results.json); skipped. resume=never retrains it", out_dir)
        return done
    ckpt_path = resume_checkpoint(cfg, out_dir)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    ensure_pretrained(cfg)
    module, datamodule = build_module(cfg)
    trainer = fit(cfg, module, datamodule, ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:  # the reported numbers are the best checkpoint's, re-measured in full
        from fcnlab.training.figure_panels import write_figure_panels

        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        if trainer.is_global_zero:  # the report's Figure-4 panels, drawn by these (best) weights
            write_figure_panels(module, datamodule, out_dir, variant=stage_variant(cfg), checkpoint=best)
    results = results_record(cfg, module, datamodule, trainer, ckpt_path, best, start)
    if trainer.is_global_zero:
        write_json(out_dir / "results.json", results)
    return results


def class_weights_option(cfg: DictConfig) -> list[float] | str | None:
    """``loss.class_weights`` as FCNModule takes it (a list, ``median_frequency`` or None)."""
    value = OmegaConf.select(cfg, "loss.class_weights", default=None)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def build_module(cfg: DictConfig):
    """The datamodule and the ``FCNModule`` (initialised from ``init_from`` if given), in the input
    space ``input_space`` resolves to for these weights."""
    from hydra.utils import instantiate

    from fcnlab.data.input_space import resolve_input_space
    from fcnlab.models import load_staged
    from fcnlab.models.weights import read_checkpoint as read_weights
    from fcnlab.models.weights import stored_input_space
    from fcnlab.training import FCNModule

    parent = read_weights(cfg.init_from, "init_from") if cfg.init_from else None
    parent_space = stored_input_space(parent) if parent is not None else None
    space = resolve_input_space(
        cfg.get("input_space"),
        cfg.model.pretrained,
        parent_space["name"] if parent_space else None,
        backbone=cfg.model.backbone,
    )
    datamodule = build("data", cfg.data, _convert_="all", input_space=space.name)
    module = FCNModule(
        model=model_kwargs(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        loss_normalize=cfg.loss.normalize,
        bias_lr_mult=cfg.loss.bias_lr_mult,
        class_names=datamodule.class_names,
        class_colors=datamodule.class_colors,
        seed=cfg.seed,
        input_space=space.as_dict(),
        class_weights=class_weights_option(cfg),
        infer=cfg.get("infer"),
        images_per_update=cfg.data.get("images_per_update"),
    )
    if not any(p.requires_grad for p in module.model.parameters()):
        raise FCNLabError(f"model.freeze_backbone=true leaves {cfg.model.name} nothing to train")
    if cfg.get("ckpt_path"):
        check_resume_fits(str(cfg.ckpt_path), module)
    if parent is not None:
        fresh = load_staged(module.model, parent)
        log.info("initialised from %s; new layers: %s", cfg.init_from, ", ".join(fresh) or "none")
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # "hydra" is there under compose()
    module.run_info = {"config": OmegaConf.to_container(job_cfg, resolve=True), "git_sha": git_sha()}
    return module, datamodule


def fit(cfg: DictConfig, module, datamodule, ckpt_path: str | None) -> L.Trainer:
    """The configured trainer, callbacks and loggers, fitted (resumed from ``ckpt_path`` if given)."""
    from hydra.utils import instantiate

    from fcnlab.training.callbacks import progress_callbacks

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += progress_callbacks(cfg.trainer.get("enable_progress_bar", True))  # rich on a tty, else lines
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: L.Trainer = build("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False)
    use_job_commands_for_ranks()  # strategy=ddp: ranks re-run this job, not the whole command line
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def results_record(cfg, module, datamodule, trainer, ckpt_path: str | None, best: str, start: float) -> dict:
    """``results.json``: the best checkpoint's scores with what produced them (``fcnlab-report`` reads it)."""
    scores = module.last_scores
    return {
        "variant": stage_variant(cfg),
        "model": cfg.model.name,
        "seed": cfg.seed,
        "status": "ok" if scores is not None else "failed",
        "metrics": scores.as_dict() if scores else {},
        "per_class_iu": dict(zip(datamodule.class_names, scores.per_class_iu, strict=False))
        if scores
        else {},
        "class_names": datamodule.class_names,
        "class_colors": module.class_colors,  # None: the VOC palette
        "confusion": module.last_confusion.tolist() if module.last_confusion is not None else None,
        "data_root": str(cfg.data.root),
        "protocol": cfg.data.protocol,
        "init_from": cfg.init_from,
        "resumed_from": ckpt_path,
        "pretrained": cfg.model.pretrained,
        "input_space": module.input_space.name,
        "infer": module.infer.as_dict(),
        "device": trainer.strategy.root_device.type,
        "precision": str(trainer.precision),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "best_checkpoint": best,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "git_sha": module.run_info["git_sha"],
        "versions": versions(),
        "hardware": hardware(),
    }


def fail_record(cfg: DictConfig, error: str) -> None:
    """A results.json marking this job failed, so a sweep report shows the row as failed."""
    try:
        out = Path(cfg.paths.output_dir)
        if not may_record_failure(out, job_overrides()):  # a finished record, or another job's folder
            return
        write_json(
            out / "results.json",
            {
                "variant": stage_variant(cfg),
                "model": cfg.model.name,
                "seed": cfg.seed,
                "status": "failed",
                "error": error,
            },
        )
    except Exception:
        pass
