"""A training job's settings checked before anything expensive runs: one line naming the option each
(``fcnlab.training.run.train`` calls them first)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fcnlab.atomic import check_not_data
from fcnlab.errors import FCNLabError
from fcnlab.models.tta import infer_settings
from fcnlab.training.rundir import read_checkpoint


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(cfg: DictConfig, key: str, minimum: int, what: str, allowed: tuple = ()) -> None:
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value in allowed and not isinstance(value, bool):
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise FCNLabError(f"{key}={value}: must be {what}")


def check_scalars(cfg: DictConfig) -> None:
    """Numbers a user types on the command line: the right type and range, one line naming the option."""
    _whole(cfg, "seed", 0, "a whole number from 0 to 4294967295")
    if cfg.seed > 2**32 - 1:
        raise FCNLabError(f"seed={cfg.seed}: must be a whole number from 0 to 4294967295")
    lr = cfg.optimizer.get("lr")
    if lr is not None and not _is_number(lr):
        raise FCNLabError(f"optimizer.lr={lr}: the learning rate must be a positive number, e.g. 1e-3")
    _whole(cfg, "trainer.max_epochs", 1, "a whole number >= 1 (or -1 with trainer.max_steps)", (None, -1))
    _whole(cfg, "data.batch_size", 1, "a whole number >= 1")
    _whole(cfg, "data.val_batch_size", 1, "a whole number >= 1")
    _whole(cfg, "data.crop_size", 1, "a whole number >= 1 (or null: whole images)", (None,))
    _whole(cfg, "data.num_workers", 0, "a whole number >= 0 (or null: half the cores)", (None,))
    _whole(cfg, "torch_threads", 1, "a whole number >= 1 (or null: torch's default, one per core)", (None,))
    infer_settings(cfg.get("infer"))  # validation's test-time inference: one line per bad option
    numeric = [f"{group}.{k}" for group in ("optimizer", "scheduler") for k in (cfg.get(group) or {})]
    numeric += [f"trainer.{k}" for k in TRAINER_NUMBERS]
    for key in numeric:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, str) and not key.rpartition(".")[2].startswith("_"):
            raise FCNLabError(f"{key}={value}: must be a number")


# Trainer options given as numbers (a word there is a typo, not a setting).
TRAINER_NUMBERS = (
    "max_steps",
    "limit_train_batches",
    "limit_val_batches",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "check_val_every_n_epoch",
    "log_every_n_steps",
    "num_sanity_val_steps",
)


def build(what: str, node: DictConfig, **kwargs):
    """``instantiate(node)``; an argument the target refuses is one line naming the config group."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        if isinstance(cause, FCNLabError):  # the target's own one-line message
            raise cause from None
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0].rstrip(".")
        raise FCNLabError(f"{what}: {first[:300]}; check the {what}.* options") from None


def _checkpoint_file(key: str, value: str) -> None:
    """``init_from`` / ``ckpt_path`` must name a file; a folder gets a hint at the checkpoint inside."""
    path = Path(value)
    if path.is_dir():
        inside = next(
            (c for c in (path / "checkpoints" / "best.ckpt", path / "best.ckpt") if c.is_file()), None
        )
        hint = f"did you mean {key}={inside}?" if inside else "give the checkpoint file (.ckpt) inside it"
        raise FCNLabError(f"{key}={value}: is a folder, not a checkpoint file; {hint}")
    if not path.is_file():
        raise FCNLabError(
            f"{key}={value}: no such file; check the path (a sweep's parent stage may have failed)"
        )


def check_resume_fits(path: str, module, option: str = "ckpt_path") -> None:
    """A checkpoint to resume must be a readable fcnlab training checkpoint of this very model."""
    saved = read_checkpoint(path)
    if saved is None:
        raise FCNLabError(f"{option}={path}: not a readable checkpoint; truncated or not a .ckpt file?")
    model = (saved.get("hyper_parameters") or {}).get("model")
    if not isinstance(model, dict) or "state_dict" not in saved:
        raise FCNLabError(f"{option}={path}: not an fcnlab training checkpoint (no model options stored)")
    own = module.state_dict()
    state = saved["state_dict"]
    if set(state) != set(own) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in own.items()):
        theirs = f"{model.get('name', '?')} ({model.get('num_classes', '?')} classes)"
        ours = f"{module.model.name} ({module.hparams['model'].get('num_classes', '?')} classes)"
        raise FCNLabError(
            f"{option}={path}: a checkpoint of {theirs}, not of this run's {ours}; "
            "resume it with its own model, or start from its weights with init_from="
        )


def check_run_dir(cfg: DictConfig) -> None:
    """The job's folder (and its sweep's) is neither the data root nor inside it: a run writes its split
    lists, checkpoints and logs there (:func:`fcnlab.atomic.check_not_data`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    folders = [("hydra.run.dir", str(cfg.paths.output_dir))]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        folders = [("hydra.sweep.dir", str(HydraConfig.get().sweep.dir)), *folders]
    for option, folder in folders:
        check_not_data(folder, option, OmegaConf.select(cfg, "data.root", default=None))


def check_config(cfg: DictConfig) -> None:
    """Catch bad settings before anything expensive runs; one line naming the option each."""
    check_scalars(cfg)
    check_run_dir(cfg)
    lr = cfg.optimizer.get("lr")
    if lr is None or not lr > 0:
        raise FCNLabError(f"optimizer.lr={lr}: the learning rate must be positive")
    if cfg.model.num_classes != cfg.data.num_classes:
        raise FCNLabError(
            f"model.num_classes={cfg.model.num_classes} but the data has {cfg.data.num_classes} "
            "classes; drop the override or set data.num_classes"
        )
    if str(cfg.data.get("_target_", "")).endswith(".FolderDataModule"):  # before any pretraining
        from fcnlab.data.folder import require_usable

        require_usable(
            cfg.data.root,
            cfg.data.void_index,
            cfg.data.reduce_zero_label,
            cfg.data.get("allow_overlap", False),
        )
    weights = OmegaConf.select(cfg, "loss.class_weights", default=None)
    if weights is not None and cfg.data.num_classes is not None:
        from fcnlab.data.class_weights import MEDIAN_FREQUENCY, check_weight_list, resolve_class_weights

        if isinstance(weights, str) and weights != MEDIAN_FREQUENCY:
            resolve_class_weights(weights, cfg.data.num_classes)  # the one-line error
        elif not isinstance(weights, str):
            value = OmegaConf.to_container(weights) if OmegaConf.is_config(weights) else weights
            check_weight_list(value, cfg.data.num_classes)
    if cfg.get("resume") not in ("auto", "never"):
        raise FCNLabError(f"resume={cfg.get('resume')}: use auto (continue a killed run in its dir) or never")
    for key in ("init_from", "ckpt_path"):
        if cfg.get(key):
            _checkpoint_file(key, str(cfg[key]))
