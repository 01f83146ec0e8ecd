"""``fcnlab-report <sweep dir> [--out results]``: Table 2 (md + csv) and PNG figures from a sweep.

Works on any finished (or partly failed) sweep: a job without results is a failed row, not a crash.
Reads files only (``fcnlab.reporting``): neither torch nor Lightning is imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnlab.errors import exit_on_user_error
from fcnlab.reporting.build import build_report

__all__ = ["build_report", "main"]


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
    with exit_on_user_error():
        rows = build_report(args.sweep_dir, args.out, args.note)
    print((args.out / "table2.md").read_text())
    if args.wandb:
        from fcnlab.reporting.wandb_run import log_to_wandb

        log_to_wandb(args.sweep_dir, args.out, rows)
    if any(r["status"] != "ok" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
