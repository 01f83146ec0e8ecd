"""``fcnlab-bench``: fcnlab's FCN-32s/16s/8s beside torchfcn's and this machine's peak (``make bench``).

fcnlab-bench                                    # -> results/bench.json (CUDA when there is one)
fcnlab-bench --quick                            # one round, about a third of the time
fcnlab-bench --models fcn8s --sizes 375x500 500x500 --repeats 5
fcnlab-bench --override trainer.precision=32-true --override model.backbone=vgg16_tiny
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fcnlab.atomic import refuse_foreign, write_owned_json
from fcnlab.bench.peers import PEERS
from fcnlab.config import CONF_DIR
from fcnlab.errors import exit_on_user_error


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; a bad value ends in one line and exit 2."""
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round of 1 forward and 1 train step a row")
    p.add_argument("--models", nargs="+", default=["fcn32s", "fcn16s", "fcn8s"], help="conf/model names")
    geometries = ["faithful", "efficient"]
    p.add_argument("--geometries", nargs="+", default=geometries, choices=geometries)
    p.add_argument("--sizes", nargs="+", type=_size, default=[(375, 500)], metavar="HxW")
    p.add_argument("--peers", nargs="*", default=["fcn32s", "fcn8s"], help="models also timed in torchfcn")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--forward-reps", type=int, default=None, help="timed forwards a run (default 2, quick 1)")
    p.add_argument("--train-reps", type=int, default=1, help="timed training steps a run (default 1)")
    p.add_argument("--max-spread", type=float, default=0.10, help="flag rows whose times spread more")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--device", choices=["cpu", "cuda"], default=device, help=f"default here: {device}")
    p.add_argument("--no-loader", action="store_true", help="skip the train loader's images/s")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="Hydra override")
    p.add_argument("--out", default="results/bench.json")
    p.add_argument("--overwrite", action="store_true", help="replace a file it did not write")
    args = p.parse_args(argv)
    known = sorted(f.stem for f in (CONF_DIR / "model").glob("*.yaml"))
    for name in args.models:
        if name not in known:
            p.error(f"unknown model {name!r} in --models; valid: {', '.join(known)}")
    for name in args.peers:
        if name not in PEERS:
            p.error(f"no torchfcn peer for {name!r} in --peers; valid: {', '.join(PEERS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device here")
    for name in ("repeats", "forward_reps", "train_reps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} {value}: must be at least 1")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.forward_reps = args.forward_reps or (1 if args.quick else 2)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from fcnlab.bench import bench

    with exit_on_user_error(args.out):
        if not args.overwrite:  # checked before minutes of timing, not after
            todo = "give another --out, or --overwrite to replace it"
            refuse_foreign([Path(args.out)], "fcnlab-bench", todo)
        result = bench.run(args)
        write_owned_json(args.out, result, "fcnlab-bench")
    print("\n".join([*bench.summary_lines(result), "", f"wrote {args.out}"]))
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
