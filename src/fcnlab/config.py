"""Shared infrastructure of every entry point: where the Hydra configs are, the resolvers they use,
and the library messages a normal run should not print.

Imported (never run) by ``fcnlab.cli.*`` and by the Hydra search-path plugin, so a config composes
the same way from a CLI, a test's ``compose()`` or a DDP rank. It imports neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import os
import warnings
from importlib import resources
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def _shipped(name: str) -> Path:
    """``conf/`` or ``sweeps/``: inside the installed package (a wheel), else the checkout's top level."""
    packaged = Path(str(resources.files("fcnlab"))) / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / name


CONF_DIR = _shipped("conf")
SWEEPS_DIR = _shipped("sweeps")


def stage_checkpoint(sweep_dir: str, parent: str | None, seed: int) -> str | None:
    """Staged init inside a sweep: the parent variant's best checkpoint, same seed (None: no parent)."""
    if parent in (None, "", "null", "None"):
        return None
    return f"{sweep_dir}/{parent}_seed{seed}/checkpoints/best.ckpt"


def launch_cwd() -> str:
    """Where the command was started: Hydra's ``runtime.cwd`` once it is set, else the process's cwd.

    ``hydra.sweep.dir`` and the run dir are resolved (by the launcher, by ``OutputDirCheck``) before
    Hydra sets its config, where ``${hydra:runtime.cwd}`` cannot resolve yet.
    """
    if HydraConfig.initialized():
        cwd = HydraConfig.get().runtime.get("cwd")
        if cwd:
            return str(cwd)
    return os.getcwd()


def rank_suffix() -> str:
    """``""`` on rank 0 (or without DDP), ``_rank<N>`` elsewhere: per-rank log file names."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return f"_rank{os.environ[var]}"
    return ""


def count_classes(root: str | None) -> int | None:
    """The number of classes of a folder dataset: the lines of ``<root>/classes.txt`` (None: unreadable).

    ``conf/data/folder.yaml``'s ``num_classes``, so the model's follows; the datamodule reads and
    checks the file itself (a missing or malformed one is its error, naming the file).
    """
    if root in (None, "", "None"):
        return None
    try:
        text = (Path(str(root)) / "classes.txt").read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    return len(text.rstrip().splitlines()) or None


def lane_threads(lanes: int) -> int | None:
    """torch threads of one of ``lanes`` jobs a multirun runs side by side: its share of this process's
    cores (``sweeps/table2.yaml``'s ``torch_threads``). None (torch's default) for one lane, and for a
    single run (RUN mode), which has the machine to itself."""
    from hydra.types import RunMode

    if int(lanes) <= 1 or (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(lanes))


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("fcnlab_cwd", launch_cwd, replace=True)
    OmegaConf.register_new_resolver("fcnlab_pid", lambda: str(os.getpid()), use_cache=True, replace=True)
    OmegaConf.register_new_resolver("fcnlab_stage_checkpoint", stage_checkpoint, replace=True)
    OmegaConf.register_new_resolver("fcnlab_rank_suffix", rank_suffix, replace=True)
    OmegaConf.register_new_resolver("fcnlab_num_classes", count_classes, replace=True)
    OmegaConf.register_new_resolver("fcnlab_lane_threads", lane_threads, replace=True)


def quiet_known_messages() -> None:
    """Messages printed in every job that say nothing about the run."""
    # Lightning, under torch 2.14: a pytree deprecation from inside its own code.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # conf/hydra/launcher/submitit_*.yaml fill the submitit plugin's schema of the same name on purpose
    # (so `hydra/launcher=submitit_slurm` is sized from `cluster:`); Hydra validates them and says so.
    schema = r"(?s).*validated against ConfigStore schema with the same name"
    warnings.filterwarnings("ignore", message=schema)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: "litlogger" not in record.getMessage())


def compose_job(config_name: str, overrides: list[str], output_dir: str | Path | None = None) -> DictConfig:
    """A config as ``@hydra.main`` composes it (HydraConfig set), with ``output_dir`` as the job's folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_train_config(overrides: list[str], job: str = "throughput") -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, resolved as ``fcnlab-train`` would (no job is started)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        # split_dir=null: measuring needs no split lists written into outputs/
        cfg = compose("train", overrides=["data.split_dir=null", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.output_dir = os.path.join(os.getcwd(), "outputs", job)
    HydraConfig.instance().set_config(cfg)
    return cfg


register_resolvers()
quiet_known_messages()
