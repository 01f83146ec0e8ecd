"""The report's test-time-inference column: ``<job>/results_tta.json`` (``fcnlab-eval sweep=<dir>
infer=msflip``), mean IU beside each row's single-scale numbers. Files only, no torch."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

TTA_RESULTS = "results_tta.json"  # the name fcnlab.inference.sweep_eval writes


def read_tta(job_dir: Path) -> dict | None:
    """A job's TTA record (label and metrics), or None when it has none or it cannot be read."""
    try:
        record = json.loads((Path(job_dir) / TTA_RESULTS).read_text())
        label, mean_iu = record["infer"]["label"], float(record["metrics"]["mean_iu"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"label": str(label), "mean_iu": mean_iu, "ms_per_image": record.get("ms_per_image")}


def tta_columns(ok: list[dict]) -> dict:
    """A row's ``tta`` (the settings' label), ``tta_mean_iu`` and ``tta_mean_iu_std`` (%) over seeds."""
    runs = [r["tta"] for r in ok if r.get("tta")]
    values = [100 * t["mean_iu"] for t in runs]
    return {
        "tta": "/".join(sorted({t["label"] for t in runs})),
        "tta_mean_iu": statistics.fmean(values) if values else math.nan,
        "tta_mean_iu_std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan,
        "tta_seeds": len(values),
    }


def tta_header(rows: list[dict]) -> str | None:
    """The column's title, e.g. ``ms+flip mean IU``; None when no row has TTA results."""
    labels = sorted({r["tta"] for r in rows if r.get("tta")})
    return f"{'/'.join(labels)} mean IU" if labels else None


def tta_cell(row: dict) -> str:
    if not row.get("tta_seeds"):
        return "—"
    if row["tta_seeds"] > 1:
        return f"{row['tta_mean_iu']:.1f} ± {row['tta_mean_iu_std']:.1f}"
    return f"{row['tta_mean_iu']:.1f}"


def tta_note(rows: list[dict]) -> list[str]:
    """The sentence under the table saying what the extra column is (nothing without one)."""
    header = tta_header(rows)
    if header is None:
        return []
    return [
        "",
        f"Column *{header}*: the same best checkpoints evaluated with test-time inference "
        f"({header.removesuffix(' mean IU')}: `fcnlab-eval sweep=<dir> infer=...`, each job's "
        f"`{TTA_RESULTS}`); every other column is single-scale, and the paper's numbers are single-scale.",
    ]
