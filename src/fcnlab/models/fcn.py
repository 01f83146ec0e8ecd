"""FCN-32s, FCN-16s, FCN-8s and the at-once FCN-8s (Long, Shelhamer & Darrell, CVPR 2015, Section 4).

Each net is: a convolutionalized backbone (VGG16, AlexNet or GoogLeNet) → a 1×1 scoring layer on
its final map (stride 32) → zero, one or two skip fusions (2× upsample, add the scores of the
backbone's stride-16 / stride-8 taps: VGG16's pool4 / pool3) → a fixed bilinear upsample back to
pixels, cropped to the input. Every crop and every upsampling kernel comes from the coordinate maps
in ``geometry.py`` rather than from constants; for the faithful geometry they equal the reference
release's (FCN-32s 19; FCN-16s 5 and 27; FCN-8s 5, 9 and 31; FCN-AlexNet kernel 63, crop 18),
which ``tests/test_models.py`` and ``tests/test_backbones.py`` check.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.models.geometry import CoordMap, shift, upsampling_kernel
from fcnlab.models.upsample import BilinearUpsample


def zero_score(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1×1 scoring conv initialised to zero (the paper: random init gave no better results)."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class SkipFusion(nn.Module):
    """Upsample coarse scores 2× and add the scores of a finer backbone layer (one arrow of Fig. 3).

    The skip's scoring layer starts at zero, so a net initialised from its coarser parent computes
    exactly the parent's function at first. ``scale`` multiplies the skip features before scoring
    (the at-once FCN-8s uses 0.01 for pool4 and 0.0001 for pool3 to balance their magnitudes).
    """

    def __init__(
        self,
        num_classes: int,
        skip_channels: int,
        coarse_map: CoordMap,
        skip_map: CoordMap,
        learnable: bool,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        kernel = upsampling_kernel(coarse_map, 2, skip_map)
        self.upsample = BilinearUpsample(num_classes, 2, learnable, kernel)
        self.score = zero_score(skip_channels, num_classes)
        self.scale = scale
        up_map = coarse_map.deconv(kernel, 2)
        d = shift(up_map, skip_map)
        # Crop whichever map starts earlier in the image; the sum lives in the other one's frame.
        self.crop_coarse, self.crop_skip = max(d, 0), max(-d, 0)
        frame = skip_map if d >= 0 else up_map
        self.out_map = CoordMap(frame.stride, frame.offset, max(skip_map.rf, up_map.rf))

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.upsample(coarse)
        score = self.score(skip * self.scale if self.scale != 1.0 else skip)
        cu, cs = self.crop_coarse, self.crop_skip
        h = min(up.shape[-2] - cu, score.shape[-2] - cs)
        w = min(up.shape[-1] - cu, score.shape[-1] - cs)
        return up[..., cu : cu + h, cu : cu + w] + score[..., cs : cs + h, cs : cs + w]

    def extra_repr(self) -> str:
        return f"scale={self.scale}, crop_coarse={self.crop_coarse}, crop_skip={self.crop_skip}"


class FCN(nn.Module):
    """A fully convolutional net: logits of shape (N, num_classes, H, W) for any (N, 3, H, W).

    ``skip_strides`` (16, then 8) pick the backbone's taps to fuse (``backbone.skip_layers``); the
    fusions are named after those layers (VGG16: ``fusions.pool4``, ``fusions.pool3``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        skip_strides: tuple[int, ...] = (),
        skip_scales: tuple[float, ...] | None = None,
        learn_upsampling: bool = True,
        name: str = "fcn",
    ) -> None:
        super().__init__()
        skips = tuple(backbone.skip_layers[s] for s in skip_strides)
        self.name, self.num_classes, self.skips = name, num_classes, skips
        self.backbone = backbone
        self.score_fr = zero_score(backbone.channels[backbone.out], num_classes)
        scales = skip_scales or (1.0,) * len(skips)
        score_map = backbone.coord_maps[backbone.out]
        self.fusions = nn.ModuleDict()
        for layer, scale in zip(skips, scales, strict=True):
            fusion = SkipFusion(
                num_classes,
                backbone.channels[layer],
                score_map,
                backbone.coord_maps[layer],
                learn_upsampling,
                scale,
            )
            self.fusions[layer] = fusion
            score_map = fusion.out_map
        self.output_stride = int(score_map.stride)
        # The final upsampling to pixels is always fixed bilinear (as in the paper and the release).
        kernel = upsampling_kernel(score_map, self.output_stride, CoordMap())
        self.upscore = BilinearUpsample(num_classes, self.output_stride, False, kernel)
        out_map = score_map.deconv(kernel, self.output_stride)
        self.crop = shift(out_map, CoordMap())
        if self.crop < 0:
            raise ValueError(f"{name}: output starts {-self.crop} px inside the image; geometry is broken")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        score = self.score_fr(feats[self.backbone.out])
        for layer, fusion in self.fusions.items():
            score = fusion(score, feats[layer])
        h, w, c = x.shape[-2], x.shape[-1], self.crop
        return self.upscore(score, c, (h, w))  # only the crop is computed (fixed upsampling)


def fcn32s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-32s: one stride-32 prediction upsampled in a single step (Table 1's nets)."""
    return FCN(backbone, num_classes, (), None, learn_upsampling, "fcn32s")


def fcn16s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-16s: + the stride-16 tap's scores (VGG16: pool4; Fig. 3, dashed line)."""
    return FCN(backbone, num_classes, (16,), None, learn_upsampling, "fcn16s")


def fcn8s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-8s: + the stride-16 and stride-8 taps' scores (VGG16: pool4, pool3; Fig. 3, dotted line)."""
    return FCN(backbone, num_classes, (16, 8), None, learn_upsampling, "fcn8s")


def fcn8s_atonce(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-8s trained all at once: the stride-16 tap scaled by 0.01 and the stride-8 one by 0.0001."""
    return FCN(backbone, num_classes, (16, 8), (0.01, 0.0001), learn_upsampling, "fcn8s_atonce")


# model name -> builder(backbone, num_classes, learn_upsampling): the names create_model accepts
MODELS = {fn.__name__: fn for fn in (fcn32s, fcn16s, fcn8s, fcn8s_atonce)}
