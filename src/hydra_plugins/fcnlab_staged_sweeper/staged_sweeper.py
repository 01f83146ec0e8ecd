"""``hydra/sweeper=staged``: a grid sweep launched stage by stage, so side-by-side jobs never race.

Table 2's jobs form chains (FCN-32s → FCN-16s → FCN-8s; FCN-32s → fcn32s_mid → fcn32s_long), each
job starting from its parent's checkpoint (``stage.parent`` in its config). Hydra's basic sweeper hands
the whole grid to the launcher at once, which is safe only when the launcher runs jobs one after
another. This sweeper sorts the grid into waves by chain depth (wave 0: jobs without a parent in the
grid; wave k: jobs whose parent is in wave k-1) and launches wave after wave, so any launcher can run
a wave's jobs side by side: joblib on one machine (``hydra.launcher.n_jobs``), submitit on SLURM.
A failed job does not stop the sweep (its children fail at once with the missing-parent error, the
other rows still run); the first failure is raised when every wave has run, as the basic sweeper does.
"""

# No "from __future__ import annotations": Hydra loads plugin modules outside sys.modules, where a
# dataclass with string annotations cannot be built.
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class StagedSweeperConf:
    _target_: str = "hydra_plugins.fcnlab_staged_sweeper.staged_sweeper.StagedSweeper"
    # OmegaConf's structured configs take typing's Optional, not "X | None".
    params: Optional[dict[str, str]] = None  # noqa: UP045  (as the basic sweeper's: {key: "a,b,c"})
    max_batch_size: Optional[int] = None  # noqa: UP045   at most this many jobs handed to the launcher at once


ConfigStore.instance().store(group="hydra/sweeper", name="staged", node=StagedSweeperConf, provider="fcnlab")


def grid(overrides: list[str]) -> list[list[str]]:
    """Every job of a grid: the cartesian product of the overrides' values, in the order given."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values: dict[str, list[str]] = {}  # a key given twice (config params, then the command line): the last
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ValueError(f"{key}: the staged sweeper takes lists (a,b,c) or ranges, not intervals")
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*values.values())]


def waves(stages: list[tuple[str | None, str | None]]) -> list[list[int]]:
    """Job indices by wave, from each job's (variant, parent): a job runs one wave after its parent."""
    parent = dict(s for s in stages if s[0] is not None)
    depth: dict[str, int] = {}

    def depth_of(variant: str | None, seen: tuple = ()) -> int:
        if variant is None or variant not in parent:
            return 0
        if variant in seen:
            raise ValueError(f"stage.parent loops: {' -> '.join((*seen, variant))}")
        if variant not in depth:
            up = parent[variant]
            depth[variant] = 0 if up not in parent else depth_of(up, (*seen, variant)) + 1
        return depth[variant]

    levels = [depth_of(variant) for variant, _ in stages]
    return [[i for i, d in enumerate(levels) if d == level] for level in range(max(levels, default=-1) + 1)]


class StagedSweeper(Sweeper):
    def __init__(self, params: dict[str, str] | None = None, max_batch_size: int | None = None) -> None:
        self.params = dict(params or {})
        self.max_batch_size = max_batch_size
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _stage(self, job: list[str]) -> tuple[str | None, str | None]:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
        stage = OmegaConf.select(cfg, "stage", default=None) or {}
        return stage.get("variant"), stage.get("parent")

    def sweep(self, arguments: list[str]) -> Any:
        jobs = grid([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self.max_batch_size or len(jobs) or 1
        returns, next_idx = [], 0
        for wave in waves([self._stage(job) for job in jobs]):
            for start in range(0, len(wave), size):
                batch = [jobs[i] for i in wave[start : start + size]]
                self.validate_batch_is_legal(batch)
                returns.append(self.launcher.launch(batch, initial_job_idx=next_idx))
                next_idx += len(batch)
        for results in returns:
            for r in results:
                _ = r.return_value  # re-raises a failed job's error, once every wave has run
        return returns
