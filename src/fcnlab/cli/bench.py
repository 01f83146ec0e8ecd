"""``fcnlab-bench``: FCN-32s/16s/8s beside torchfcn and this machine's peak (``make bench``).

fcnlab-bench                                   # the full run -> results/bench.json
fcnlab-bench --quick --sizes 64x64 --models fcn8s --peers
fcnlab-bench --device cuda --bf16              # where a GPU is lent
fcnlab-bench --table2-profile [--model fcn32s] [--epochs N]   # one Table 2 row's wall time per stage
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import fcnlab
from fcnlab.atomic import write_json
from fcnlab.bench import suite
from fcnlab.bench.peers import PEERS
from fcnlab.config import CONF_DIR, SWEEPS_DIR
from fcnlab.errors import exit_on_user_error
from fcnlab.reporting.sweep_pick import code_fingerprint, pick_sweep


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print its usage too)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 375x500") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def _parser() -> _Parser:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="2 runs of 2 forward reps and 1 train rep, first size only"
    )
    p.add_argument("--models", nargs="+", default=["fcn32s", "fcn16s", "fcn8s"], metavar="NAME")
    p.add_argument(
        "--geometries", nargs="+", default=["faithful", "efficient"], choices=["faithful", "efficient"]
    )
    p.add_argument("--sizes", nargs="+", type=_size, default=[(375, 500), (500, 500)], metavar="HxW")
    p.add_argument("--backbone", default="vgg16", help="fcnlab's backbone (torchfcn's is always VGG16)")
    p.add_argument(
        "--peers",
        nargs="*",
        default=["fcn32s", "fcn8s"],
        metavar="NAME",
        help="models also measured in torchfcn (none: --peers with no name)",
    )
    p.add_argument("--repeats", type=int, default=None, help="runs per row, interleaved (default 3, quick 2)")
    p.add_argument(
        "--forward-reps", type=int, default=None, help="timed forwards per run (default 3, quick 2)"
    )
    p.add_argument(
        "--train-reps", type=int, default=None, help="timed train steps per run (default 2, quick 1)"
    )
    p.add_argument(
        "--max-spread",
        type=float,
        default=0.10,
        help="a row whose runs spread more than this ((max-min)/median) is flagged unreliable",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--channels-last", action="store_true", help="models and inputs in NHWC")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (compile time untimed)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (implies --channels-last)")
    p.add_argument(
        "--mmap-threshold",
        type=int,
        default=None,
        metavar="BYTES",
        help="glibc MALLOC_MMAP_THRESHOLD_ for the measuring processes (default: glibc's)",
    )
    p.add_argument("--no-pipeline", action="store_true", help="skip loader/metric/Table 2 measurements")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra override for the default-run measurements (repeatable)",
    )
    p.add_argument("--runs-dir", default="results/runs", help="where Table 2 sweeps live")
    p.add_argument(
        "--out", default=None, help="default results/bench.json (profile: results/table2_profile.json)"
    )
    prof = p.add_argument_group("--table2-profile: one embedded Table 2 row, run for real, timed per stage")
    prof.add_argument("--table2-profile", action="store_true", help="profile a row instead of the bench")
    prof.add_argument("--model", default="fcn32s", help="the row (a conf/model name; default fcn32s)")
    prof.add_argument(
        "--epochs", type=int, default=None, help="stage_epochs for the row (default: Table 2's)"
    )
    prof.add_argument("--profile-dir", default="results/profile", help="the profiled run's folders")
    prof.add_argument(
        "--sweep-dir",
        default=None,
        help="where a staged row finds its parent's best.ckpt (default: make reproduce-table2's sweep)",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; unknown models, backbones or devices end in one line and exit 2."""
    from fcnlab.models import list_backbones, list_models

    p = _parser()
    args = p.parse_args(argv)
    if args.table2_profile:
        rows = sorted(f.stem for f in (CONF_DIR / "model").glob("*.yaml"))
        if args.model not in rows:
            p.error(f"unknown Table 2 row {args.model!r} in --model; valid: {', '.join(rows)}")
        if args.epochs is not None and args.epochs < 1:
            p.error(f"--epochs {args.epochs}: a profiled row needs at least 1 epoch")
        args.out = args.out or "results/table2_profile.json"
        return args
    args.out = args.out or "results/bench.json"
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        p.error(f"unknown model {unknown[0]!r} in --models; valid: {', '.join(list_models())}")
    bad_peers = [m for m in args.peers if m not in PEERS]
    if bad_peers:
        p.error(f"no torchfcn peer for {bad_peers[0]!r} in --peers; valid: {', '.join(PEERS)}")
    if args.backbone not in list_backbones():
        p.error(f"unknown backbone {args.backbone!r}; valid: {', '.join(list_backbones())}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device here")
    if args.quick:
        args.sizes = args.sizes[:1]
    for name in ("repeats", "forward_reps", "train_reps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} {value}: must be at least 1")
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.forward_reps = args.forward_reps or (2 if args.quick else 3)
    args.train_reps = args.train_reps or (1 if args.quick else 2)
    return args


def table2_profile(args: argparse.Namespace) -> None:
    """``--table2-profile``: run the row, print its stages, write the record to ``args.out``."""
    from fcnlab.bench.table2_profile import profile, table_lines

    sweep_dir = args.sweep_dir
    if sweep_dir is None:
        fingerprint = code_fingerprint([Path(fcnlab.__file__).parent, CONF_DIR, SWEEPS_DIR])
        sweep_dir = str(pick_sweep(Path("results/runs"), 1, fingerprint))
    with exit_on_user_error():
        record = profile(args.model, args.epochs, args.override, Path(args.profile_dir), sweep_dir)
    write_json(args.out, record)
    print("\n".join(["", *table_lines(record), "", f"wrote {args.out}"]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table2_profile:
        table2_profile(args)
        return
    result = suite.run(args)
    write_json(args.out, result)
    print("\n".join(suite.summary_lines(result, args.out)))
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
