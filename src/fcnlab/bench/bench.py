"""``make bench``: fcnlab's FCNs beside torchfcn's on the same input, against this machine's measured peak.

Per size and model, torchfcn's net (``--peers``) and fcnlab's geometries are timed one after another for
``--repeats`` rounds, every other round reversed (ABC CBA ABC), so a slow moment of a shared machine hits
every implementation. A timing is an untimed warm-up call, then ``reps`` calls and one second at least:
the forward in eval mode under ``torch.inference_mode`` (as validation), and the training step (forward,
the cross-entropy ``FCNModule.loss`` computes by default, backward, the trainer's optimizer). The nets are
``fcnlab-train``'s own: ``create_model(**model_kwargs(cfg.model))`` of the composed training config
(``--override`` changes it), random weights, moved to the device and nothing else (no memory format,
cuDNN or compile setting of the bench's own), run in ``trainer.precision`` (``bf16-mixed``: Lightning's
autocast). A row's ``*_ms`` is the median of its timed calls, ``*_spread`` their (max - min) / median;
it is unreliable when a spread exceeds ``--max-spread``, when it was timed once, or when its forward
beats the peak. FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the meta device. The peak:
VGG16's conv4 at the first size, timed alone before and after the rows, the best (contention only lowers
a peak); ``peak_fraction`` is a row's forward GFLOP/s over it. docs/performance.md has the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.bench.peers import PEERS, VERSION, build_peer, import_torchfcn
from fcnlab.data.classes import VOID
from fcnlab.errors import FCNLabError
from fcnlab.models import create_model
from fcnlab.runinfo import cpu_model, git_sha, versions
from fcnlab.training.allocator import keep_freed_memory
from fcnlab.training.device import set_float32_precision
from fcnlab.training.optim import build_optimizer

PRECISIONS = ("32-true", "32", "bf16-mixed")  # the trainer's; 16-mixed would need a GradScaler step


def compose(overrides: list[str]):
    """The training config ``fcnlab-train`` would compose; a bad override is one line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fcnlab.config import compose_train_config

    try:
        return compose_train_config(overrides, job="bench")
    except (HydraException, OmegaConfBaseException) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FCNLabError(f"--override: {first}; check the --override values") from None


def new_row(model: str, geometry: str, size: tuple[int, int], peer: bool, args) -> dict:
    """A row: what names it, its FLOPs, and the ``spec`` its runs get (plain values: it goes to a child)."""
    from omegaconf import OmegaConf

    from fcnlab.training.run import model_kwargs

    trainer = "gpu" if args.device == "cuda" else "cpu"
    overrides = [f"model={model}", f"model.geometry={geometry}", "model.backbone=vgg16", f"trainer={trainer}"]
    cfg = compose([*overrides, *args.override, "model.pretrained=null"])
    precision = str(cfg.trainer.precision)
    if precision not in PRECISIONS:
        raise FCNLabError(f"trainer.precision={precision}: the bench times {', '.join(PRECISIONS)}")
    spec = dict(impl="torchfcn" if peer else "fcnlab", net=model_kwargs(cfg.model), height=size[0])
    spec.update(width=size[1], optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True))
    spec.update(bias_lr_mult=float(cfg.loss.bias_lr_mult), precision=precision)
    spec.update(float32_matmul_precision=str(cfg.float32_matmul_precision))
    spec.update({k: getattr(args, k) for k in ("device", "threads", "forward_reps", "train_reps")})
    backbone = "vgg16" if peer else spec["net"]["backbone"]
    row = dict(impl=spec["impl"], model=model, geometry="faithful" if peer else geometry, backbone=backbone)
    row.update(height=size[0], width=size[1], precision=precision, **net_flops(spec), runs=0)
    row.update(forward_times=[], train_step_times=[], peak_memory_mib=0.0, errors=[], spec=spec)
    return row


def build(spec: dict) -> nn.Module:
    """The spec's net with random weights: fcnlab's ``create_model`` or torchfcn's class."""
    if spec["impl"] == "fcnlab":
        return create_model(**spec["net"])
    torchfcn, why = import_torchfcn()
    if torchfcn is None:
        raise RuntimeError(f"torchfcn does not import: {why}")
    return build_peer(torchfcn, spec["net"]["name"], spec["net"]["num_classes"])


def count_flops(fn) -> int:
    """FLOPs ``fn`` runs by torch's counter (a multiply-add is 2); imported late: it grows a process."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def net_flops(spec: dict) -> dict:
    """Parameters and FLOPs of a forward and of a training step, counted on the meta device."""
    with torch.device("meta"):
        net = build(spec)
        x = torch.empty(1, 3, spec["height"], spec["width"])
        target = torch.zeros(1, spec["height"], spec["width"], dtype=torch.long)
    with torch.inference_mode():
        forward = count_flops(lambda: net.eval()(x))
    train = count_flops(lambda: F.cross_entropy(net.train()(x), target).backward())
    params = sum(p.numel() for p in net.parameters())
    return {"params": params, "gflop": forward / 1e9, "train_gflop": train / 1e9}


def autocast(precision: str, device: torch.device):
    """The trainer's forward context: Lightning's own for ``bf16-mixed`` (autocast, weight cache off)."""
    if precision.endswith("-mixed"):
        from lightning.pytorch.plugins.precision import MixedPrecision

        return MixedPrecision(precision, device.type).forward_context
    return contextlib.nullcontext


def time_calls(fn, reps: int, device: torch.device, min_seconds: float = 1.0) -> list[float]:
    """ms of each call after an untimed warm-up (kernel choice, allocator): ``reps`` calls and
    ``min_seconds`` at least, so a GPU's millisecond steps are timed many times."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times, total = [], 0.0
    while len(times) < reps or total < 1000 * min_seconds:
        start = time.perf_counter()
        fn()
        sync()  # queued GPU work belongs to the call that queued it
        times.append(1000 * (time.perf_counter() - start))
        total += times[-1]
    return times


def measure(spec: dict) -> dict:
    """One run of one row: its forward and training-step times and its peak memory."""
    device = torch.device(spec["device"])
    torch.set_flush_denormal(True)  # process settings as fcnlab.training.run.train makes them
    keep_freed_memory()
    set_float32_precision(spec["float32_matmul_precision"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    from hydra.utils import instantiate

    torch.manual_seed(0)
    net = build(spec).to(device)
    optimizer = build_optimizer(instantiate(spec["optimizer"]), net, spec["bias_lr_mult"])
    h, w = spec["height"], spec["width"]
    x = torch.randn(1, 3, h, w, device=device)
    target = torch.randint(0, spec["net"]["num_classes"], (1, h, w), device=device)
    context = autocast(spec["precision"], device)

    def forward() -> None:
        with torch.inference_mode(), context():
            net(x)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with context():
            loss = F.cross_entropy(net(x), target, ignore_index=VOID)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net.eval()
    forward_ms = time_calls(forward, spec["forward_reps"], device)
    net.train()
    train_ms = time_calls(train_step, spec["train_reps"], device)
    cuda = device.type == "cuda"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else rss
    return {"forward_ms": forward_ms, "train_step_ms": train_ms, "peak_memory_mib": peak}


def measure_in_fresh_process(spec: dict) -> dict:
    # A CPU run's peak memory is its process's ru_maxrss, which never goes down, and glibc keeps freed
    # memory (training/allocator.py): sharing a process, rows would report each other's peaks. Forked
    # from a server that has imported this module once, a fresh process costs no start-up.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure, spec).result()


def peak_gflops(size: tuple[int, int], device: torch.device, precision: str, reps: int = 3) -> dict:
    """VGG16's conv4 (1x512xH/8xW/8, 512->512, 3x3) timed alone: GFLOP/s, best of NCHW and NHWC."""
    c, h, w = 512, max(size[0] // 8, 1), max(size[1] // 8, 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, h, w, generator=gen).to(device)
    weight = (torch.randn(c, c, 3, 3, generator=gen) * 0.01).to(device)
    flops = count_flops(lambda: F.conv2d(x.to("meta"), weight.to("meta"), padding=1))
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi, wi = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
        with torch.inference_mode(), autocast(precision, device)():
            ms = statistics.median(time_calls(lambda xi=xi, wi=wi: F.conv2d(xi, wi, padding=1), reps, device))
        best = max(best, flops / ms / 1e6)
    return {"gflops": best, "shape": f"1x{c}x{h}x{w}, {c}->{c}, 3x3, pad 1"}


def interleaved(group: list, repeats: int) -> list[tuple[int, object]]:
    """(round, row) in timing order: the group ``repeats`` times, every other round reversed."""
    return [(r, row) for r in range(repeats) for row in (group if r % 2 == 0 else group[::-1])]


def spread(values: list[float]) -> float | None:
    """(max - min) / median; None for fewer than two values."""
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def flags(row: dict, peak: float, max_spread: float) -> list[str]:
    """Why a row's figures should not be trusted (empty: reliable)."""
    why = []
    for key, name in (("forward", "forward"), ("train_step", "train step")):
        value = row[f"{key}_spread"]
        if value is None:
            why.append(f"{name} timed once: spread unknown")
        elif value > max_spread:
            why.append(f"{name} spread {value:.0%} > {max_spread:.0%}")
    if row["forward_gflops"] > peak:
        why.append(f"forward {row['forward_gflops']:.0f} GFLOP/s is above the measured peak {peak:.0f}")
    return why


def finish(group: list[dict], peak: float, max_spread: float) -> None:
    """Medians, spreads, GFLOP/s, share of the peak, flags and the ratios to the group's torchfcn row."""
    for row in group:
        for key in ("forward", "train_step"):
            times = row.pop(f"{key}_times")
            row[f"{key}_ms"] = statistics.median(times) if times else float("nan")
            row[f"{key}_spread"], row[f"{key}_times_ms"] = spread(times), times
        row["forward_gflops"] = row["gflop"] / row["forward_ms"] * 1000
        row["train_gflops"] = row["train_gflop"] / row["train_step_ms"] * 1000
        row["peak_fraction"] = row["forward_gflops"] / peak
        row["unreliable"] = flags(row, peak, max_spread) if row["runs"] else ["no run finished"]
        row["reliable"] = not row["unreliable"]
    peer = group[0] if group[0]["impl"] == "torchfcn" else None
    for row in group:
        for key in ("forward", "train_step"):
            mine = peer is not None and row is not peer and row["backbone"] == "vgg16"
            row[f"{key}_ratio"] = row[f"{key}_ms"] / peer[f"{key}_ms"] if mine else None


def loader_throughput(overrides: list[str]) -> dict:
    """The train loader of the run ``overrides`` configure: images/s over its second epoch."""
    from hydra.utils import instantiate

    from fcnlab.data.throughput import loader_images_per_s

    cfg = compose(overrides)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # the embedded default generates data/shapes on first use
    datamodule.setup("fit")
    rate, seen = loader_images_per_s(datamodule, epochs=2)
    workers = datamodule.num_workers
    setup = f"{seen} images of {cfg.data.root}, batch {cfg.data.batch_size}, loader workers: {workers}"
    return {"images_per_s": rate, "setup": setup}


def time_rows(groups: list[list[dict]], args) -> None:
    """Every group's rows ``args.repeats`` times, interleaved; a progress line a run."""
    device = torch.device(args.device)
    for group in groups:
        for round_, row in interleaved(group, args.repeats):
            name = f"[{round_ + 1}/{args.repeats}] {row['impl']} {row['model']} {row['geometry']}"
            t0 = time.perf_counter()
            try:
                cpu = device.type == "cpu"
                done = measure_in_fresh_process(row["spec"]) if cpu else measure(row["spec"])
            except Exception as e:  # a failed run (out of memory, a broken peer) is reported, not fatal
                row["errors"].append(f"round {round_ + 1}: {type(e).__name__}: {e}")
                print(f"  {name}: failed ({type(e).__name__}: {e})", flush=True)
                continue
            row["runs"] += 1
            row["forward_times"] += done["forward_ms"]
            row["train_step_times"] += done["train_step_ms"]
            row["peak_memory_mib"] = max(row["peak_memory_mib"], done["peak_memory_mib"])
            fwd, train = (statistics.median(done[k]) for k in ("forward_ms", "train_step_ms"))
            print(
                f"  {name} {row['height']}x{row['width']}: forward {fwd:.0f} ms, train step {train:.0f} ms, "
                f"peak memory {done['peak_memory_mib']:.0f} MiB ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run(args) -> dict:
    """The whole bench as ``args`` (:func:`fcnlab.cli.bench.parse_args`) asks; the bench.json record."""
    start, load_start = time.perf_counter(), os.getloadavg()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torchfcn, why = import_torchfcn() if args.peers else (None, "no --peers asked for")
    if args.peers and torchfcn is None:
        print(f"torchfcn {VERSION} does not import ({why}); timing fcnlab alone", flush=True)
    groups = []
    for size in args.sizes:
        for model in args.models:
            group = [new_row(model, g, size, False, args) for g in args.geometries]
            if torchfcn is not None and model in args.peers and group[0]["spec"]["net"]["name"] in PEERS:
                group.insert(0, new_row(model, "faithful", size, True, args))
            groups.append(group)
    precision = groups[0][0]["precision"]
    set_float32_precision(groups[0][0]["spec"]["float32_matmul_precision"])  # the peak's math as the rows'
    peaks = [peak_gflops(args.sizes[0], device, precision)]
    print(f"  peak before the rows: {peaks[0]['gflops']:.0f} GFLOP/s ({peaks[0]['shape']})", flush=True)
    time_rows(groups, args)
    peaks.append(peak_gflops(args.sizes[0], device, precision))
    peak = max(p["gflops"] for p in peaks)
    for group in groups:
        finish(group, peak, args.max_spread)
    rows = [{k: v for k, v in row.items() if k != "spec"} for group in groups for row in group]
    cuda = device.type == "cuda"
    return {
        "rows": rows,
        "peak_gflops": peak,
        "peak": {"shape": peaks[0]["shape"], "runs_gflops": [p["gflops"] for p in peaks]},
        "memory": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss of the run's process",
        "loader": None if args.no_loader else loader_throughput(args.override),
        "torchfcn": {"version": VERSION, "available": torchfcn is not None, "why_not": why or None},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if cuda else "cpu",
            "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        },
        "versions": versions(),
        "git_sha": git_sha(),
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - start,
        "errors": [f"{r['impl']} {r['model']} {r['geometry']}: {e}" for r in rows for e in r["errors"]],
    }


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def summary_lines(result: dict) -> list[str]:
    """What ``make bench`` prints after the progress lines: the machine, the peak, the table, the loader."""
    m, peak, loader = result["machine"], result["peak"], result["loader"]
    lines = [
        "",
        f"{m['cpu_model']}, {m['cores']} cores, {m['torch_threads']} torch threads, device {m['device']}; "
        f"torch {result['versions']['torch']}; git {result['git_sha'][:12]}; 1-min load average "
        f"{m['load_average_1min']['start']:.1f} at start, {m['load_average_1min']['end']:.1f} at end",
        f"peak {result['peak_gflops']:.0f} GFLOP/s ({peak['shape']}; before and after the rows: "
        f"{', '.join(f'{v:.0f}' for v in peak['runs_gflops'])}); peak memory: {result['memory']}",
        f"train loader: {loader['images_per_s']:.0f} images/s ({loader['setup']})" if loader else "",
        "",
        "| impl | model | geometry | size | fwd ms | fwd spread | train ms | train spread | GFLOP | GFLOP/s "
        "| % peak | peak MiB | fwd × torchfcn | train × torchfcn | reliable |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        flag = "yes" if r["reliable"] else "**NO**: " + "; ".join(r["unreliable"])
        lines.append(
            f"| {r['impl']} | {r['model']} | {r['geometry']} | {r['height']}x{r['width']} | "
            f"{r['forward_ms']:.0f} | {_cell(r['forward_spread'], '.0%')} | {r['train_step_ms']:.0f} | "
            f"{_cell(r['train_step_spread'], '.0%')} | {r['gflop']:.1f} | {r['forward_gflops']:.0f} | "
            f"{r['peak_fraction']:.0%} | {r['peak_memory_mib']:.0f} | {_cell(r['forward_ratio'], '.2f')} | "
            f"{_cell(r['train_step_ratio'], '.2f')} | {flag} |"
        )
    return lines
