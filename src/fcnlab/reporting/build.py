"""The whole report of a sweep dir: ``table2.md``, ``table2.csv`` and the PNG figures, from files only."""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

from fcnlab.atomic import own_outputs, refuse_foreign, write_text
from fcnlab.errors import FCNLabError
from fcnlab.reporting import plots
from fcnlab.reporting.table import (
    background_share,
    collect,
    control_report,
    markdown_table,
    not_a_sweep,
    ordering_report,
    summarize,
    write_csv,
)
from fcnlab.reporting.tta import tta_note


def info(line: str) -> None:
    """A line for the person running the report (stderr, so stdout stays the report itself)."""
    print(f"info: {line}", file=sys.stderr)


# Every file the report writes into --out (it replaces only these, and only where it wrote them).
REPORT_FILES = (
    "table2.md",
    "table2.csv",
    "table2_metrics.png",
    "table2_per_class_iu.png",
    "table2_curves.png",
    "table2_figure4.png",
)


def check_out(
    out: Path,
    overwrite: bool = False,
    names: tuple[str, ...] = REPORT_FILES,
    what: str = "table2.md, table2.csv and the figures",
) -> None:
    """``--out`` is a folder that can be made, and holds none of ``names`` that the report did not write."""
    if out.exists() and not out.is_dir():
        raise FCNLabError(f"--out {out} is a file; give a folder for {what}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FCNLabError(
            f"--out {out}: cannot create the folder ({e.strerror}); choose another folder"
        ) from None
    if not overwrite:
        what_to_do = "choose another --out, or --overwrite to replace it"
        refuse_foreign([out / name for name in names], "fcnlab-report", what_to_do)


def build_report(
    sweep_dir: Path, out: Path, extra_lines: list[str] | None = None, overwrite: bool = False
) -> list[dict]:
    """Write ``table2.md``, ``table2.csv`` and the PNGs into ``out``; returns the table rows.

    ``overwrite``: replace files of those names that fcnlab-report did not write (refused otherwise).
    """
    start = time.perf_counter()
    sweep_dir, out = Path(sweep_dir), Path(out)
    if not sweep_dir.is_dir():
        raise FCNLabError(f"sweep dir {sweep_dir} does not exist; pass the folder a multirun wrote")
    records = collect(sweep_dir)
    if not records:
        raise FCNLabError(f"{sweep_dir} holds no job folders; is it a multirun's sweep dir?")
    if (why := not_a_sweep(sweep_dir, records)) is not None:
        raise FCNLabError(why)
    rows = summarize(records)
    check_out(out, overwrite)
    with own_outputs(out, REPORT_FILES, "fcnlab-report"):
        return _write(sweep_dir, out, records, rows, extra_lines, start)


def _write(
    sweep_dir: Path, out: Path, records: list[dict], rows: list[dict], extra_lines, start
) -> list[dict]:
    write_csv(rows, out / "table2.csv")
    plots.metrics_vs_paper(rows, out / "table2_metrics.png")
    plots.per_class_heatmap(records, out / "table2_per_class_iu.png")
    plots.training_curves(records, out / "table2_curves.png")
    skipped = plots.figure4(records, out / "table2_figure4.png")
    if skipped:
        info(f"Figure 4 skipped: {skipped}")

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
        "VOC2011 seg11valid with VGG16, ours on whatever data the sweep used; both single-scale "
        "(one whole-image pass) unless a column says otherwise.",
        "",
        *markdown_table(rows),
        *tta_note(rows),
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
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed rows", *(f"- {r['variant']}: {r['errors'] or 'no result'}" for r in failed)]
    running = [r for r in rows if r["status"] == "running"]
    if running:
        lines += ["", "## Still running (report again when the sweep has finished)"]
        lines += [f"- {r['variant']}: {r['errors']}" for r in running]
    wall = [f"{r['variant']} {r['wall_seconds']:.0f} s" for r in rows if r["status"] == "ok"]
    lines += ["", "## Wall time per stage (mean over seeds)", ", ".join(wall)]
    lines += [*(extra_lines or []), f"report {time.perf_counter() - start:.0f} s", ""]
    figures = ["table2_metrics.png", "table2_per_class_iu.png", "table2_curves.png"]
    figures += ["table2_figure4.png"] if skipped is None else []
    lines += ["## Figures", *(f"![{f}]({f})" for f in figures), ""]
    write_text(out / "table2.md", "\n".join(lines))
    return rows
