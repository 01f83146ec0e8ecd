"""``fcnlab-bench --table2-profile``: one embedded Table 2 row, run for real, its wall time per stage.

The row runs as ``make reproduce-table2`` runs it: first the pretrain step (skipped when the backbone
exists), then ``fcnlab-train --config-name table2 model=<row> seed=0`` in a fresh process, through
:mod:`fcnlab.cli.profiled_train` with :class:`fcnlab.bench.stage_profiler.StageProfiler` added as a
callback. The process's wall time, from just before it is started to its exit, is split into the
stages of :data:`fcnlab.bench.stage_profiler.STAGES`; what follows the callback's record (the
interpreter's exit) is measured here. :func:`profile` returns the record, :func:`table_lines` prints it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fcnlab.bench.stage_profiler import BACKWARD, DATA, FORWARD, OPTIMIZER, STAGES
from fcnlab.bench.stages import T0_ENV
from fcnlab.errors import FCNLabError
from fcnlab.runinfo import cpu_model, git_sha, versions

EXIT = "exit: interpreter teardown (after the record)"
PROFILER = "fcnlab.bench.stage_profiler.StageProfiler"


def _train(args: list[str], env: dict | None = None) -> int:
    return subprocess.run([sys.executable, "-m", "fcnlab.cli.profiled_train", *args], env=env).returncode


def row_arguments(
    model: str, run_dir: Path, raw: Path, epochs: int | None, sweep_dir: str | None
) -> list[str]:
    """The profiled job's command line: Table 2's config for one row, seed 0, its own folder."""
    args = [
        "--config-name",
        "table2",
        f"model={model}",
        "seed=0",
        f"hydra.run.dir={run_dir}",
        "resume=never",
        f"+callbacks.stage_profiler._target_={PROFILER}",
        f"+callbacks.stage_profiler.out={raw}",
    ]
    if epochs is not None:
        args.append(f"stage_epochs={epochs}")
    if sweep_dir:  # a staged row (16s, 8s) starts from its parent's best.ckpt in this sweep
        args.append(f"hydra.sweep.dir={sweep_dir}")
    return args


def profile(
    model: str = "fcn32s",
    epochs: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    work: Path = Path("results/profile"),
    sweep_dir: str | None = None,
) -> dict:
    """Run the row (after the pretrain step) and return its per-stage record."""
    if epochs is not None and epochs < 1:
        raise FCNLabError(f"--epochs {epochs}: a profiled row needs at least 1 epoch")
    work = Path(work)
    run_dir, raw = work / f"{model}_seed0", work / f"{model}_stages.json"
    shutil.rmtree(run_dir, ignore_errors=True)  # this command's own folder: a fresh run each time
    raw.unlink(missing_ok=True)
    load_start = os.getloadavg()
    start = time.monotonic()
    pretrain = [
        "--config-name",
        "table2",
        "pretrain_only=true",
        "task_name=pretrain",
        "init_from=null",
        f"hydra.run.dir={work / 'pretrain'}",
        *overrides,
    ]
    if _train(pretrain) != 0:
        raise FCNLabError("the pretrain step failed (its error is above); fix that and rerun")
    pretrain_seconds = time.monotonic() - start
    args = [*row_arguments(model, run_dir, raw, epochs, sweep_dir), *overrides]
    t0 = time.monotonic()
    code = _train(args, env={**os.environ, T0_ENV: repr(t0)})
    end = time.monotonic()
    if code != 0 or not raw.is_file():
        raise FCNLabError(
            f"the profiled row {model} failed (exit {code}; its error is above); fix that and rerun"
        )
    record = summarize(json.loads(raw.read_text()), t0, end)
    record.update(
        model=model,
        epochs_override=epochs,
        overrides=list(overrides),
        command=["fcnlab-train", *args],
        pretrain_step_seconds=pretrain_seconds,
        cpu_model=cpu_model(),
        cores=os.cpu_count(),
        load_average_1min={"start": load_start[0], "end": os.getloadavg()[0]},
        versions=versions(),
        git_sha=git_sha(),
        timestamp=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    return record


def summarize(raw: dict, t0: float, end: float) -> dict:
    """Every stage of ``STAGES`` (0 s if never entered) with its share of the wall ``end - t0``.

    The callback's clock starts at ``t0`` and stops when it writes its record; the rest of the wall,
    the interpreter's exit, is its own stage here, so the shares add up to 100 %.
    """
    wall = end - t0
    seen = {s["stage"]: s for s in raw["stages"]}
    names = [*STAGES, *(s for s in seen if s not in STAGES)]
    stages = [
        {
            "stage": n,
            "seconds": seen[n]["seconds"] if n in seen else 0.0,
            "entries": seen.get(n, {}).get("entries", 0),
        }
        for n in names
    ]
    stages.append({"stage": EXIT, "seconds": max(end - raw["end_monotonic"], 0.0), "entries": 1})
    for s in stages:
        s["share"] = s["seconds"] / wall if wall > 0 else 0.0
    extra = {k: v for k, v in raw.items() if k not in ("stages", "start_monotonic", "end_monotonic")}
    clocked = raw["end_monotonic"] - raw["start_monotonic"]
    return {
        "wall_seconds": wall,
        "clocked_seconds": clocked,
        "clock_start_offset": raw["start_monotonic"] - t0,
        "stages": stages,
        **extra,
    }


def per_batch_line(record: dict) -> str:
    """Training compute vs data-loading wait per batch, and training images/s."""
    sec = {s["stage"]: s["seconds"] for s in record["stages"]}
    batches = max(record.get("train_batches") or 0, 1)
    compute = sec[FORWARD] + sec[BACKWARD] + sec[OPTIMIZER]
    images = record.get("train_images") or 0
    rate = f"; {images / compute:.0f} training images/s of compute" if compute > 0 and images else ""
    return (
        f"per training batch: compute {1000 * compute / batches:.1f} ms, data-loading wait "
        f"{1000 * sec[DATA] / batches:.1f} ms ({record.get('train_batches', 0)} batches){rate}"
    )


def table_lines(record: dict) -> list[str]:
    """The profile as printed: the set-up, then stage | seconds | share of wall | entered."""
    load = record["load_average_1min"]
    lines = [
        f"Table 2 row {record['model']} (seed 0, {record.get('max_epochs')} epochs, batch "
        f"{record.get('batch_size')}, {record.get('loader_workers')} loader workers, "
        f"{record.get('torch_threads')} torch threads) on {record['cpu_model']}, {record['cores']} cores; "
        f"1-min load average {load['start']:.1f} at start, {load['end']:.1f} at end",
        f"pretrain step before it (not in the table): {record['pretrain_step_seconds']:.1f} s",
        "",
        "| stage | seconds | share of wall | times entered |",
        "|---|---|---|---|",
    ]
    for s in record["stages"]:
        lines.append(f"| {s['stage']} | {s['seconds']:.2f} | {s['share']:.1%} | {s['entries']} |")
    total = sum(s["seconds"] for s in record["stages"])
    lines += [f"| **wall** | **{record['wall_seconds']:.2f}** | {total / record['wall_seconds']:.1%} | |", ""]
    lines.append(per_batch_line(record))
    return lines
