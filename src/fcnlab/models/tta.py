"""How a net is run on whole images at test time: multi-scale, flip and sliding-window inference.

One function, :func:`infer_logits`, used by validation inside training, ``fcnlab-eval`` and
``fcnlab-predict`` alike, with :class:`InferSettings` (the ``infer:`` config block, checked by
:func:`infer_settings` before any work).

- ``scales``: the image is resized by each factor (bilinear), run, and its scores resized back to the
  input size. Any size works: a side never drops below 1 pixel, and the FCN returns its input's size.
- ``flip``: every view is also run mirrored left-right, and its scores mirrored back.
- ``mode=slide``: each (scaled) view is cut into ``crop`` × ``crop`` windows ``stride`` apart; the last
  window of a row or column is shifted inside the image (never padded), and scores are averaged where
  windows overlap. A window larger than the image is the image itself. Activations are bounded by
  ``batch`` windows whatever the image size; the score sums are num_classes × H × W float32 (plus one at
  the scaled size while a scale runs): the output's size, unavoidable.
- ``batch``: how many windows or mirrored copies of one size go through the net per forward.

Averaged are **softmax probabilities**, not logits: views at different scales give logits of
different magnitude (a net is more confident at the scale it was trained at), so averaging logits
lets the sharpest view outvote the others, whereas each view's probabilities count equally per pixel
and are bounded. The result is returned as the log of the mean probability, so ``argmax`` is that of
the mean probability and cross-entropy on it is the ensemble's negative log-likelihood (validation's
``val/loss``). When one forward pass covers the image (a single scale of 1, no flip, one window) the
net's logits are returned as they are, so ``scales=[1.0] flip=false`` (and a window at least the
image's size) give exactly whole-image inference, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.errors import FCNLabError

MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferSettings:
    """The ``infer:`` block: mode (whole | slide), scales, flip, crop, stride and windows per forward."""

    mode: str = "whole"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop: int = 512
    stride: int = 341
    batch: int = 1

    def as_dict(self) -> dict:
        return {**asdict(self), "scales": list(self.scales), "label": self.label}

    @property
    def label(self) -> str:
        """The setting's short name: ``single-scale``, ``flip``, ``ms``, ``ms+flip``, ``slide+ms+flip`` …"""
        parts = ["slide"] if self.mode == "slide" else []
        parts += ["ms"] if self.scales != (1.0,) else []
        parts += ["flip"] if self.flip else []
        return "+".join(parts) or "single-scale"

    @property
    def is_single_pass(self) -> bool:
        return self.scales == (1.0,) and not self.flip


SINGLE_SCALE = InferSettings()


def _whole_number(key: str, value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FCNLabError(f"{key}={value}: must be a whole number >= 1 ({what})")
    return value


def infer_settings(node: Mapping | None, key: str = "infer") -> InferSettings:
    """The checked settings of an ``infer:`` config block (None: single-scale whole-image inference).

    Every bad value is one line naming the option, raised before any model or data is touched.
    """
    if node is None:
        return SINGLE_SCALE
    get = node.get
    mode = str(get("mode", "whole")).lower()
    if mode not in MODES:
        raise FCNLabError(f"{key}.mode={get('mode')}: unknown; use whole or slide")
    raw_scales = get("scales", [1.0])
    if isinstance(raw_scales, int | float | str) or raw_scales is None:
        raw_scales = [raw_scales]
    scales = list(raw_scales)
    shown = "[" + ",".join(str(s) for s in scales) + "]"
    if not scales:
        raise FCNLabError(f"{key}.scales=[]: give at least one scale, e.g. [1.0]")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s <= 0:
            raise FCNLabError(f"{key}.scales={shown}: every scale must be a number > 0, e.g. [0.5,1.0,1.5]")
    flip = get("flip", False)
    if not isinstance(flip, bool):
        raise FCNLabError(f"{key}.flip={flip}: must be true or false")
    crop = _whole_number(f"{key}.crop", get("crop", 512), "the window side in pixels")
    stride = _whole_number(f"{key}.stride", get("stride", 341), "pixels between windows")
    if stride > crop:
        raise FCNLabError(
            f"{key}.stride={stride} is larger than {key}.crop={crop}: windows would leave pixels out; "
            "use a stride <= crop"
        )
    batch = _whole_number(f"{key}.batch", get("batch", 1), "windows per forward pass")
    return InferSettings(mode, tuple(float(s) for s in scales), flip, crop, stride, batch)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of side ``min(crop, length)`` covering ``0..length``; the last one is
    shifted inside (ends at ``length``), so no window reaches past the image."""
    if length <= crop:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def _windows(h: int, w: int, settings: InferSettings) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of every window of an ``h`` × ``w`` view."""
    if settings.mode == "whole":
        return [(0, 0, h, w)]
    ch, cw = min(settings.crop, h), min(settings.crop, w)
    return [
        (top, left, ch, cw)
        for top in window_starts(h, settings.crop, settings.stride)
        for left in window_starts(w, settings.crop, settings.stride)
    ]


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


def _view_probabilities(net: nn.Module, view: torch.Tensor, settings: InferSettings) -> torch.Tensor:
    """Sum of softmax probabilities over windows (and mirrored copies) of one scaled view, divided by
    how many covered each pixel: (N, C, h, w) float32."""
    n, _, h, w = view.shape
    copies = 2 if settings.flip else 1
    windows = _windows(h, w, settings)
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, h, w), dtype=torch.float32, device=view.device)
    jobs = [(win, mirrored) for win in windows for mirrored in range(copies)]
    for chunk in _chunks(jobs, settings.batch):
        pieces = []
        for (top, left, ch, cw), mirrored in chunk:
            piece = view[..., top : top + ch, left : left + cw]
            pieces.append(piece.flip(-1) if mirrored else piece)
        logits = net(torch.cat(pieces) if len(pieces) > 1 else pieces[0])
        probs = logits.float().softmax(1)
        if total is None:
            total = torch.zeros((n, probs.shape[1], h, w), dtype=torch.float32, device=view.device)
        for i, ((top, left, ch, cw), mirrored) in enumerate(chunk):
            p = probs[i * n : (i + 1) * n]
            total[..., top : top + ch, left : left + cw] += p.flip(-1) if mirrored else p
            count[..., top : top + ch, left : left + cw] += 1
        del logits, probs
    assert total is not None
    return total.div_(count)


def infer_logits(
    net: nn.Module, images: torch.Tensor, settings: InferSettings = SINGLE_SCALE
) -> torch.Tensor:
    """Scores (N, C, H, W) of ``net`` on ``images`` (N, 3, H, W), already in the net's input space.

    A single forward pass over the image: the net's logits, untouched. Otherwise: the log of the mean
    softmax probability over scales, mirrored copies and overlapping windows (see the module doc).
    Runs under whatever grad mode the caller set; call it inside ``torch.inference_mode()``.
    """
    h, w = images.shape[-2:]
    if settings.is_single_pass and len(_windows(h, w, settings)) == 1:
        return net(images)
    total: torch.Tensor | None = None
    for scale in settings.scales:
        size = _scaled_size(h, w, scale)
        view = images if size == (h, w) else F.interpolate(images, size, mode="bilinear", align_corners=False)
        probs = _view_probabilities(net, view, settings)
        del view
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs, (h, w), mode="bilinear", align_corners=False)
        if total is None:
            total = probs
        else:
            total += probs
        del probs
    assert total is not None
    return total.div_(len(settings.scales)).clamp_min_(torch.finfo(torch.float32).tiny).log_()


def graph_note() -> dict:
    """What an exported single-scale graph computes and leaves to its caller (an ONNX sidecar's
    ``inference``)."""
    return {
        "graph": "single-scale: one pass over the whole input at its own size",
        "output": "logits (not probabilities); argmax over classes gives the labels",
        "test_time_augmentation": (
            "none inside the graph; multi-scale, flip and sliding windows run around the net "
            "(fcnlab.models.tta.infer_logits; fcnlab-predict infer=msflip on a checkpoint)"
        ),
    }
