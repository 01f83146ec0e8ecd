"""``fcnlab-eval sweep=<dir> infer=msflip``: a finished sweep's best checkpoints re-evaluated with
test-time inference, without retraining.

For each job folder holding ``results.json`` with ``status: ok`` and ``checkpoints/best.ckpt``, the
checkpoint is evaluated on the data its job used (``data_root`` and ``protocol`` from its
``results.json``, the rest from the ``data`` config) and ``<job>/results_tta.json`` is written
atomically: the four metrics, per-class IU, the inference settings and the time per image.
``fcnlab-report`` shows them as a column beside the single-scale numbers. A folder without them is
skipped and said so; a second pass with other settings replaces the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fcnlab.atomic import write_json
from fcnlab.errors import FCNLabError
from fcnlab.models.tta import InferSettings

TTA_RESULTS = "results_tta.json"


def finished_jobs(sweep_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """(job folder, its results record) of every finished job, and a line for each folder skipped."""
    jobs, skipped = [], []
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if job.name == "wandb":
            continue
        try:
            record = json.loads((job / "results.json").read_text())
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("status") != "ok":
            skipped.append(f"{job}: no finished results.json; skipped")
        elif not (job / "checkpoints" / "best.ckpt").is_file():
            skipped.append(f"{job}: no checkpoints/best.ckpt; skipped")
        else:
            jobs.append((job, record))
    return jobs, skipped


def evaluate_sweep(cfg: DictConfig, settings: InferSettings) -> dict:
    """Evaluate every finished job of ``cfg.sweep`` as ``settings``; writes ``<job>/results_tta.json``."""
    from fcnlab.inference.evaluate import evaluate_checkpoint

    sweep_dir = Path(str(cfg.sweep)).expanduser()
    if not sweep_dir.is_dir():
        raise FCNLabError(f"sweep={cfg.sweep}: not a folder; pass the folder a multirun wrote")
    jobs, skipped = finished_jobs(sweep_dir)
    if not jobs:
        raise FCNLabError(f"sweep={cfg.sweep}: no job folder holds a finished results.json and best.ckpt")
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    out = []
    for job, record in jobs:
        data = OmegaConf.merge(cfg.data, {"root": record["data_root"], "protocol": record["protocol"]})
        result = evaluate_checkpoint(cfg, str(job / "checkpoints" / "best.ckpt"), data, settings)
        result = {"variant": record.get("variant"), "seed": record.get("seed"), **result}
        write_json(job / TTA_RESULTS, result)
        out.append({**result, "job_dir": str(job), "single_scale": record.get("metrics", {})})
    summary = {"sweep": str(sweep_dir), "infer": settings.as_dict(), "jobs": out, "skipped": skipped}
    write_json(Path(cfg.paths.output_dir) / "eval.json", summary)  # (evaluate() owns it)
    return summary


def format_sweep(result: dict) -> str:
    """Per job: mean IU single-scale (its results.json) and with the settings, and ms per image."""
    label = result["infer"]["label"]
    lines = [f"{'job':<24} {'mean IU %':>10} {label + ' %':>14} {'ms/image':>9}", "-" * 60]
    for job in result["jobs"]:
        single = job["single_scale"].get("mean_iu")
        single_text = "—" if single is None else f"{100 * single:.1f}"
        lines.append(
            f"{Path(job['job_dir']).name:<24} {single_text:>10} {100 * job['metrics']['mean_iu']:>14.1f} "
            f"{job['ms_per_image']:>9.0f}"
        )
    lines.append(f"wrote {TTA_RESULTS} into {len(result['jobs'])} job folder(s) of {result['sweep']}")
    return "\n".join(lines)
