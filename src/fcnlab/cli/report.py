"""``fcnlab-report <sweep dir> [--out results]``: Table 2 (md + csv) and PNG figures from a sweep.

Works on any finished (or partly failed) sweep: a job without results is a failed row, not a crash.
Reads files only (``fcnlab.reporting``): neither torch nor Lightning is imported.

``fcnlab-report --pick-sweep --seeds N [--fresh]`` prints the folder ``make reproduce-table2`` sweeps
into (:mod:`fcnlab.reporting.sweep_pick`): the same one for the same code and seed count, so a re-run
resumes it.

``fcnlab-report --table1 <nets.json> <sweep dir>``: Table 1 instead (``table1.{md,csv}``, make
reproduce-table1); ``--lr-search <sweep dir>``: its line search (``table1_lr_search.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnlab.errors import exit_on_user_error
from fcnlab.reporting.build import build_report
from fcnlab.reporting.sweep_pick import code_fingerprint, pick_sweep

__all__ = ["build_report", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, nargs="?", help="a multirun sweep dir (holds one folder per job)"
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="where table2.{md,csv} and PNGs go")
    parser.add_argument(
        "--note", action="append", default=[], help="an extra line for the report (repeatable)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace table2.* / figure files in --out that fcnlab-report did not write (refused otherwise)",
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log table and figures as a wandb run in the sweep's group (offline: <sweep dir>/wandb)",
    )
    pick = parser.add_argument_group("choosing make reproduce-table2's folder (prints it, builds nothing)")
    pick.add_argument("--pick-sweep", action="store_true", help="print the sweep folder for this code")
    pick.add_argument("--seeds", type=int, default=1, help="seeds of the sweep (make's SEEDS)")
    pick.add_argument("--fresh", action="store_true", help="a new folder instead of the newest one")
    pick.add_argument("--runs-dir", type=Path, default=Path("results/runs"), help="where the sweeps live")
    pick.add_argument(
        "--table", choices=("table1", "table1_lr_search", "table2"), default="table2", help="whose folder"
    )
    table1 = parser.add_argument_group("Table 1 (fcnlab.reporting.table1)")
    table1.add_argument(
        "--table1", type=Path, metavar="NETS_JSON", help="report Table 1 (fcnlab-models --table1's file)"
    )
    table1.add_argument("--lr-search", action="store_true", help="report Table 1's line search sweep")
    args = parser.parse_args(argv)
    if args.pick_sweep:
        import fcnlab
        from fcnlab.config import CONF_DIR, SWEEPS_DIR  # late: a report needs no Hydra

        with exit_on_user_error():
            fingerprint = code_fingerprint([Path(fcnlab.__file__).parent, CONF_DIR, SWEEPS_DIR])
            print(pick_sweep(args.runs_dir, args.seeds, fingerprint, fresh=args.fresh, table=args.table))
        return
    if args.sweep_dir is None:
        print(
            "error: fcnlab-report needs the sweep dir to report, e.g. fcnlab-report results/runs/<sweep>",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.table1 or args.lr_search:
        from fcnlab.reporting.table1 import build_lr_search, build_table1

        with exit_on_user_error(args.out):
            if args.lr_search:
                build_lr_search(args.sweep_dir, args.out, overwrite=args.overwrite)
            else:
                rows = build_table1(
                    args.sweep_dir, args.table1, args.out, args.note, overwrite=args.overwrite
                )
        print((args.out / ("table1_lr_search.md" if args.lr_search else "table1.md")).read_text())
        sys.exit(1 if not args.lr_search and any(r["status"] != "ok" for r in rows) else 0)
    with exit_on_user_error(args.out):
        rows = build_report(args.sweep_dir, args.out, args.note, overwrite=args.overwrite)
    print((args.out / "table2.md").read_text())
    if args.wandb:
        from fcnlab.reporting.wandb_report import log_to_wandb

        log_to_wandb(args.sweep_dir, args.out, rows)
    if any(r["status"] != "ok" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
