"""Table 2 from a finished sweep: one row per variant (mean ± std over seeds) beside the paper's.

Reads only files (each job's ``results.json``), so it works on any sweep dir, also after the fact.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import statistics
import sys
from pathlib import Path

from fcnlab.atomic import atomic_path, lock_holder
from fcnlab.reporting.tta import read_tta, tta_cell, tta_columns, tta_header

METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")
METRIC_NAMES = {"pixel_acc": "pixel acc.", "mean_acc": "mean acc.", "mean_iu": "mean IU", "fw_iu": "f.w. IU"}
ROWS = ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s", "fcn32s_mid", "fcn32s_long")
# Each skip net and the no-skip control trained as long, from the same FCN-32s (conf/model/fcn32s_long.yaml).
CONTROLS = {"fcn16s": "fcn32s_mid", "fcn8s": "fcn32s_long"}
# Long, Shelhamer & Darrell (CVPR 2015), Table 2: VOC2011 seg11valid, in percent.
PAPER = {
    "fcn32s_fixed": (83.0, 59.7, 45.4, 72.0),
    "fcn32s": (89.1, 73.3, 59.4, 81.4),
    "fcn16s": (90.0, 75.7, 62.4, 83.0),
    "fcn8s": (90.3, 75.9, 62.7, 83.2),
}
ORDER = ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s")  # the paper's ordering: < < <=


RUN_LOCK = ".fcnlab.lock"  # fcnlab.training.rundir.LOCK_NAME: held by the process training in a folder


def _job_name(job: Path) -> tuple[str, str]:
    """(variant, seed) from a job folder's name, ``<num>_<variant>_seed<seed>`` as a sweep names it."""
    if m := re.fullmatch(r"(?:\d+_)?(.+)_seed(\w+)", job.name):
        return m.group(1), m.group(2)
    return job.name, ""


def collect(sweep_dir: str | Path) -> list[dict]:
    """Every job's ``results.json`` under ``sweep_dir`` (jobs with none are reported failed, or running
    while a process still trains in the folder)."""
    sweep_dir = Path(sweep_dir)
    records = []
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for job in sorted(p for p in jobs if p.name != "wandb"):  # wandb/: fcnlab-report --wandb's run
        path = job / "results.json"
        holder = lock_holder(job / RUN_LOCK)
        record, error = _read_record(path, quiet=holder is not None) if path.is_file() else (None, "")
        if record is not None and holder is not None and record.get("status") != "ok":
            record = None  # a failed attempt's record while the same job runs again
        if record is None:  # killed before it could write anything, a damaged file, or still running
            variant, seed = _job_name(job)
            record = {
                "variant": variant,
                "seed": seed,
                "status": "failed",
                "error": error or "no results.json",
            }
            if holder is not None:
                record.update(status="running", error=f"still running (pid {holder})")
                print(
                    f"warning: {job}: still running (pid {holder}); its row is marked running, report again "
                    "when the sweep has finished",
                    file=sys.stderr,
                )
        record["job_dir"] = str(job)
        record["tta"] = read_tta(job)
        records.append(record)
    return records


def _read_record(path: Path, quiet: bool = False) -> tuple[dict | None, str]:
    """A job's results record, or (None, the one line said about it): garbage is skipped, not fatal
    (``quiet``: not said, the job is running and will rewrite it)."""
    try:
        record = json.loads(path.read_text())
        why = None if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"
    except ValueError:  # not JSON, or not UTF-8
        record, why = None, "invalid JSON"
    except OSError as e:
        record, why = None, e.strerror or str(e)
    if why is None and not isinstance(record.get("variant"), str):
        why = 'no "variant"'
    if why is None:
        return record, ""
    message = f"{path}: not a results record ({why}); skipped, its row is marked failed"
    if not quiet:
        print(f"warning: {message}", file=sys.stderr)
    return None, message


def not_a_sweep(sweep_dir: Path, records: list[dict]) -> str | None:
    """Why ``sweep_dir``'s jobs are not one sweep's seeds (None: they are): single runs, repeated seeds."""
    for record in records:
        hydra_yaml = Path(record["job_dir"]) / ".hydra" / "hydra.yaml"
        with contextlib.suppress(OSError):
            if re.search(r"^\s*mode:\s*RUN\s*$", hydra_yaml.read_text(), flags=re.MULTILINE):
                return (
                    f"{sweep_dir} is not a sweep: {record['job_dir']} is a single run (Hydra mode RUN); "
                    "pass the folder a multirun wrote (its hydra.sweep.dir)"
                )
    seen: dict[tuple[str, str], str] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        key = (record["variant"], str(record.get("seed")))
        if key in seen:
            return (
                f"{sweep_dir} is not one sweep's seeds: {seen[key]} and {record['job_dir']} are both "
                f"{key[0]} seed {key[1]}; the report averages seeds, so pass a sweep over model= and seed="
            )
        seen[key] = record["job_dir"]
    return different_classes(sweep_dir, records)


def record_class_names(record: dict) -> list[str]:
    """The classes a job scored, in class order (records from before ``class_names``: their IU keys)."""
    return [str(n) for n in (record.get("class_names") or list(record.get("per_class_iu") or {}))]


def per_class_rows(records: list[dict]) -> list[list]:
    """``[variant, class, IU %]`` per variant and class (the runs' own class names; IU the mean over
    seeds, None where the class never appeared), for the report's wandb table."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("per_class_iu")]
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in ok):
        runs = [r for r in ok if r["variant"] == variant]
        for name in record_class_names(runs[0]):
            values = [iu for r in runs if not math.isnan(iu := float(r["per_class_iu"].get(name, math.nan)))]
            rows.append([variant, name, 100 * statistics.fmean(values) if values else None])
    return rows


def different_classes(sweep_dir: Path, records: list[dict]) -> str | None:
    """Why the finished jobs did not score the same classes (None: they did): not one dataset's sweep."""
    ok = [r for r in records if r.get("status") == "ok" and record_class_names(r)]
    for record in ok[1:]:
        first, names = record_class_names(ok[0]), record_class_names(record)
        if names != first:
            pairs = enumerate(zip(first, names, strict=False))
            k = next((i for i, (a, b) in pairs if a != b), min(len(first), len(names)))
            theirs = repr(names[k]) if k < len(names) else "none"
            ours = repr(first[k]) if k < len(first) else "none"
            return (
                f"{sweep_dir} is not one sweep's data: {ok[0]['job_dir']} scored {len(first)} classes and "
                f"{record['job_dir']} {len(names)} (class {k}: {ours} vs {theirs}); "
                "report each dataset's sweep on its own"
            )
    return None


def summarize(records: list[dict]) -> list[dict]:
    """One row per variant: metric means and stds in percent, seeds, status, init, wall time."""
    rows = []
    variants = [v for v in ROWS if any(r["variant"] == v for r in records)]
    variants += sorted({r["variant"] for r in records} - set(ROWS))
    for variant in variants:
        runs = [r for r in records if r["variant"] == variant]
        ok = [r for r in runs if r.get("status") == "ok"]
        running = [r for r in runs if r.get("status") == "running"]
        status = "ok" if ok and len(ok) == len(runs) else "failed"
        row = {
            "variant": variant,
            "seeds": len(ok),
            "status": "running" if running and len(ok) + len(running) == len(runs) else status,
        }
        for m in METRICS:
            values = [100 * r["metrics"][m] for r in ok]
            row[m] = statistics.fmean(values) if values else math.nan
            row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan
        for i, m in enumerate(METRICS):
            row[f"paper_{m}"] = PAPER[variant][i] if variant in PAPER else math.nan
        # A staged row names its parent variant (each seed starts from the parent of the same seed).
        inits = {init_of(r) for r in ok}
        row["init"] = ", ".join(sorted(inits)) or "-"
        row.update(tta_columns(ok))
        row["epochs"] = max((r.get("epochs", 0) for r in ok), default=0)
        row["wall_seconds"] = statistics.fmean([r.get("wall_seconds", 0) for r in ok]) if ok else math.nan
        row["errors"] = "; ".join(
            sorted({r.get("error", "") for r in runs if r.get("status") != "ok"} - {""})
        )
        rows.append(row)
    return rows


def init_of(record: dict) -> str:
    """What a run started from: its parent stage's best checkpoint, a pretrained backbone, or nothing
    (``model.pretrained=null``: random init)."""
    if record.get("init_from"):  # a staged row names its parent variant (each seed its own parent)
        job = Path(record["init_from"]).parent.parent
        return f"{_job_name(job)[0] if '_seed' in job.name else job.name} best.ckpt"
    if "pretrained" in record and record["pretrained"] is None:
        return "random init"
    return "pretrained backbone"  # (records from before "pretrained" was stored: the default)


def ordering_report(rows: list[dict]) -> list[str]:
    """Plain sentences on whether 32s-fixed < 32s < 16s <= 8s holds on each metric's means."""
    by = {r["variant"]: r for r in rows if r["status"] == "ok"}
    if not all(v in by for v in ORDER):
        status = {r["variant"]: r["status"] for r in rows}
        missing = [
            v + (" (still running)" if status.get(v) == "running" else "") for v in ORDER if v not in by
        ]
        return [f"The ordering cannot be checked: {', '.join(missing)} failed, is running or did not run."]
    lines = []
    for m in METRICS:
        v = [by[k][m] for k in ORDER]
        holds = v[0] < v[1] < v[2] <= v[3]
        chain = f"{v[0]:.1f} < {v[1]:.1f} < {v[2]:.1f} <= {v[3]:.1f}"
        lines.append(f"- {METRIC_NAMES[m]}: {chain} — {'holds' if holds else 'DOES NOT HOLD'}")
    return lines


def control_report(rows: list[dict]) -> list[str]:
    """How much of each skip's gain in mean IU its length-matched no-skip control explains."""
    by = {r["variant"]: r for r in rows if r["status"] == "ok"}
    if "fcn32s" not in by or not any(c in by for c in CONTROLS.values()):
        return ["The control rows fcn32s_mid / fcn32s_long are missing or failed: gains cannot be split."]
    base = by["fcn32s"]["mean_iu"]
    lines = [
        "The controls train FCN-32s on from the FCN-32s row through the same stages as the skip nets, "
        "without their skips: fcn32s_mid as FCN-16s, fcn32s_long as FCN-8s."
    ]
    for net, control in CONTROLS.items():
        if net in by and control in by:
            gain, longer = by[net]["mean_iu"] - base, by[control]["mean_iu"] - base
            lines.append(
                f"- {net}: {gain:+.1f} mean IU over FCN-32s; {control} ({by[control]['mean_iu']:.1f}) "
                f"explains {longer:+.1f}, the skips {gain - longer:+.1f}."
            )
        else:
            lines.append(f"- {net}: {net if net not in by else control} failed or did not run.")
    return lines


def background_share(records: list[dict]) -> float | None:
    """Share of labelled validation pixels that are background (class 0), from a confusion matrix."""
    for r in records:
        if r.get("confusion"):
            truth = [sum(row) for row in r["confusion"]]
            return truth[0] / sum(truth)
    return None


# table2.csv's columns, also those of the wandb table (fcnlab-report --wandb).
CSV_COLUMNS = (
    "variant",
    *METRICS,
    *(f"{m}_std" for m in METRICS),
    *(f"paper_{m}" for m in METRICS),
    "tta",
    "tta_mean_iu",
    "tta_mean_iu_std",
    "seeds",
    "epochs",
    "wall_seconds",
    "init",
    "status",
)


def write_csv(rows: list[dict], path: Path, columns: tuple[str, ...] = CSV_COLUMNS) -> None:
    """``rows`` as a CSV of ``columns`` (floats to 2 decimals), written atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})


def markdown_table(rows: list[dict]) -> list[str]:
    tta = tta_header(rows)  # a column beside mean IU when the jobs hold test-time-inference results
    names = [METRIC_NAMES[m] for m in METRICS]
    head = "| variant | init | " + " | ".join(names if tta is None else [*names[:3], tta, *names[3:]])
    head += " | paper (pix / mean acc / IU / fw) | Δ mean IU vs paper | epochs | wall s | status |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        std = r["seeds"] > 1

        def cell(m: str, r=r, std=std) -> str:
            if math.isnan(r[m]):
                return "—"
            return f"{r[m]:.1f} ± {r[m + '_std']:.1f}" if std else f"{r[m]:.1f}"

        paper = " / ".join(f"{r['paper_' + m]:.1f}" for m in METRICS) if r["variant"] in PAPER else "—"
        delta = f"{r['mean_iu'] - r['paper_mean_iu']:+.1f}" if r["variant"] in PAPER and r["seeds"] else "—"
        wall = f"{r['wall_seconds']:.0f}" if not math.isnan(r["wall_seconds"]) else "—"
        cells = [cell(m) for m in METRICS]
        if tta is not None:
            cells.insert(3, tta_cell(r))
        lines.append(
            f"| {r['variant']} | {r['init']} | "
            + " | ".join(cells)
            + f" | {paper} | {delta} | {r['epochs']} | {wall} | {r['status']} |"
        )
    return lines
