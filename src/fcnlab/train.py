"""Train and evaluate one FCN variant, configured by Hydra (``conf/train.yaml``).

    fcnlab-train                                   # tiny FCN-8s on the generated data, CPU
    fcnlab-train model=fcn16s init_from=<fcn32s best.ckpt>
    fcnlab-train data=voc_sbd data.root=/data/voc experiment=table2_voc trainer=gpu
    fcnlab-train -m model=fcn32s,fcn16s seed=0,1   # a multirun sweep

Writes into the job's output dir: ``checkpoints/{best,last}.ckpt``, logs, the split lists used and
``results.json`` (the best checkpoint's four metrics, per-class IU, init, seed, wall time, git sha),
which ``fcnlab-report`` reads. Returns ``optimized_metric`` to a sweeper.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fcnlab.errors import FCNLabError
from fcnlab.runinfo import git_sha, hardware, versions, write_json
from fcnlab.training.distributed import ddp_job_scope, rank_suffix, use_job_commands_for_ranks

log = logging.getLogger("fcnlab.train")
# Quiet two messages Lightning prints in every job of a sweep and that say nothing about the run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# conf/hydra/launcher/submitit_*.yaml fill the submitit plugin's schema of the same name on purpose
# (so `hydra/launcher=submitit_slurm` is sized from `cluster:`); Hydra validates them and says so.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(lambda record: "litlogger" not in record.getMessage())
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _stage_checkpoint(sweep_dir: str, parent: str | None, seed: int) -> str | None:
    """Staged init inside a sweep: the parent variant's best checkpoint, same seed (None: no parent)."""
    if parent in (None, "", "null", "None"):
        return None
    return f"{sweep_dir}/{parent}_seed{seed}/checkpoints/best.ckpt"


OmegaConf.register_new_resolver("fcnlab_pid", lambda: str(os.getpid()), use_cache=True, replace=True)
OmegaConf.register_new_resolver("fcnlab_mul", lambda a, b: type(a)(a * b), replace=True)
OmegaConf.register_new_resolver("fcnlab_stage_checkpoint", _stage_checkpoint, replace=True)
OmegaConf.register_new_resolver("fcnlab_rank_suffix", rank_suffix, replace=True)


def model_kwargs(model_cfg: DictConfig | dict) -> dict:
    """``create_model`` keywords from the ``model`` config group (drops the report-only ``variant`` and
    ``input_space``, which goes to the data and the checkpoint instead)."""
    cfg = (
        OmegaConf.to_container(model_cfg, resolve=True)
        if isinstance(model_cfg, DictConfig)
        else dict(model_cfg)
    )
    for key in ("variant", "parent", "stages", "input_space"):  # sweep bookkeeping, data-side options
        cfg.pop(key, None)
    extra = cfg.pop("backbone_kwargs", None) or {}
    return {**cfg, **extra}


def check_config(cfg: DictConfig) -> None:
    """Catch bad settings before anything expensive runs; one line naming the option each."""
    lr = cfg.optimizer.get("lr")
    if lr is None or not lr > 0:
        raise FCNLabError(f"optimizer.lr={lr}: the learning rate must be positive")
    if cfg.model.num_classes != cfg.data.num_classes:
        raise FCNLabError(
            f"model.num_classes={cfg.model.num_classes} but the data has {cfg.data.num_classes} "
            "classes; drop the override or set data.num_classes"
        )
    if cfg.get("resume") not in ("auto", "never"):
        raise FCNLabError(f"resume={cfg.get('resume')}: use auto (continue a killed run in its dir) or never")
    for key in ("init_from", "ckpt_path"):
        if cfg.get(key) and not Path(cfg[key]).is_file():
            raise FCNLabError(
                f"{key}={cfg[key]}: no such file; check the path (a sweep's parent stage may have failed)"
            )


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
    last = out_dir / "checkpoints" / "last.ckpt"
    return str(last) if cfg.resume == "auto" and last.is_file() else None


def train(cfg: DictConfig) -> dict:
    """Fit, then re-validate the best checkpoint; returns (and writes) the results record."""
    from hydra.utils import instantiate

    from fcnlab.data.input_space import resolve_input_space
    from fcnlab.models import load_staged
    from fcnlab.models.weights import read_checkpoint, stored_input_space
    from fcnlab.training import FCNModule
    from fcnlab.training.callbacks import progress_callbacks
    from fcnlab.training.figure_panels import write_figure_panels

    start = time.perf_counter()
    torch.set_flush_denormal(True)  # random-init nets on CPU can crawl on denormal floats
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("pretrain_only"):  # make reproduce-table2 times this stage on its own
        ensure_pretrained(cfg)
        return {"variant": "pretrain", "seed": cfg.seed, "status": "ok", "metrics": {}}
    check_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    claim_output_dir(out_dir, job_overrides(), take_over=cfg.resume == "never")
    if cfg.resume == "auto" and (done := finished_record(out_dir)) is not None:
        log.info("%s already finished (results.json); skipped. resume=never retrains it", out_dir)
        return done
    ckpt_path = resume_checkpoint(cfg, out_dir)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    ensure_pretrained(cfg)

    parent = read_checkpoint(cfg.init_from, "init_from") if cfg.init_from else None
    parent_space = stored_input_space(parent) if parent is not None else None
    space = resolve_input_space(
        cfg.model.get("input_space"), cfg.model.pretrained, parent_space["name"] if parent_space else None
    )
    datamodule = instantiate(cfg.data, _convert_="all", input_space=space.name)
    module = FCNModule(
        model=model_kwargs(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        loss_normalize=cfg.loss.normalize,
        bias_lr_mult=cfg.loss.bias_lr_mult,
        class_names=datamodule.class_names,
        seed=cfg.seed,
        input_space=space.as_dict(),
    )
    if not any(p.requires_grad for p in module.model.parameters()):
        raise FCNLabError(f"model.freeze_backbone=true leaves {cfg.model.name} nothing to train")
    if parent is not None:
        fresh = load_staged(module.model, parent)
        log.info("initialised from %s; new layers: %s", cfg.init_from, ", ".join(fresh) or "none")
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # "hydra" is there under compose()
    module.run_info = {"config": OmegaConf.to_container(job_cfg, resolve=True), "git_sha": git_sha()}

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += progress_callbacks(cfg.trainer.get("enable_progress_bar", True))  # rich on a tty, else lines
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    use_job_commands_for_ranks()  # strategy=ddp: ranks re-run this job, not the whole command line
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:  # the reported numbers are the best checkpoint's, re-measured in full
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        if trainer.is_global_zero:  # the report's Figure-4 panels, drawn by these (best) weights
            write_figure_panels(module, datamodule, out_dir, variant=cfg.model.variant, checkpoint=best)
    scores = module.last_scores
    results = {
        "variant": cfg.model.variant,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "status": "ok" if scores is not None else "failed",
        "metrics": scores.as_dict() if scores else {},
        "per_class_iu": dict(zip(datamodule.class_names, scores.per_class_iu, strict=False))
        if scores
        else {},
        "class_names": datamodule.class_names,
        "confusion": module.last_confusion.tolist() if module.last_confusion is not None else None,
        "data_root": str(cfg.data.root),
        "protocol": cfg.data.protocol,
        "init_from": cfg.init_from,
        "resumed_from": ckpt_path,
        "pretrained": cfg.model.pretrained,
        "input_space": space.name,
        "best_checkpoint": best,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "git_sha": module.run_info["git_sha"],
        "versions": versions(),
        "hardware": hardware(),
    }
    if trainer.is_global_zero:
        write_json(out_dir / "results.json", results)
    return results


def fail_record(cfg: DictConfig, error: str) -> None:
    """A results.json marking this job failed, so a sweep report shows the row as failed."""
    try:
        out = Path(cfg.paths.output_dir)
        write_json(
            out / "results.json",
            {
                "variant": cfg.model.variant,
                "model": cfg.model.name,
                "seed": cfg.seed,
                "status": "failed",
                "error": error,
            },
        )
    except Exception:
        pass


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        with ddp_job_scope():  # a multirun's next job starts its own DDP ranks
            results = train(cfg)
    except FCNLabError as e:
        message = str(e).strip().splitlines()[-1].removeprefix("fcnlab.errors.FCNLabError: ")
        fail_record(cfg, message)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # this job fails; the sweep goes on and the report marks the row
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    finally:
        if "wandb" in sys.modules:
            from fcnlab.training.wandb_media import finish_wandb

            finish_wandb()  # a failed job must not leave its run open for the next one; prints `wandb sync`
    value = results["metrics"].get(cfg.optimized_metric.removeprefix("val/"), math.nan)
    log.info(
        "%s seed %s: %s",
        results["variant"],
        results["seed"],
        ", ".join(f"{k} {100 * v:.1f}" for k, v in results["metrics"].items()),
    )
    return value


if __name__ == "__main__":
    main()
