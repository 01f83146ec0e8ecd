"""``fcnlab-gpu-check`` (``make gpu-check``): the real-data presets on a CUDA device, measured.

Without CUDA it says so in one line and exits 0; ``--smoke`` runs every step on the CPU with the tiny
backbone (:mod:`fcnlab.bench.gpu_check`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from fcnlab.bench.gpu_check import CheckFailed, Plan, check
from fcnlab.runinfo import hardware, versions, write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/gpu_check.json", help="where the figures go (JSON)")
    p.add_argument("--smoke", action="store_true", help="every step on the CPU, tiny backbone and images")
    p.add_argument(
        "--keep", action="store_true", help="keep the work folder (data, runs, ~GB of checkpoints)"
    )
    args = p.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing measured")
        return 0
    plan = Plan.smoke() if args.smoke else Plan.gpu()
    work = Path(tempfile.mkdtemp(prefix="fcnlab_gpu_check_"))
    try:
        if torch.cuda.is_available() and not args.smoke:
            print(f"gpu-check on {torch.cuda.get_device_name()} (work folder {work})", flush=True)
        results = check(plan, work)
    except CheckFailed as e:
        print(f"gpu-check failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results.update(hardware=hardware(), versions=versions())
    write_json(Path(args.out), results)
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
