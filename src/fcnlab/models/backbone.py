"""The fully convolutional backbone every family becomes, and what the families share.

A family (``vgg.py``, ``alexnet.py``, ``googlenet.py``) builds an image classifier in torchvision's
module layout, so torchvision's ImageNet weights load by name, and then hands its convolutional
layers (``features``) and its fully connected layers made convolutions (``fc``) to :class:`Backbone`.
The backbone walks those real layers for each output's coordinate map and channels, and returns the
final map plus the taps FCN-16s / FCN-8s fuse, found by their stride.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import FrozenBatchNorm2d

from fcnlab.models.convolutionalize import convolutionalize
from fcnlab.models.geometry import CoordMap, out_channels, set_geometry, walk


class Backbone(nn.Module):
    """A classifier's conv layers + its fc layers as convs, returning ``{tap: map, ..., out: map}``.

    ``taps`` names the children of ``features`` whose outputs FCN-16s / FCN-8s fuse (child name ->
    layer name, e.g. ``{"23": "pool4"}``); ``out`` names the final map, ``fc``'s output. Their
    coordinate maps (``coord_maps``: stride, offset, receptive field) and ``channels`` are walked
    from the layers as built, after :func:`fcnlab.models.geometry.set_geometry` set the paddings.
    ``skip_layers`` maps a stride (8, 16) to its tap. BatchNorms (GoogLeNet's) become torchvision's
    ``FrozenBatchNorm2d``, running statistics and affine weights alike, in training too: an FCN
    fine-tune's batches (one image, or twenty accumulated) are too few for new statistics.
    """

    def __init__(
        self,
        spec: object,
        features: nn.Sequential,
        fc: nn.Sequential,
        geometry: str,
        taps: dict[str, str],
        out: str,
    ) -> None:
        super().__init__()
        set_geometry(features, geometry)
        freeze_batchnorm(features)
        self.spec, self.geometry, self.out = spec, geometry, out
        self.features, self.fc = features, fc
        self._taps = taps
        self.coord_maps: dict[str, CoordMap] = {}
        self.channels: dict[str, int] = {}
        m, channels = CoordMap(), 3
        for name, layer in features.named_children():
            m, channels = walk(layer, m), out_channels(layer) or channels
            if name in taps:
                self.coord_maps[taps[name]], self.channels[taps[name]] = m, channels
        self.coord_maps[out], self.channels[out] = walk(fc, m), out_channels(fc) or channels
        if missing := set(taps.values()) - set(self.coord_maps):
            raise ValueError(f"taps {sorted(missing)} are not children of features")
        self.skip_layers = {int(self.coord_maps[t].stride): t for t in taps.values()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        eager = not (torch.compiler.is_compiling() or torch.jit.is_tracing())
        if eager and x.device.type == "cpu" and x.dim() == 4:
            # oneDNN runs NHWC convs without reordering every layer's input and output: faster
            # forward and training steps on CPU (figures in docs/performance.md).
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in self._taps:
                out[self._taps[name]] = x
        out[self.out] = self.fc(x)
        return out


def fc_backbone(spec, classifier: nn.Module, geometry: str, taps: dict[int, str]) -> Backbone:
    """A plain conv stack and its fc layers, convolutionalized: AlexNet's and VGG's FCN backbone.

    ``taps`` names max pools by their order (0: the first). faithful: fc6 unpadded, as the
    classifier; efficient: padded by half its kernel, so the output keeps at least the pool5 map's
    size (one more column for an even kernel, such as AlexNet's 6×6).
    """
    k = spec.pool5_size
    padding = 0 if geometry == "faithful" else k // 2
    fc = convolutionalize(classifier.classifier, spec.widths[-1], k, padding=padding)
    pools = [str(i) for i, m in enumerate(classifier.features) if isinstance(m, nn.MaxPool2d)]
    taps_by_index = {pools[i]: name for i, name in taps.items()}
    return Backbone(spec, classifier.features, fc, geometry, taps_by_index, out="fc7")


@torch.no_grad()
def freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` below ``module`` by a ``FrozenBatchNorm2d`` holding its numbers."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)


def count_weights(module: nn.Module) -> int:
    """Weights as torchvision counts a classifier's: the parameters and frozen BatchNorms' affine weights."""
    frozen = [m for m in module.modules() if isinstance(m, FrozenBatchNorm2d)]
    return sum(p.numel() for p in module.parameters()) + sum(2 * m.weight.numel() for m in frozen)


def init_classifier_weights(model: nn.Module, hidden: list[nn.Linear]) -> None:
    """He init for convs, ones/zeros for BatchNorms, N(0, 0.01) for Linear layers, He (fan in) for ``hidden``.

    torchvision's N(0, 0.01) suits fc6's 25,088 inputs (He's std would be 0.009); a narrow net needs
    He's std for its hidden fc layers, or the signal fades and training stalls for epochs.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in hidden:
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The family's plain classifier (``spec.classifier(batch_norm=False)``) computing what ``model``,
    built with ``batch_norm=True``, computes in eval mode.

    Each BatchNorm the option added after a conv is folded into that conv's weight and bias
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``), which keeps the family's exact topology and
    torchvision's plain layout for a net that needed BatchNorm to train. A layout with BatchNorms of
    its own (GoogLeNet) has nothing to fold and is copied as it is. Returned in eval mode.
    """
    plain = model.spec.classifier(model.num_classes, batch_norm=False).eval()
    if plain.state_dict().keys() == model.state_dict().keys():
        plain.load_state_dict(model.state_dict())
        return plain
    layers = list(model.features)
    pairs = [(c, n) for c, n in itertools.pairwise(layers) if isinstance(c, nn.Conv2d)]
    if not all(isinstance(n, nn.BatchNorm2d) for _, n in pairs):
        raise ValueError("expected a BatchNorm after every conv of a batch_norm=True classifier")
    targets = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    for (conv, bn), target in zip(pairs, targets, strict=True):
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
        target.weight.copy_(fused.weight)
        target.bias.copy_(fused.bias)
    plain.classifier.load_state_dict(model.classifier.state_dict())
    return plain
