"""``create_model``: one call from a name and options to a ready FCN."""

from __future__ import annotations

import os

import torch
from torch import nn

from fcnlab.errors import FCNLabError
from fcnlab.models.convolutionalize import convolutionalize
from fcnlab.models.fcn import MODELS
from fcnlab.models.vgg import VGGBackbone, VGGClassifier, backbone_spec
from fcnlab.models.weights import load_classifier, resolve_pretrained


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def create_model(
    name: str,
    *,
    num_classes: int = 21,
    backbone: str = "vgg16",
    geometry: str = "faithful",
    pretrained: str | os.PathLike | None = None,
    freeze_backbone: bool = False,
    learn_upsampling: bool = True,
    backbone_kwargs: dict | None = None,
    **backbone_options,
) -> nn.Module:
    """Build an FCN by name (see ``list_models()``) on a convolutionalized VGG16-topology backbone.

    ``pretrained``: None (random init), "imagenet" (torchvision's VGG16 file, local only),
    "imagenet_caffe" (torchfcn's Caffe-converted VGG16, local only; its input space is caffe, see
    ``fcnlab.data.input_space``) or a path to a VGG16-layout classifier state dict.
    ``freeze_backbone`` leaves only the layers after fc7 trainable (FCN-32s-fixed).
    ``learn_upsampling`` trains the 2× upsamplings inside 16s/8s (the paper) or keeps them bilinear
    (the reference release). ``backbone_kwargs`` (the ``model.backbone_kwargs`` of a config) and extra
    keywords override the backbone's own defaults (:func:`fcnlab.models.vgg.backbone_options`), e.g.
    ``width_divisor`` for ``vgg16_tiny``.
    """
    if name not in MODELS:
        raise FCNLabError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    if num_classes < 1:
        raise FCNLabError(f"num_classes must be >= 1, got {num_classes}")
    options = {**(backbone_kwargs or {}), **backbone_options}
    spec = backbone_spec(backbone, options)  # unknown backbone or option: FCNLabError
    if geometry not in VGGBackbone.GEOMETRIES:
        raise FCNLabError(f"unknown geometry {geometry!r}; valid: {', '.join(VGGBackbone.GEOMETRIES)}")
    classifier = VGGClassifier(spec)  # a VGG16-topology classifier, from random init or given weights
    state = resolve_pretrained(pretrained, backbone)
    if state is not None:
        load_classifier(classifier, state, str(pretrained))
    k = spec.pool5_size
    if geometry == "efficient" and k % 2 == 0:
        raise FCNLabError(f"geometry=efficient needs an odd fc6 kernel (pool5_size), got {k}")
    # faithful: fc6 unpadded, as the classifier; efficient: padded to keep the pool5 map's size.
    fc = convolutionalize(
        classifier.classifier, spec.widths[-1], k, padding=0 if geometry == "faithful" else k // 2
    )
    net = MODELS[name](VGGBackbone(classifier.features, fc, spec, geometry), num_classes, learn_upsampling)
    if freeze_backbone:
        net.backbone.requires_grad_(False)
    return net.to(memory_format=torch.channels_last) if spec.nhwc_weights else net
