"""AlexNet (Krizhevsky et al. 2012) in torchvision's layout, full size and tiny, as FCN backbones.

torchvision's AlexNet is the single-tower variant ("one weird trick", 64-192-384-256-256 convs, no
grouping, no LRN): ``features.N`` and ``classifier.1/4/6`` with a Dropout first, so its ImageNet
weights (``alexnet-owt-7be5be79.pth``) load by name. The FCN backbone is that classifier made fully
convolutional, as the reference release's FCN-AlexNet (``voc-fcn-alexnet``): conv1 11×11 stride 4
padded by 100 in the faithful geometry, 3×3 stride-2 pools with ceil rounding, fc6 a 6×6
convolution. ``alexnet_tiny`` keeps the topology with narrower layers, for CPU work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fcnlab.models.backbone import Backbone, fc_backbone, init_classifier_weights


@dataclass(frozen=True)
class AlexNetSpec:
    """Widths of an AlexNet-topology net and the pool5 size at its classifier's native input."""

    family: ClassVar[str] = "AlexNet"
    head: ClassVar[tuple[str, ...]] = ("classifier.6.",)  # fc8, replaced by FCN's scoring layer

    widths: tuple[int, int, int, int, int] = (64, 192, 384, 256, 256)  # conv1 … conv5
    fc_width: int = 4096
    pool5_size: int = 6  # at 224 px; fc6 becomes a pool5_size × pool5_size convolution
    dropout: float = 0.5  # before fc6 and fc7, as torchvision's (Caffe's after relu6 / relu7)
    nhwc_weights: bool = False

    @property
    def native_input(self) -> int:
        # conv1 (11, stride 4, pad 2) and three floor 3×3 stride-2 pools: 32·(p + 1) px -> p × p at pool5
        return 32 * (self.pool5_size + 1)

    def classifier(self, num_classes: int = 1000, batch_norm: bool = False) -> AlexNetClassifier:
        return AlexNetClassifier(self, num_classes, batch_norm)

    def fcn_backbone(self, classifier: AlexNetClassifier, geometry: str) -> Backbone:
        """conv1 … fc7, fully convolutional: taps pool1 (stride 8) and pool2 (16), output fc7."""
        return fc_backbone(self, classifier, geometry, {0: "pool1", 1: "pool2"})


def alexnet_spec() -> AlexNetSpec:
    """torchvision's AlexNet (61M parameters; 57M without fc8)."""
    return AlexNetSpec()


def alexnet_tiny_spec(width_divisor: int = 8, pool5_size: int = 2, dropout: float = 0.0) -> AlexNetSpec:
    """AlexNet with every width divided by ``width_divisor``; classifier input 32 * (pool5_size + 1) px.

    pool5_size 2: the generated classification set's 96 px images. Dropout 0, as ``vgg16_tiny``.
    """
    if width_divisor < 1 or any(w % width_divisor for w in (*AlexNetSpec.widths, AlexNetSpec.fc_width)):
        raise ValueError(f"width_divisor must divide 64, 192, 384, 256 and 4096, got {width_divisor}")
    return AlexNetSpec(
        widths=tuple(w // width_divisor for w in AlexNetSpec.widths),
        fc_width=AlexNetSpec.fc_width // width_divisor,
        pool5_size=pool5_size,
        dropout=dropout,
    )


def alexnet_features(spec: AlexNetSpec, batch_norm: bool = False) -> nn.Sequential:
    """conv1 … pool5 in torchvision's layout (kernels 11-5-3-3-3, pools after conv1, conv2, conv5);
    ``batch_norm`` adds a BatchNorm after every conv (for pretraining, folded away afterwards)."""
    c1, c2, c3, c4, c5 = spec.widths
    convs = [
        nn.Conv2d(3, c1, 11, stride=4, padding=2),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.Conv2d(c2, c3, 3, padding=1),
        nn.Conv2d(c3, c4, 3, padding=1),
        nn.Conv2d(c4, c5, 3, padding=1),
    ]
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        layers += [conv, *([nn.BatchNorm2d(conv.out_channels)] if batch_norm else []), nn.ReLU(inplace=True)]
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(3, stride=2))
    return nn.Sequential(*layers)


class AlexNetClassifier(nn.Module):
    """An AlexNet-topology image classifier with torchvision's attribute names."""

    def __init__(self, spec: AlexNetSpec, num_classes: int = 1000, batch_norm: bool = False) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        self.features = alexnet_features(spec, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.pool5_size)
        flat = spec.widths[-1] * spec.pool5_size**2
        self.classifier = nn.Sequential(
            nn.Dropout(spec.dropout),
            nn.Linear(flat, spec.fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.fc_width, spec.fc_width),
            nn.ReLU(inplace=True),
            nn.Linear(spec.fc_width, num_classes),
        )
        init_classifier_weights(self, [self.classifier[1], self.classifier[4]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
