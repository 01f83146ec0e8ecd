"""``fcnlab-models``: parameters and forward time of every registered model on every backbone.

fcnlab-models --height 375 --width 500 --repeats 3 [--backbones alexnet googlenet] [--models fcn32s]
fcnlab-models --table1 results/table1_nets.json   # Table 1's computed columns (make reproduce-table1)

``--table1`` builds each full-size backbone's FCN-32s (21 classes, faithful geometry, as the Caffe
nets the paper timed) and writes what the built net says: conv layers on its longest path,
parameters, receptive field and stride of its scores (coordinate maps), and its forward time at
500×500 (median of ``--repeats`` after one warm-up) on this machine, whose CPU model it records.
``fcnlab-report --table1`` reads that file; the report itself imports no torch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcnlab.atomic import write_json
from fcnlab.errors import exit_on_user_error
from fcnlab.models import create_model, list_backbones, list_models
from fcnlab.models.backbone import count_weights
from fcnlab.models.geometry import conv_depth
from fcnlab.runinfo import cpu_model

TABLE1_BACKBONES = ("alexnet", "vgg16", "googlenet")  # the paper's Table 1 columns, in its order


def forward_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``repeats`` forwards after one warm-up, under ``inference_mode``."""
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def conv_layers(net: torch.nn.Module) -> int:
    """Convolutions from input to scores on the longest path: the backbone's, then the scoring layer."""
    return conv_depth(net.backbone.features) + conv_depth(net.backbone.fc) + 1


def table1_nets(repeats: int, size: int = 500) -> dict:
    """Table 1's computed columns for each full-size backbone's FCN-32s (see the module docstring)."""
    x = torch.randn(1, 3, size, size)
    rows = {}
    for backbone in TABLE1_BACKBONES:
        net = create_model("fcn32s", backbone=backbone, geometry="faithful", num_classes=21).eval()
        scores = net.backbone.coord_maps[net.backbone.out]
        rows[backbone] = {
            "forward_ms": round(forward_ms(net, x, repeats), 1),
            "conv_layers": conv_layers(net),
            "parameters": count_weights(net),  # GoogLeNet's frozen BatchNorm weights included
            "rf_size": int(scores.rf),
            "max_stride": int(scores.stride),
        }
        print(f"{backbone:<10} " + "  ".join(f"{k} {v}" for k, v in rows[backbone].items()), flush=True)
    return {
        "input": [1, 3, size, size],
        "geometry": "faithful",
        "repeats": repeats,
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "backbones": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=list_backbones(), choices=list_backbones())
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--table1", metavar="JSON", help="write Table 1's computed columns to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least one timed forward is needed")
    torch.set_flush_denormal(True)  # random weights on CPU otherwise crawl on denormal floats
    torch.manual_seed(0)
    if args.table1:
        print(f"Table 1 nets: FCN-32s, faithful, 1x3x500x500, {torch.get_num_threads()} threads")
        with exit_on_user_error():
            write_json(args.table1, table1_nets(args.repeats))
        print(f"wrote {args.table1}")
        return
    x = torch.randn(1, 3, args.height, args.width)
    print(
        f"input 1x3x{args.height}x{args.width}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'model':<14} {'backbone':<15} {'params':>12} {'faithful ms':>12} {'efficient ms':>13}")
    for backbone in args.backbones:
        for name in args.models:
            ms, params = [], 0
            for geometry in ("faithful", "efficient"):
                model = create_model(name, backbone=backbone, geometry=geometry).eval()
                params = count_weights(model)
                ms.append(forward_ms(model, x, args.repeats))
            print(f"{name:<14} {backbone:<15} {params:>12,} {ms[0]:>12.1f} {ms[1]:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
