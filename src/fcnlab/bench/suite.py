"""One ``fcnlab-bench`` run: the peak before and after, each row in its own process, the default run.

:func:`run` returns the ``results/bench.json`` record; :func:`summary_lines` is what ``make bench``
prints after the progress lines. The command line is :mod:`fcnlab.cli.bench`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

from fcnlab.bench import measure, pipeline, report
from fcnlab.bench.measure import cpu_model
from fcnlab.bench.peers import VERSION, import_torchfcn
from fcnlab.runinfo import git_sha, hardware, versions


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


def measure_rows(args: argparse.Namespace, with_peers: bool) -> tuple[list[dict], list[str]]:
    """(rows, errors): every row of :func:`row_specs`, a progress line each; a failed row is an error."""
    rows, errors = [], []
    for spec in row_specs(args, with_peers):
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
    return rows, errors


def _peaks(peaks: list[dict]) -> dict:
    best = max(peaks, key=lambda p: p["peak_conv3x3_gflops"])  # contention only ever lowers a peak
    return {
        **best,
        "peak_matmul_gflops": max(p["peak_matmul_gflops"] for p in peaks),
        "peak_runs": [{k: p[k] for k in ("peak_conv3x3_gflops", "peak_matmul_gflops")} for p in peaks],
        "peak_reference": "peak_conv3x3_gflops, the higher of the runs before and after the rows",
    }


def _machine(load_start: tuple[float, float, float]) -> dict:
    return {
        "hardware": hardware(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
    }


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark as ``args`` (:func:`fcnlab.cli.bench.parse_args`) asks; its record."""
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
    rows, errors = measure_rows(args, torchfcn is not None)
    peaks.append(measure.peak_gflops(device, peak_reps, args.quick, args.bf16))
    result = _peaks(peaks)
    result["rows"] = report.add_derived(rows, result["peak_conv3x3_gflops"])
    result["torchfcn"] = {"version": VERSION, "available": torchfcn is not None, "why_not": why or None}
    if not args.no_pipeline:
        print("  default run: loader vs training step, metric cost ...", flush=True)
        result.update(pipeline.default_throughput(args.override, 2 if args.quick else 5))
        result.update(pipeline.metric_cost(3 if args.quick else 20))
        result["table2_wall"] = pipeline.table2_wall_time(args.runs_dir)
    result["targets"] = report.targets(result)
    result.update(
        settings={k: v for k, v in vars(args).items() if k not in ("out",)},
        machine=_machine(load_start),
        versions=versions(),
        git_sha=git_sha(),
        timestamp=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        wall_seconds=time.perf_counter() - start,
        errors=errors,
    )
    return result


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
