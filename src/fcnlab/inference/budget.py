"""What test-time inference on one image will cost, known before it runs: forward passes and memory.

``fcnlab-predict`` uses it to say so before long work (more than :data:`MANY_WINDOWS` windows:
a line, then progress) and to refuse, in one line with the estimate, an image whose
inference cannot fit in the memory this machine has free; an allocation that fails anyway becomes
one line naming ``infer.scales`` / ``infer.crop`` (:func:`out_of_memory_line`).

The memory figure is a lower bound, so nothing that fits is refused: the input view, the class-score
sums (num_classes x H x W float32, at the input size and at the view's), and the net's first two
full-resolution activations (its first convolution's channels over the padded window, twice), per
window batch. The net's other layers, on smaller maps, add to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import torch
from torch import nn

from fcnlab.models.tta import InferSettings, window_starts

MANY_WINDOWS = 10_000  # beyond this many windows for one image, fcnlab-predict says so first
PROGRESS_EVERY_S = 10.0  # then a progress line this often
_FLOAT = 4


def _scaled(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))  # as infer_logits scales a view


def window_count(h: int, w: int, settings: InferSettings) -> int:
    """Windows the net runs on for an ``h`` x ``w`` image: windows x mirrored copies, over the scales
    (``settings.batch`` of them share a forward pass)."""
    total = 0
    for scale in settings.scales:
        sh, sw = _scaled(h, w, scale)
        windows = 1
        if settings.mode == "slide":
            windows = len(window_starts(sh, settings.crop, settings.stride))
            windows *= len(window_starts(sw, settings.crop, settings.stride))
        total += windows * (2 if settings.flip else 1)
    return total


def _first_conv(net: nn.Module) -> tuple[int, int]:
    """(channels, padding) of the net's first convolution (the largest activations are its outputs)."""
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return 3, 0
    pad = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    return conv.out_channels, int(max(pad))


def memory_bytes(h: int, w: int, settings: InferSettings, net: nn.Module, num_classes: int) -> int:
    """A lower bound of the peak memory of inference on an ``h`` x ``w`` image (see the module doc)."""
    channels, pad = _first_conv(net)
    peak = 0
    for scale in settings.scales:
        sh, sw = _scaled(h, w, scale)
        copies = 2 if settings.flip else 1
        if settings.mode == "slide":
            wh, ww = min(settings.crop, sh), min(settings.crop, sw)
            windows = len(window_starts(sh, settings.crop, settings.stride))
            windows *= len(window_starts(sw, settings.crop, settings.stride))
        else:
            wh, ww, windows = sh, sw, 1
        per_pass = min(settings.batch, windows * copies)
        net_bytes = 2 * channels * (wh + 2 * pad) * (ww + 2 * pad) * _FLOAT * per_pass
        sums = num_classes * (h * w + (sh * sw if (sh, sw) != (h, w) else 0)) * _FLOAT
        peak = max(peak, 3 * sh * sw * _FLOAT + sums + net_bytes)
    return peak


def free_memory(device: torch.device) -> int | None:
    """Bytes this process could still get on ``device`` (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def describe(settings: InferSettings) -> str:
    """The options that size the work, as the user would type them."""
    scales = "[" + ",".join(f"{s:g}" for s in settings.scales) + "]"
    text = f"infer.scales={scales}"
    if settings.mode == "slide":
        text += f" infer.crop={settings.crop} infer.stride={settings.stride}"
    return text + (" infer.flip=true" if settings.flip else "")


def too_big_line(path: object, h: int, w: int, need: int, free: int, settings: InferSettings) -> str:
    return (
        f"{path}: {describe(settings)} on {w}x{h} needs at least {gib(need)}, more than the {gib(free)} free "
        "here; lower infer.scales, or use infer=slide (infer.crop bounds the net's memory), or downscale "
        "the image"
    )


def out_of_memory_line(path: object, h: int, w: int, device: torch.device, settings: InferSettings) -> str:
    return (
        f"{path}: out of memory at {w}x{h} on {device} ({describe(settings)}); lower infer.scales or "
        "infer.crop (infer=slide), lower max_pixels, downscale the image or use another device"
    )


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation failure, as torch raises it on CPU (RuntimeError) or GPU (OutOfMemoryError)."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and bool(
        re.search(r"can't allocate memory|out of memory|not enough memory", str(error), re.IGNORECASE)
    )


class CountedNet(nn.Module):
    """The net, counting the windows it runs on and calling ``say(line)`` about every
    :data:`PROGRESS_EVERY_S` seconds with the progress through ``total`` windows (one image at a time)."""

    def __init__(self, net: nn.Module, total: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self.net, self.total, self.say = net, total, say
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        self.done += x.shape[0]
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            left = (now - self.start) / self.done * (self.total - self.done)
            self.say(
                f"{self.done:,}/{self.total:,} windows ({100 * self.done / self.total:.0f} %), "
                f"about {left / 60:.1f} min left"
            )
        return out
