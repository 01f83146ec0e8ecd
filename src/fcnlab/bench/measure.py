"""Timing, FLOP counting, memory and the machine's measured peak: the primitives every bench row uses."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall times cover it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], reps: int, device: torch.device, warmup: int = 1) -> list[float]:
    """Wall times in ms of ``reps`` calls of ``fn`` after ``warmup`` untimed ones.

    Not ``torch.utils.benchmark.Timer``: its ``timeit(n)`` returns one mean of n calls (the bench reports
    per-call medians), runs at least 2 untimed calls before each measurement (tripling a VGG16 training
    step row's cost when timing calls one by one), defaults to 1 thread, and importing it logs a CUDA_HOME
    warning on a CPU-only machine with a CUDA build of torch.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return times


def median(values: list[float]) -> float:
    """The median; the statistic every ``*_ms`` field reports."""
    return float(statistics.median(values))


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (a multiply-add counts 2) of the convolutions and matmuls ``fn`` runs, by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode  # late: it grows the RSS

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def conv_flops(cin: int, cout: int, k: int, h: int, w: int, groups: int = 1) -> int:
    """Analytic FLOPs of a k×k convolution with an h×w output: 2·(Cin/groups)·Cout·k²·H·W."""
    return 2 * (cin // groups) * cout * k * k * h * w


def max_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    """The paper's optimiser (momentum 0.9, weight decay 5e-4); a tiny lr keeps random weights sane."""
    return torch.optim.SGD(model.parameters(), lr=1e-10, momentum=0.9, weight_decay=5e-4)


def current_rss_mib() -> float:
    """This process's resident set size now, MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return max_rss_mib()
    return pages * resource.getpagesize() / 2**20


def train_step_fn(
    net: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    target: torch.Tensor,
    autocast: bool = False,
) -> Callable[[], None]:
    """One training step (forward, per-pixel cross-entropy, backward, optimizer step) as a closure."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(net(x), target)
        loss.backward()
        optimizer.step()

    return step


def peak_gflops(device: torch.device, reps: int, quick: bool = False, bf16: bool = False) -> dict:
    """This machine's measured peak: a large 3×3 convolution and a large square matmul, GFLOP/s.

    The conv is VGG's conv4 shape (512→512 channels, 64×64 map), the reference ``peak_fraction`` is
    taken against; the matmul is 2048³. Both report the median of ``reps`` after a warm-up, and the
    conv's FLOPs come from the same counter as the models', checked against the analytic count.
    """
    c, s, n = (128, 32, 1024) if quick else (512, 64, 2048)
    dtype = torch.bfloat16 if bf16 else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, s, s, generator=gen).to(device, dtype)
    w = (torch.randn(c, c, 3, 3, generator=gen) * 0.01).to(device, dtype)
    a, b = (torch.randn(n, n, generator=gen).to(device, dtype) for _ in range(2))
    with torch.inference_mode():
        counted = count_flops(lambda: F.conv2d(x, w, padding=1))
        conv_ms = median(time_calls(lambda: F.conv2d(x, w, padding=1), reps, device))
        mm_ms = median(time_calls(lambda: a @ b, reps, device))
    analytic = conv_flops(c, c, 3, s, s)
    return {
        "peak_gflops": analytic / conv_ms / 1e6,
        "peak_conv3x3_gflops": analytic / conv_ms / 1e6,
        "peak_matmul_gflops": 2 * n**3 / mm_ms / 1e6,
        "peak_conv3x3_shape": f"1x{c}x{s}x{s}, {c}->{c}, 3x3, pad 1",
        "peak_matmul_shape": f"{n}x{n} @ {n}x{n}",
        "flop_counter_check": {"conv": f"{c}->{c} 3x3 on {s}x{s}", "counted": counted, "analytic": analytic},
    }
