"""``fcnlab-bench``: FCN-32s/16s/8s beside torchfcn and this machine's peak (``make bench``).

fcnlab-bench                                   # the full run -> results/bench.json
fcnlab-bench --quick --sizes 64x64 --models fcn8s --peers
fcnlab-bench --device cuda --bf16              # where a GPU is lent
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from fcnlab.bench import measure, pipeline, report
from fcnlab.bench.peers import PEERS, VERSION, import_torchfcn
from fcnlab.runinfo import git_sha, hardware, versions, write_json


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
    """The command line; unknown models, backbones or devices end in one line and exit 2."""
    from fcnlab.models import list_models
    from fcnlab.models.vgg import BACKBONES

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


def run_child(spec: dict, mmap_threshold: int | None = None) -> dict:
    """Measure one row in a fresh interpreter (its own peak RSS); raises with the child's last words."""
    env = dict(os.environ)
    if mmap_threshold is not None:  # a fixed threshold also stops glibc from raising it as it goes
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    command = [sys.executable, "-m", "fcnlab.bench.child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row_specs(args: argparse.Namespace, with_peers: bool) -> list[dict]:
    """Rows in measuring order: per size and model, torchfcn's right before fcnlab's two geometries."""
    common = {k: getattr(args, k) for k in ("forward_reps", "train_reps", "threads", "compile", "bf16")}
    common.update(channels_last=args.channels_last, device=args.device)
    specs = []
    for h, w in args.sizes:
        for model in args.models:
            group = [
                {"impl": "fcnlab", "model": model, "geometry": g, "backbone": args.backbone}
                for g in args.geometries
            ]
            if with_peers and model in args.peers:
                peer = {"impl": "torchfcn", "model": model, "geometry": "faithful", "backbone": "vgg16"}
                group.insert(0, peer)
            specs += [{**spec, **common, "height": h, "width": w} for spec in group]
    return specs


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start, load_start = time.perf_counter(), os.getloadavg()
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak_reps = 2 if args.quick else 5
    peaks = [measure.peak_gflops(device, peak_reps, args.quick, args.bf16)]
    torchfcn, why = import_torchfcn() if args.peers else (None, "no --peers asked for")
    if args.peers and torchfcn is None:
        print(f"torchfcn {VERSION} does not import ({why}); measuring fcnlab alone")
    rows, errors = [], []
    for spec in row_specs(args, torchfcn is not None):
        name = f"{spec['impl']} {spec['model']} {spec['geometry']} {spec['height']}x{spec['width']}"
        t0 = time.perf_counter()
        try:
            row = run_child(spec, args.mmap_threshold)
        except RuntimeError as e:
            print(f"  {name}: failed ({e})", flush=True)
            errors.append(f"{name}: {e}")
            continue
        rows.append(row)
        print(
            f"  {name}: forward {row['forward_ms']:.0f} ms, train step {row['train_step_ms']:.0f} ms, "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    peaks.append(measure.peak_gflops(device, peak_reps, args.quick, args.bf16))
    best = max(peaks, key=lambda p: p["peak_conv3x3_gflops"])  # contention only ever lowers a peak
    result = {
        **best,
        "peak_matmul_gflops": max(p["peak_matmul_gflops"] for p in peaks),
        "peak_runs": [{k: p[k] for k in ("peak_conv3x3_gflops", "peak_matmul_gflops")} for p in peaks],
        "peak_reference": "peak_conv3x3_gflops, the higher of the runs before and after the rows",
        "rows": report.add_derived(rows, best["peak_conv3x3_gflops"]),
        "torchfcn": {"version": VERSION, "available": torchfcn is not None, "why_not": why or None},
    }
    if not args.no_pipeline:
        print("  default run: loader vs training step, metric cost ...", flush=True)
        result.update(pipeline.default_throughput(args.override, 2 if args.quick else 5))
        result.update(pipeline.metric_cost(3 if args.quick else 20))
        result["table2_wall"] = pipeline.table2_wall_time(args.runs_dir)
    result["targets"] = report.targets(result)
    result.update(
        settings={k: v for k, v in vars(args).items() if k not in ("out",)},
        machine={
            "hardware": hardware(),
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        },
        versions=versions(),
        git_sha=git_sha(),
        timestamp=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        wall_seconds=time.perf_counter() - start,
        errors=errors,
    )
    write_json(args.out, result)
    print("\n".join(summary_lines(result, args.out)))
    if errors:
        raise SystemExit(1)


def summary_lines(result: dict, out: str) -> list[str]:
    """What ``make bench`` prints after the progress lines: table, peak, default run, targets."""
    m = result["machine"]
    lines = [
        "",
        f"{m['cpu_model']}, {m['cores']} cores, torch {result['versions']['torch']}, "
        f"{m['torch_threads']} threads; git {result['git_sha'][:12]}; 1-min load average "
        f"{m['load_average_1min']['start']:.1f} at start, {m['load_average_1min']['end']:.1f} at end",
        f"peak: 3x3 conv {result['peak_conv3x3_gflops']:.0f} GFLOP/s ({result['peak_conv3x3_shape']}), "
        f"matmul {result['peak_matmul_gflops']:.0f} GFLOP/s ({result['peak_matmul_shape']}); "
        "% peak is against the conv",
        "",
        *report.table_lines(result["rows"]),
        "",
    ]
    if "loader_images_per_s" in result:
        lines += [
            f"default run ({result['default_setup']}): train loader {result['loader_images_per_s']:.0f} "
            f"images/s, training step {result['train_images_per_s']:.0f} images/s "
            f"({result['loader_over_train']:.1f}x)",
            f"metric per {result['metric_image']} image: argmax {result['argmax_ms_per_image']:.2f} ms, "
            f"confusion-matrix update {result['confusion_update_ms_per_image']:.2f} ms; "
            f"segmentation_scores {result['segmentation_scores_ms']:.2f} ms per call (once per epoch)",
            table2_line(result.get("table2_wall")),
            "",
        ]
    lines += ["targets:", *report.target_lines(result["targets"]), "", f"wrote {out}"]
    return lines


def table2_line(wall: dict | None) -> str:
    """The newest Table 2 sweep's wall time per stage, or where it would come from."""
    if wall is None:
        return "Table 2 wall time: no sweep under results/runs yet; `make reproduce-table2` produces it"
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in wall["stages_seconds"].items() if v is not None)
    return f"Table 2 wall time ({wall['sweep']}): {stages}; total {wall['total_seconds']:.0f} s"


if __name__ == "__main__":
    main()
