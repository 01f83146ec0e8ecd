"""DDP under Hydra: each extra rank re-runs *this job* in *this job's* output dir.

Lightning's ``strategy=ddp`` starts ranks 1..N-1 by re-running the command line. Under Hydra it
appends ``hydra.run.dir`` to ``sys.argv``, which breaks in a multirun: the argv still holds ``-m`` and
every swept value (each rank would launch the whole sweep) and ``run.dir`` is not the job's folder
(each rank would write elsewhere). ``rank_command`` builds the command from the job instead: its own
overrides, its output dir, and the sweep dir that ``${hydra:sweep.dir}`` interpolations (staged
``init_from``) resolve against. Under SLURM (submitit) or torchrun the ranks already exist and
Lightning launches nothing, so this is not used there.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command and cwd for DDP rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    command = [sys.executable, "-m", "fcnlab.cli.train", "--config-name", hc.job.config_name]
    command += list(hc.overrides.task)
    if hc.mode == RunMode.MULTIRUN:
        command.append(f"hydra.sweep.dir={hc.sweep.dir}")
    command += [
        f"hydra.run.dir={hc.runtime.output_dir}",
        f"hydra.job.name={hc.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",  # rank 0 already wrote the job's .hydra/ config
    ]
    return command, get_original_cwd()


def use_job_commands_for_ranks() -> None:
    """Make Lightning's DDP launcher start extra ranks with :func:`rank_command`."""
    import lightning
    from lightning.pytorch.strategies.launchers import subprocess_script

    # A private hook of the launcher, pinned to lightning >=2.5,<2.7 (tests/test_lightning_pins.py).
    if not hasattr(subprocess_script, "_hydra_subprocess_cmd"):  # a Lightning outside our pinned range
        version = lightning.__version__
        log.warning("lightning %s: cannot set the DDP rank command; multirun + ddp may misbehave", version)
        return
    subprocess_script._hydra_subprocess_cmd = rank_command


# What Lightning's launcher puts in os.environ; left behind, the next job of a multirun would think its
# ranks were started externally, start none, and wait on a process group whose peers are gone.
_LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK")


@contextmanager
def ddp_job_scope() -> Iterator[None]:
    """Run one job; afterwards drop its process group and launcher variables (kept if set from outside)."""
    before = {key: os.environ.get(key) for key in _LAUNCH_VARS}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
