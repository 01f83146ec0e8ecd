"""``fcnlab-gpu-check`` (``make gpu-check``): the VOC presets on a CUDA GPU, measured and checked
(:mod:`fcnlab.bench.gpu_check`). Without CUDA: one line, exit 0; ``--smoke``: all of it on the CPU, tiny."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from fcnlab.atomic import write_json
from fcnlab.bench.gpu_check import CheckFailed, Plan, check
from fcnlab.runinfo import hardware, versions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/gpu_check.json", help="where the figures go (JSON)")
    p.add_argument("--smoke", action="store_true", help="every step on the CPU, tiny backbone and images")
    p.add_argument(
        "--keep", action="store_true", help="keep the work folder (data, runs, GBs of checkpoints)"
    )
    args = p.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing measured")
        return 0
    work = Path(tempfile.mkdtemp(prefix="fcnlab_gpu_check_"))
    if not args.smoke:
        print(f"gpu-check on {torch.cuda.get_device_name()} (work folder {work})", flush=True)
    try:
        results = check(Plan.smoke() if args.smoke else Plan(), work)
    except CheckFailed as e:
        print(f"gpu-check failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    write_json(Path(args.out), {**results, "hardware": hardware(), "versions": versions()})
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
