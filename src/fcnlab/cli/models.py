"""``fcnlab-models``: parameters and forward time of every registered model.

fcnlab-models --height 375 --width 500 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcnlab.models import create_model, list_models


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "vgg16_tiny"])
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)  # random weights on CPU otherwise crawl on denormal floats
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.height, args.width)
    print(
        f"input 1x3x{args.height}x{args.width}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'model':<14} {'backbone':<11} {'params':>12} {'faithful ms':>12} {'efficient ms':>13}")
    for backbone in args.backbones:
        for name in list_models():
            ms, params = [], 0
            for geometry in ("faithful", "efficient"):
                model = create_model(name, backbone=backbone, geometry=geometry).eval()
                params = sum(p.numel() for p in model.parameters())
                ms.append(forward_ms(model, x, args.repeats))
            print(f"{name:<14} {backbone:<11} {params:>12,} {ms[0]:>12.1f} {ms[1]:>13.1f}")


if __name__ == "__main__":
    main()
