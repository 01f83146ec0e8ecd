"""GoogLeNet (Szegedy et al. 2015) in torchvision's layout, full size and tiny, as FCN backbones.

The blocks are torchvision's own (``BasicConv2d``: conv + BatchNorm + ReLU; ``Inception``), under
torchvision's attribute names (``conv1`` … ``inception5b``, ``fc``), so its ImageNet weights
(``googlenet-1378be20.pth``) load by name; the auxiliary classifiers in that file are left out, as
the paper's FCN-GoogLeNet uses "only the final loss layer". Those weights expect their own input
(torchvision's ``transform_input``: RGB / 255 mapped to [-1, 1]), the ``googlenet`` input space
(:mod:`fcnlab.data.input_space`). Like torchvision's, the "5×5" branch is a 3×3 convolution and
pool4 is 2×2, so the receptive field is smaller than the paper's GoogLeNet's.

The FCN backbone is conv1 … inception5b: the paper discards the final average pooling, and the
classifier (``fc``) is the head FCN replaces, so nothing is convolutionalized but the Dropout before it.
``googlenet_tiny`` keeps the topology with narrower layers, for CPU work.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torchvision.models.googlenet import BasicConv2d, Inception

from fcnlab.models.backbone import Backbone, init_classifier_weights
from fcnlab.models.convolutionalize import convolutionalize

STEM = (64, 64, 192)  # conv1 7×7/2, conv2 1×1, conv3 3×3
# Each block's #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (GoogLeNet paper, Table 1).
INCEPTION = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {"inception4a": "maxpool3", "inception5a": "maxpool4"}  # the stride-2 pools between stages


@dataclass(frozen=True)
class GoogLeNetSpec:
    """The width divisor of a GoogLeNet-topology net, its classifier's dropout and native input."""

    family: ClassVar[str] = "GoogLeNet"
    # The head FCN replaces, and the auxiliary classifiers torchvision's file also holds.
    head: ClassVar[tuple[str, ...]] = ("fc.", "aux1.", "aux2.")

    width_divisor: int = 1
    dropout: float = 0.2  # before fc, as torchvision's
    native_input: int = 224
    nhwc_weights: bool = False

    def width(self, w: int) -> int:
        return w // self.width_divisor

    @property
    def out_channels(self) -> int:
        _, _, c3, _, c5, pool = INCEPTION["inception5b"]
        return self.width(INCEPTION["inception5b"][0]) + self.width(c3) + self.width(c5) + self.width(pool)

    def classifier(self, num_classes: int = 1000, batch_norm: bool = False) -> GoogLeNetClassifier:
        """``batch_norm`` changes nothing: every conv of GoogLeNet already has its BatchNorm."""
        return GoogLeNetClassifier(self, num_classes)

    def fcn_backbone(self, classifier: GoogLeNetClassifier, geometry: str) -> Backbone:
        """conv1 … inception5b, fully convolutional: taps inception3b (stride 8) and 4e (16)."""
        names = [n for n, _ in classifier.named_children()]
        features = nn.Sequential(
            OrderedDict((n, getattr(classifier, n)) for n in names[: names.index("inception5b") + 1])
        )
        head = nn.Sequential(classifier.dropout, classifier.fc)
        fc = convolutionalize(head, self.out_channels, 1)  # the Dropout; fc is the head FCN replaces
        taps = {"inception3b": "inception3b", "inception4e": "inception4e"}
        return Backbone(self, features, fc, geometry, taps, out="inception5b")


def googlenet_spec() -> GoogLeNetSpec:
    """torchvision's GoogLeNet (6.6M parameters; 5.6M without fc)."""
    return GoogLeNetSpec()


def googlenet_tiny_spec(width_divisor: int = 8, dropout: float = 0.0) -> GoogLeNetSpec:
    """GoogLeNet with every width divided by ``width_divisor``, for 96 px inputs; dropout 0, as vgg16_tiny."""
    widths = {*STEM, *(w for block in INCEPTION.values() for w in block)}
    if width_divisor < 1 or any(w % width_divisor for w in widths):
        raise ValueError(f"width_divisor must divide every GoogLeNet width (8 does), got {width_divisor}")
    return GoogLeNetSpec(width_divisor=width_divisor, dropout=dropout, native_input=96)


class GoogLeNetClassifier(nn.Module):
    """A GoogLeNet-topology image classifier with torchvision's attribute names (no auxiliary heads,
    no ``transform_input``: that is the input space's job)."""

    def __init__(self, spec: GoogLeNetSpec, num_classes: int = 1000) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        c1, c2, c3 = (spec.width(w) for w in STEM)
        self.conv1 = BasicConv2d(3, c1, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(c1, c2, kernel_size=1)
        self.conv3 = BasicConv2d(c2, c3, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = c3
        for name, widths in INCEPTION.items():
            if name in POOL_BEFORE:
                k = 3 if name == "inception4a" else 2
                setattr(self, POOL_BEFORE[name], nn.MaxPool2d(k, stride=2, ceil_mode=True))
            w = [spec.width(v) for v in widths]
            setattr(self, name, Inception(channels, *w))
            channels = w[0] + w[2] + w[4] + w[5]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_classifier_weights(self, [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.named_children():
            if name == "fc":
                x = torch.flatten(x, 1)
            x = layer(x)
        return x
