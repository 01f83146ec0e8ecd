"""``python -m fcnlab.bench.child '<json spec>'``: one bench row measured in a fresh process.

A fresh process per model keeps the peak RSS of its training step its own (ru_maxrss never goes
down, so measuring several models in one process would report the largest so far). The row is
printed as one JSON line, the last line of stdout.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.bench.measure import (
    count_flops,
    current_rss_mib,
    max_rss_mib,
    median,
    sgd,
    time_calls,
    train_step_fn,
)


def build(spec: dict) -> nn.Module:
    """The model a spec names: fcnlab's ``create_model`` or torchfcn's class, random weights."""
    if spec["impl"] == "torchfcn":
        from fcnlab.bench.peers import build_peer, import_torchfcn

        torchfcn, why = import_torchfcn()
        if torchfcn is None:
            raise RuntimeError(f"torchfcn does not import: {why}")
        return build_peer(torchfcn, spec["model"])
    from fcnlab.models import create_model

    return create_model(spec["model"], backbone=spec["backbone"], geometry=spec["geometry"], pretrained=None)


def measure(spec: dict) -> dict:
    """Forward and training-step times, FLOPs and peak RSS of one model at one input size."""
    torch.set_flush_denormal(True)  # random weights: denormal floats would otherwise crawl on CPU
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec.get("device", "cpu"))
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input size: let cuDNN pick
    bf16 = bool(spec.get("bf16"))
    model = build(spec).to(device)
    fmt = torch.channels_last if spec.get("channels_last") or bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(1, 3, spec["height"], spec["width"], device=device).contiguous(memory_format=fmt)
    target = torch.randint(0, 21, (1, spec["height"], spec["width"]), device=device)
    rss_model = current_rss_mib()
    run = torch.compile(model) if spec.get("compile") else model

    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            run(x)

    model.eval()
    with torch.inference_mode():
        fwd = time_calls(forward, spec["forward_reps"], device)
    model.train()
    train = time_calls(train_step_fn(run, sgd(model), x, target, bf16), spec["train_reps"], device)
    peak_rss = max_rss_mib()  # before the FLOP counter's imports add to it
    flops, train_flops = count_model_flops(model, x, target)
    row = {
        **{k: spec[k] for k in ("impl", "model", "geometry", "backbone", "height", "width")},
        "params": sum(p.numel() for p in model.parameters()),
        "forward_ms": median(fwd),
        "forward_min_ms": min(fwd),
        "train_step_ms": median(train),
        "train_step_min_ms": min(train),
        "forward_reps": len(fwd),
        "train_reps": len(train),
        "gflop": flops / 1e9,
        "train_gflop": train_flops / 1e9,
        "rss_model_mib": rss_model,
        "peak_rss_mib": peak_rss,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def count_model_flops(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """FLOPs of a forward and of a training step, counted on a meta-device copy (no compute, no memory)."""
    meta = model.to("meta")  # the timings are done: the real weights are no longer needed
    x, target = x.to("meta"), target.to("meta")
    meta.eval()
    with torch.inference_mode():
        forward = count_flops(lambda: meta(x))
    meta.train()
    return forward, count_flops(lambda: F.cross_entropy(meta(x), target).backward())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(measure(json.loads(args[0]))))


if __name__ == "__main__":
    main()
