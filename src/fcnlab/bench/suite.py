"""One ``fcnlab-bench`` run: the peak before and after, each row repeated, interleaved with the other
implementations of its model and size, each run in its own process; then the default run.

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

from fcnlab.bench import aggregate, measure, peak, pipeline, report
from fcnlab.bench.peers import VERSION, import_torchfcn
from fcnlab.runinfo import cpu_model, git_sha, hardware, versions


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


def row_groups(args: argparse.Namespace, with_peers: bool) -> list[list[dict]]:
    """Rows measured side by side: per size and model, torchfcn's and fcnlab's geometries."""
    common = {k: getattr(args, k) for k in ("forward_reps", "train_reps", "threads", "compile", "bf16")}
    common.update(channels_last=args.channels_last, device=args.device)
    groups = []
    for h, w in args.sizes:
        for model in args.models:
            group = [
                {"impl": "fcnlab", "model": model, "geometry": g, "backbone": args.backbone}
                for g in args.geometries
            ]
            if with_peers and model in args.peers:
                peer = {"impl": "torchfcn", "model": model, "geometry": "faithful", "backbone": "vgg16"}
                group.insert(0, peer)
            groups.append([{**spec, **common, "height": h, "width": w} for spec in group])
    return groups


def row_specs(args: argparse.Namespace, with_peers: bool) -> list[dict]:
    """Every row once, in the order of :func:`row_groups`."""
    return [spec for group in row_groups(args, with_peers) for spec in group]


def interleaved(group: list[dict], repeats: int) -> list[tuple[int, dict]]:
    """(round, spec) in measuring order: the group ``repeats`` times, every other one reversed (ABC CBA)."""
    return [(r, spec) for r in range(repeats) for spec in (group if r % 2 == 0 else group[::-1])]


def measure_rows(args: argparse.Namespace, with_peers: bool) -> tuple[list[dict], list[str]]:
    """(runs, errors): every row of :func:`row_groups` ``args.repeats`` times, interleaved within its
    group, a progress line each; a failed run is an error."""
    runs, errors = [], []
    for group in row_groups(args, with_peers):
        for round_, spec in interleaved(group, args.repeats):
            name = f"{spec['impl']} {spec['model']} {spec['geometry']} {spec['height']}x{spec['width']}"
            t0 = time.perf_counter()
            try:
                run = run_child(spec, args.mmap_threshold)
            except RuntimeError as e:
                print(f"  [{round_ + 1}/{args.repeats}] {name}: failed ({e})", flush=True)
                errors.append(f"{name} (round {round_ + 1}): {e}")
                continue
            runs.append({**run, "round": round_})
            print(
                f"  [{round_ + 1}/{args.repeats}] {name}: forward {run['forward_ms']:.0f} ms, train step "
                f"{run['train_step_ms']:.0f} ms, peak RSS {run['peak_rss_mib']:.0f} MiB "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return runs, errors


def _peaks(peaks: list[dict], probes: list[dict]) -> dict:
    """The classic probe (conv4, matmul) and the net-shape probe, each the best of its runs."""
    best = max(peaks, key=lambda p: p["peak_conv3x3_gflops"])  # contention only ever lowers a peak
    shapes = max(probes, key=lambda p: p["peak_probe_gflops"])
    if best["peak_conv3x3_gflops"] > shapes["peak_probe_gflops"]:
        shapes = {**shapes, "peak_probe_gflops": best["peak_conv3x3_gflops"]}
        shapes["peak_probe_shape"] = best["peak_conv3x3_shape"]
    return {
        **best,
        **shapes,
        "peak_matmul_gflops": max(p["peak_matmul_gflops"] for p in peaks),
        "peak_runs": [{k: p[k] for k in ("peak_conv3x3_gflops", "peak_matmul_gflops")} for p in peaks],
        "peak_probe_runs": [p["peak_probe_gflops"] for p in probes],
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
    torchfcn, why = import_torchfcn() if args.peers else (None, "no --peers asked for")
    if args.peers and torchfcn is None:
        print(f"torchfcn {VERSION} does not import ({why}); measuring fcnlab alone")
    shapes = peak.net_conv_shapes(row_specs(args, False))

    def probe() -> tuple[dict, dict]:
        return (
            measure.peak_gflops(device, peak_reps, args.quick, args.bf16),
            peak.probe(shapes, device, 1 if args.quick else 3, args.bf16),
        )

    print(f"  peak: {len(shapes)} conv shapes of the nets, before the rows ...", flush=True)
    before = probe()
    runs, errors = measure_rows(args, torchfcn is not None)
    print("  peak: again, after the rows ...", flush=True)
    after = probe()
    result = _peaks([before[0], after[0]], [before[1], after[1]])
    rows = aggregate.aggregate(runs)
    reference, source = aggregate.peak_reference(
        rows, result["peak_probe_gflops"], result["peak_probe_shape"]
    )
    result.update(peak_reference_gflops=reference, peak_source=source, peak_gflops=reference)
    result["rows"] = report.add_derived(rows, reference)
    aggregate.flag_rows(result["rows"], result["peak_probe_gflops"], args.max_spread)
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
        f"CPU (lscpu Model name): {m['cpu_model']}, {m['cores']} cores, torch {result['versions']['torch']}, "
        f"{m['torch_threads']} threads; git {result['git_sha'][:12]}; 1-min load average "
        f"{m['load_average_1min']['start']:.1f} at start, {m['load_average_1min']['end']:.1f} at end",
        f"each row: median of {result['settings']['repeats']} runs (own process each, interleaved with the "
        f"other implementations of its model and size); spread = (max - min) / median of the runs",
        f"peak {result['peak_reference_gflops']:.0f} GFLOP/s ({result['peak_source']}); the probe over the "
        f"nets' {len(result['probe'])} conv shapes gave {result['peak_probe_gflops']:.0f} "
        f"(runs: {', '.join(f'{v:.0f}' for v in result['peak_probe_runs'])}), the 3x3 conv "
        f"{result['peak_conv3x3_shape']} {result['peak_conv3x3_gflops']:.0f}, matmul "
        f"{result['peak_matmul_gflops']:.0f} ({result['peak_matmul_shape']}); % peak is against "
        f"{result['peak_reference_gflops']:.0f}",
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
