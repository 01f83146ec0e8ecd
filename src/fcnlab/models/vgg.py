"""VGG16 (Simonyan & Zisserman 2015) in torchvision's layout, full size and tiny, as FCN backbones.

The classifier here has torchvision's module names and indices (``features.N``, ``classifier.0/3/6``)
so torchvision's ImageNet weights load by name. The FCN backbone is that classifier made fully
convolutional by :func:`fcnlab.models.convolutionalize.convolutionalize`. ``vgg16_tiny`` keeps the
topology (13 convs, 5 max-pools, fc6, fc7) with narrower layers, for CPU work.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from fcnlab.errors import FCNLabError
from fcnlab.models.geometry import CoordMap


@dataclass(frozen=True)
class VGGSpec:
    """Widths of a VGG16-topology net and the pool5 size at its classifier's native input."""

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


BACKBONES = {"vgg16": vgg16_spec, "vgg16_tiny": vgg16_tiny_spec}  # name -> spec builder (its defaults)


def backbone_options(name: str, overrides: dict | None = None) -> dict:
    """Every option of backbone ``name``: its builder's own defaults with ``overrides`` on top.

    The defaults live with the backbone (``vgg16_tiny``: width_divisor 8, pool5_size 3), so a config's
    ``model.backbone_kwargs`` holds overrides only and switching ``model.backbone`` never carries another
    backbone's options along. An option the backbone does not have is an error naming it.
    """
    if name not in BACKBONES:
        raise FCNLabError(f"unknown backbone {name!r}; valid: {', '.join(sorted(BACKBONES))}")
    params = inspect.signature(BACKBONES[name]).parameters
    overrides = dict(overrides or {})
    if unknown := [k for k in overrides if k not in params]:
        raise FCNLabError(
            f"model.backbone_kwargs.{unknown[0]}: backbone {name} has no such option; "
            f"valid: {', '.join(params) or 'none'}"
        )
    return {k: p.default for k, p in params.items()} | overrides


def backbone_spec(name: str, overrides: dict | None = None) -> VGGSpec:
    """The :class:`VGGSpec` of backbone ``name`` with ``overrides`` of its default options."""
    options = backbone_options(name, overrides)  # checks the name first
    return BACKBONES[name](**options)


def vgg_features(spec: VGGSpec, batch_norm: bool = False) -> nn.Sequential:
    """conv1_1 ... pool5: torchvision's VGG16 stack (``vgg16`` or ``vgg16_bn`` layout) at ``spec``'s widths.

    torchvision builds it with padding 1 and floor pooling; :class:`VGGBackbone` sets conv1_1's padding
    and ceil pooling for its geometry.
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
        self.spec = spec
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
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # torchvision's N(0, 0.01) suits fc6's 25,088 inputs (He's std would be 0.009); a narrow net
        # needs He's std for its hidden fc layers, or the signal fades and training stalls for epochs.
        for m in list(self.classifier)[:-1]:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@torch.no_grad()
def fold_batchnorm(model: VGGClassifier) -> VGGClassifier:
    """A plain (no BatchNorm) classifier computing what ``model`` computes in eval mode.

    Each BatchNorm after a conv is folded into that conv's weight and bias, which keeps the exact
    VGG16 topology (and torchvision's plain layout) for a net that needed BatchNorm to train.
    Not ``torch.nn.utils.fuse_conv_bn_weights``: it rounds in another order (``rsqrt``, then times
    the BatchNorm weight), which changes the saved backbone in its last bits and with it every
    metric trained from it; this formula keeps existing pretrained backbones reproducible.
    """
    plain = VGGClassifier(model.spec, model.classifier[-1].out_features, batch_norm=False)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    targets = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    if len(norms) not in (0, len(convs)):
        raise ValueError("expected a BatchNorm after every conv or after none")
    for i, (conv, target) in enumerate(zip(convs, targets, strict=True)):
        weight, bias = conv.weight.clone(), conv.bias.clone()
        if norms:
            bn = norms[i]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * scale[:, None, None, None]
            bias = (bias - bn.running_mean) * scale + bn.bias
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    plain.classifier.load_state_dict(model.classifier.state_dict())
    return plain


class VGGBackbone(nn.Module):
    """VGG16 conv1_1 … fc7 as a fully convolutional feature extractor returning pool3, pool4, fc7.

    ``geometry="faithful"`` is the reference Caffe net: conv1_1 padded by 100 so that even a 1×1
    input leaves a pool5 map the 7×7 fc6 can cover, and fc6 unpadded. ``"efficient"`` pads conv1_1
    by 1 like every other conv and pads fc6 to keep its size, so no pixel outside the image is
    computed. Both pool with ceil rounding (Caffe's), so a map of n pixels pools to ceil(n/2).
    """

    GEOMETRIES = ("faithful", "efficient")

    def __init__(self, features: nn.Sequential, fc: nn.Sequential, spec: VGGSpec, geometry: str) -> None:
        super().__init__()
        if geometry not in self.GEOMETRIES:
            raise ValueError(f"unknown geometry {geometry!r}; valid: {', '.join(self.GEOMETRIES)}")
        self.spec, self.geometry = spec, geometry
        self.features, self.fc = features, fc
        first_padding = 100 if geometry == "faithful" else 1
        self.features[0].padding = (first_padding, first_padding)
        for m in self.features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self._pool3, self._pool4 = pools[2], pools[3]

        fc6 = self.fc.fc6
        stride_1 = CoordMap().conv(3, 1, first_padding)
        self.coord_maps = {
            "pool3": _after_pools(stride_1, 3),
            "pool4": _after_pools(stride_1, 4),
            "fc7": _after_pools(stride_1, 5).conv(fc6.kernel_size[0], 1, fc6.padding[0]),
        }
        self.channels = {"pool3": spec.widths[2], "pool4": spec.widths[3], "fc7": spec.fc_width}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        eager = not (torch.compiler.is_compiling() or torch.jit.is_tracing())
        if eager and x.device.type == "cpu" and x.dim() == 4:
            # oneDNN runs NHWC convs without reordering every layer's input and output: faster
            # forward and training steps on CPU (figures in docs/performance.md).
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._pool3:
                out["pool3"] = x
            elif i == self._pool4:
                out["pool4"] = x
        out["fc7"] = self.fc(x)
        return out


def _after_pools(m: CoordMap, n: int) -> CoordMap:
    # 3×3 pad-1 convs keep the map; each 2×2 stride-2 pool halves the resolution.
    for _ in range(n):
        m = m.conv(2, 2, 0)
    return m
