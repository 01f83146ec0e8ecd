"""This machine's convolution peak, probed on the layer shapes the benchmarked nets actually run.

:func:`net_conv_shapes` runs each measured net once on the meta device (no compute, no memory) and
records every ``Conv2d`` it calls with its input size; :func:`probe` times each distinct shape alone,
in NCHW and in channels-last (fcnlab's CPU backbone runs channels-last), and keeps the best GFLOP/s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.bench.measure import median, time_calls


def net_conv_shapes(specs: list[dict]) -> list[tuple]:
    """Every distinct conv the specs' nets run: (cin, cout, kh, kw, stride, pad, dilation, groups, h, w)."""
    from fcnlab.models import create_model

    shapes: set[tuple] = set()
    seen: set[tuple] = set()
    for spec in specs:
        key = (spec["model"], spec["backbone"], spec["geometry"], spec["height"], spec["width"])
        if spec["impl"] != "fcnlab" or key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):
            net = create_model(
                spec["model"], backbone=spec["backbone"], geometry=spec["geometry"], pretrained=None
            )
        hooks = []

        def record(module: nn.Conv2d, args: tuple) -> None:
            h, w = args[0].shape[-2:]
            shapes.add(
                (
                    module.in_channels,
                    module.out_channels,
                    *module.kernel_size,
                    module.stride[0],
                    module.padding[0],
                    module.dilation[0],
                    module.groups,
                    int(h),
                    int(w),
                )
            )

        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                hooks.append(m.register_forward_pre_hook(record))
        with torch.inference_mode():
            net.eval()(torch.empty(1, 3, spec["height"], spec["width"], device="meta"))
        for hook in hooks:
            hook.remove()
    return sorted(shapes, key=lambda s: -conv_shape_flops(s))


def conv_shape_flops(shape: tuple) -> int:
    cin, cout, kh, kw, stride, pad, dil, groups, h, w = shape
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    return 2 * (cin // groups) * cout * kh * kw * max(oh, 0) * max(ow, 0)


def describe(shape: tuple) -> str:
    cin, cout, kh, kw, stride, pad, _, _, h, w = shape
    return f"1x{cin}x{h}x{w}, {cin}->{cout}, {kh}x{kw}, stride {stride}, pad {pad}"


def probe(shapes: list[tuple], device: torch.device, reps: int, bf16: bool = False) -> dict:
    """GFLOP/s of each shape (best of NCHW / channels-last, median of ``reps``) and the best of all."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    gen = torch.Generator().manual_seed(0)
    results = []
    for shape in shapes:
        cin, cout, kh, kw, _, _, _, groups, h, w = shape
        flops = conv_shape_flops(shape)
        if flops == 0:
            continue
        x = torch.randn(1, cin, h, w, generator=gen).to(device, dtype)
        weight = (torch.randn(cout, cin // groups, kh, kw, generator=gen) * 0.01).to(device, dtype)
        best = {}
        for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            xi, wi = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
            with torch.inference_mode():
                ms = median(
                    time_calls(
                        lambda xi=xi, wi=wi, c=shape: F.conv2d(xi, wi, None, c[4], c[5], c[6], c[7]),
                        reps,
                        device,
                    )
                )
            best[layout] = flops / ms / 1e6
        layout = max(best, key=best.get)
        results.append(
            {"shape": describe(shape), "gflop": flops / 1e9, "gflops": best[layout], "layout": layout}
        )
    top = max(results, key=lambda r: r["gflops"])
    return {
        "peak_probe_gflops": top["gflops"],
        "peak_probe_shape": f"{top['shape']} ({top['layout']})",
        "probe": results,
    }
