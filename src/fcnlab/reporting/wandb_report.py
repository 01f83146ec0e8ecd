"""``fcnlab-report --wandb``: the table and figures as one wandb run in the sweep's group."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

from fcnlab.reporting.table import CSV_COLUMNS, collect, per_class_rows


def sweep_wandb_names(sweep_dir: Path) -> tuple[str, str, str]:
    """(project, group, task name) of the sweep's wandb runs, from a job's saved Hydra config."""
    from omegaconf import OmegaConf

    from fcnlab.wandb_runs import sweep_group

    project, group, task, by_sweep = "fcnlab", None, "table2", True
    configs = sorted(sweep_dir.glob("*/.hydra/config.yaml"))
    if configs:
        cfg = OmegaConf.load(configs[0])
        task = str(cfg.get("task_name") or task)
        wandb_cfg = OmegaConf.select(cfg, "logger.wandb", throw_on_resolution_failure=False) or {}
        project = str(wandb_cfg.get("project") or project)
        group = OmegaConf.select(cfg, "logger.wandb.group", throw_on_resolution_failure=False)
        by_sweep = bool(wandb_cfg.get("group_by_sweep", True))
    return project, sweep_group(str(group or task), sweep_dir.resolve() if by_sweep else None), task


def log_to_wandb(sweep_dir: Path, out: Path, rows: list[dict]) -> str | None:
    """Table rows, IU per variant and class (the runs' class names) and PNGs as wandb run
    ``<task>-report`` in the sweep's group (offline unless WANDB_MODE)."""
    import wandb

    from fcnlab.wandb_runs import finish_wandb

    project, group, task = sweep_wandb_names(sweep_dir)
    mode = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
    run = wandb.init(
        project=project,
        dir=str(sweep_dir.resolve()),
        name=f"{task}-report",
        group=group,
        job_type="report",
        config={"sweep_dir": str(sweep_dir.resolve()), "report_dir": str(out.resolve())},
        **mode,
    )

    def cell(value: object) -> object:
        return None if isinstance(value, float) and math.isnan(value) else value

    table = wandb.Table(columns=list(CSV_COLUMNS), data=[[cell(r.get(c)) for c in CSV_COLUMNS] for r in rows])
    figures = {f"figures/{png.stem}": wandb.Image(str(png)) for png in sorted(out.glob("table2_*.png"))}
    with contextlib.redirect_stderr(io.StringIO()):  # a damaged record was reported once by the report
        records = collect(sweep_dir)
    per_class = wandb.Table(columns=["variant", "class", "iu"], data=per_class_rows(records))
    run.log({"table2": table, "per_class_iu": per_class, **figures})
    run.summary.update({f"{r['variant']}/mean_iu": r["mean_iu"] for r in rows if r["status"] == "ok"})
    return finish_wandb()
