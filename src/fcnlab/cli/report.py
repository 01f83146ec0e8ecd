"""``fcnlab-report <sweep dir> [--out results]``: Table 2 (md + csv) and PNG figures from a sweep.

Works on any finished (or partly failed) sweep: a job without results is a failed row, not a crash.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from pathlib import Path

from fcnlab.reporting import plots
from fcnlab.reporting.table import (
    CSV_COLUMNS,
    background_share,
    collect,
    control_report,
    markdown_table,
    not_a_sweep,
    ordering_report,
    summarize,
    write_csv,
)


def build_report(sweep_dir: Path, out: Path, extra_lines: list[str] | None = None) -> list[dict]:
    """Write ``table2.md``, ``table2.csv`` and the PNGs into ``out``; returns the table rows."""
    start = time.perf_counter()
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: sweep dir {sweep_dir} does not exist; pass the folder a multirun wrote")
    records = collect(sweep_dir)
    if not records:
        raise SystemExit(f"error: {sweep_dir} holds no job folders; is it a multirun's sweep dir?")
    if (why := not_a_sweep(sweep_dir, records)) is not None:
        raise SystemExit(f"error: {why}")
    rows = summarize(records)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "table2.csv")
    plots.metrics_vs_paper(rows, out / "table2_metrics.png")
    plots.per_class_heatmap(records, out / "table2_per_class_iu.png")
    plots.training_curves(records, out / "table2_curves.png")
    has_fig4 = plots.figure4(records, out / "table2_figure4.png")

    ok = [r for r in records if r.get("status") == "ok"]
    first = ok[0] if ok else {}
    seeds = sorted({str(r.get("seed")) for r in records})
    share = background_share(records)
    lines = [
        "# Table 2 reproduction",
        "",
        f"Sweep `{sweep_dir}`; seeds {', '.join(seeds)}; git `{first.get('git_sha', '?')}`; "
        f"{first.get('hardware', '?')}; report made {datetime.datetime.now():%Y-%m-%d %H:%M}.",
        f"Data: `{first.get('data_root', '?')}` ({first.get('protocol', '?')}); the paper's numbers are on "
        "VOC2011 seg11valid with VGG16, ours on whatever data the sweep used.",
        "",
        *markdown_table(rows),
        "",
        "## The paper's ordering (means over seeds): 32s-fixed < 32s < 16s ≤ 8s",
        *ordering_report(rows),
        "",
        "## Control: is it the skips or the extra epochs?",
        *control_report(rows),
    ]
    if share is not None:
        lines += [
            "",
            f"Background is {100 * share:.1f} % of the labelled validation pixels (VOC: about 70–75 %).",
        ]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "## Failed rows", *(f"- {r['variant']}: {r['errors'] or 'no result'}" for r in failed)]
    wall = [f"{r['variant']} {r['wall_seconds']:.0f} s" for r in rows if r["status"] == "ok"]
    lines += ["", "## Wall time per stage (mean over seeds)", ", ".join(wall)]
    lines += [*(extra_lines or []), f"report {time.perf_counter() - start:.0f} s", ""]
    figures = ["table2_metrics.png", "table2_per_class_iu.png", "table2_curves.png"]
    figures += ["table2_figure4.png"] if has_fig4 else []
    lines += ["## Figures", *(f"![{f}]({f})" for f in figures), ""]
    tmp = out / ".table2.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(out / "table2.md")
    return rows


def sweep_wandb_names(sweep_dir: Path) -> tuple[str, str, str]:
    """(project, group, task name) of the sweep's wandb runs, from a job's saved Hydra config."""
    from omegaconf import OmegaConf

    from fcnlab.training.wandb_media import sweep_group

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
    """Table rows and PNGs as wandb run ``<task>-report`` in the sweep's group (offline unless WANDB_MODE)."""
    import wandb

    from fcnlab.training.wandb_media import finish_wandb

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
    run.log({"table2": table, **figures})
    run.summary.update({f"{r['variant']}/mean_iu": r["mean_iu"] for r in rows if r["status"] == "ok"})
    return finish_wandb()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun sweep dir (holds one folder per job)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where table2.{md,csv} and PNGs go")
    parser.add_argument(
        "--note", action="append", default=[], help="an extra line for the report (repeatable)"
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log table and figures as a wandb run in the sweep's group (offline: <sweep dir>/wandb)",
    )
    args = parser.parse_args(argv)
    rows = build_report(args.sweep_dir, args.out, args.note)
    print((args.out / "table2.md").read_text())
    if args.wandb:
        log_to_wandb(args.sweep_dir, args.out, rows)
    if any(r["status"] != "ok" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
