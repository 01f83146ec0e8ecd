"""``fcnlab-bench``: FCN-32s/16s/8s beside torchfcn and this machine's peak (``make bench``).

fcnlab-bench                                   # the full run -> results/bench.json
fcnlab-bench --quick --sizes 64x64 --models fcn8s --peers
fcnlab-bench --device cuda --bf16              # where a GPU is lent
"""

from __future__ import annotations

import argparse
import sys

import torch

from fcnlab.atomic import write_json
from fcnlab.bench import suite
from fcnlab.bench.peers import PEERS


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
    p.add_argument("--quick", action="store_true", help="2 forward reps, 1 train rep, first size only")
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
    p.add_argument("--forward-reps", type=int, default=None, help="default 5 (quick: 2)")
    p.add_argument("--train-reps", type=int, default=None, help="default 5 (quick: 1)")
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
    p.add_argument("--out", default="results/bench.json")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; unknown models, backbones or devices end in one line and exit 2."""
    from fcnlab.models import list_models
    from fcnlab.models.vgg import BACKBONES

    p = _parser()
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        p.error(f"unknown model {unknown[0]!r} in --models; valid: {', '.join(list_models())}")
    bad_peers = [m for m in args.peers if m not in PEERS]
    if bad_peers:
        p.error(f"no torchfcn peer for {bad_peers[0]!r} in --peers; valid: {', '.join(PEERS)}")
    if args.backbone not in BACKBONES:
        p.error(f"unknown backbone {args.backbone!r}; valid: {', '.join(sorted(BACKBONES))}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device here")
    if args.quick:
        args.sizes = args.sizes[:1]
    args.forward_reps = args.forward_reps or (2 if args.quick else 5)
    args.train_reps = args.train_reps or (1 if args.quick else 5)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = suite.run(args)
    write_json(args.out, result)
    print("\n".join(suite.summary_lines(result, args.out)))
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
