"""FCN-32s, FCN-16s, FCN-8s and the at-once FCN-8s (Long, Shelhamer & Darrell, CVPR 2015, Section 4).

Each net is: a convolutionalized VGG16 backbone → a 1×1 scoring layer on fc7 (stride 32) → zero,
one or two skip fusions (2× upsample, add the scores of pool4 / pool3) → a fixed bilinear upsample
back to pixels, cropped to the input. Every crop comes from the coordinate maps in ``geometry.py``
rather than from constants; for the faithful geometry they equal the reference release's crops
(FCN-32s 19; FCN-16s 5 and 27; FCN-8s 5, 9 and 31), which ``tests/test_models.py`` checks.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.models.geometry import CoordMap, shift
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
        self.upsample = BilinearUpsample(num_classes, 2, learnable)
        self.score = zero_score(skip_channels, num_classes)
        self.scale = scale
        up_map = coarse_map.deconv(self.upsample.kernel_size, 2)
        d = shift(up_map, skip_map)
        # Crop whichever map starts earlier in the image; the sum lives in the other one's frame.
        self.crop_coarse, self.crop_skip = max(d, 0), max(-d, 0)
        self.out_map = skip_map if d >= 0 else up_map

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
    """A fully convolutional net: logits of shape (N, num_classes, H, W) for any (N, 3, H, W)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        skips: tuple[str, ...] = (),
        skip_scales: tuple[float, ...] | None = None,
        learn_upsampling: bool = True,
        name: str = "fcn",
    ) -> None:
        super().__init__()
        self.name, self.num_classes, self.skips = name, num_classes, skips
        self.backbone = backbone
        self.score_fr = zero_score(backbone.channels["fc7"], num_classes)
        scales = skip_scales or (1.0,) * len(skips)
        score_map = backbone.coord_maps["fc7"]
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
        self.upscore = BilinearUpsample(num_classes, self.output_stride, learnable=False)
        out_map = score_map.deconv(self.upscore.kernel_size, self.output_stride)
        self.crop = shift(out_map, CoordMap())
        if self.crop < 0:
            raise ValueError(f"{name}: output starts {-self.crop} px inside the image; geometry is broken")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        score = self.score_fr(feats["fc7"])
        for layer, fusion in self.fusions.items():
            score = fusion(score, feats[layer])
        h, w, c = x.shape[-2], x.shape[-1], self.crop
        return self.upscore(score, c, (h, w))  # only the crop is computed (fixed upsampling)


def fcn32s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-32s: one stride-32 prediction upsampled in a single step (FCN-VGG16, Table 1)."""
    return FCN(backbone, num_classes, (), None, learn_upsampling, "fcn32s")


def fcn16s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-16s: + pool4 scores at stride 16 (Fig. 3, dashed line)."""
    return FCN(backbone, num_classes, ("pool4",), None, learn_upsampling, "fcn16s")


def fcn8s(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-8s: + pool4 and pool3 scores, stride 8 (Fig. 3, dotted line)."""
    return FCN(backbone, num_classes, ("pool4", "pool3"), None, learn_upsampling, "fcn8s")


def fcn8s_atonce(backbone: nn.Module, num_classes: int, learn_upsampling: bool = True) -> FCN:
    """FCN-8s trained all at once: pool4 scaled by 0.01 and pool3 by 0.0001 before scoring."""
    return FCN(backbone, num_classes, ("pool4", "pool3"), (0.01, 0.0001), learn_upsampling, "fcn8s_atonce")


# model name -> builder(backbone, num_classes, learn_upsampling): the names create_model accepts
MODELS = {fn.__name__: fn for fn in (fcn32s, fcn16s, fcn8s, fcn8s_atonce)}
