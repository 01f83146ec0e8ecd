"""VGG16 (Simonyan & Zisserman 2015) in torchvision's layout, full size and tiny, as FCN backbones.

The classifier here has torchvision's module names and indices (``features.N``, ``classifier.0/3/6``)
so torchvision's ImageNet weights load by name. The FCN backbone is that classifier made fully
convolutional by :func:`fcnlab.models.convolutionalize.convolutionalize`. ``vgg16_tiny`` keeps the
topology (13 convs, 5 max-pools, fc6, fc7) with narrower layers, for CPU work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from fcnlab.models.backbone import Backbone, fc_backbone, init_classifier_weights


@dataclass(frozen=True)
class VGGSpec:
    """Widths of a VGG16-topology net and the pool5 size at its classifier's native input."""

    family: ClassVar[str] = "VGG16"
    head: ClassVar[tuple[str, ...]] = ("classifier.6.",)  # fc8, replaced by FCN's scoring layer

    widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    fc_width: int = 4096
    pool5_size: int = 7  # 224 px / 32; fc6 becomes a pool5_size × pool5_size convolution
    dropout: float = 0.5  # after fc6 and fc7, as VGG16 and the FCN paper ("dropout kept")
    # Weights in NHWC (channels_last) too, not only the activations: measured faster for the narrow
    # tiny net on CPU, slower and larger for VGG16 (docs/performance.md).
    nhwc_weights: bool = False

    @property
    def native_input(self) -> int:
        return 32 * self.pool5_size

    def classifier(self, num_classes: int = 1000, batch_norm: bool = False) -> VGGClassifier:
        return VGGClassifier(self, num_classes, batch_norm)

    def fcn_backbone(self, classifier: VGGClassifier, geometry: str) -> Backbone:
        """conv1_1 … fc7, fully convolutional: taps pool3 (stride 8) and pool4 (16), output fc7."""
        return fc_backbone(self, classifier, geometry, {2: "pool3", 3: "pool4"})


def vgg16_spec() -> VGGSpec:
    """torchvision's VGG16 (138M parameters)."""
    return VGGSpec()


def vgg16_tiny_spec(width_divisor: int = 8, pool5_size: int = 3, dropout: float = 0.0) -> VGGSpec:
    """VGG16 with every width divided by ``width_divisor``; classifier input 32 * pool5_size px.

    Dropout defaults to 0: with dropout a narrow fc7 does not learn the generated classification set
    (see the README's notes on the embedded default).
    """
    if width_divisor < 1 or 512 % width_divisor:
        raise ValueError(f"width_divisor must divide 512, got {width_divisor}")
    widths = tuple(w // width_divisor for w in VGGSpec.widths)
    return VGGSpec(
        widths=widths,
        fc_width=4096 // width_divisor,
        pool5_size=pool5_size,
        dropout=dropout,
        nhwc_weights=True,
    )


def vgg_features(spec: VGGSpec, batch_norm: bool = False) -> nn.Sequential:
    """conv1_1 ... pool5: torchvision's VGG16 stack (``vgg16`` or ``vgg16_bn`` layout) at ``spec``'s widths.

    torchvision builds it with padding 1 and floor pooling; :class:`Backbone` sets conv1_1's padding
    and the pooling rounding for its geometry.
    """
    cfg: list[int | str] = []
    block = 0
    for v in vgg_cfgs["D"]:  # VGG16: blocks of 2-2-3-3-3 convs, each closed by a max-pool
        cfg.append(v if v == "M" else spec.widths[block])
        block += v == "M"
    return make_layers(cfg, batch_norm)


class VGGClassifier(nn.Module):
    """A VGG16-topology image classifier with torchvision's attribute names."""

    def __init__(self, spec: VGGSpec, num_classes: int = 1000, batch_norm: bool = False) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        self.features = vgg_features(spec, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.pool5_size)
        flat = spec.widths[-1] * spec.pool5_size**2
        self.classifier = nn.Sequential(
            nn.Linear(flat, spec.fc_width),
            nn.ReLU(True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.fc_width, spec.fc_width),
            nn.ReLU(True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.fc_width, num_classes),
        )
        init_classifier_weights(self, [self.classifier[0], self.classifier[3]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
