"""``create_model``: one call from a name and options to a ready FCN, on any registered backbone.

``BACKBONES`` maps each backbone name to its spec builder (one file per family: ``vgg.py``,
``alexnet.py``, ``googlenet.py``); a builder's keyword defaults are that backbone's options.
"""

from __future__ import annotations

import inspect
import os

import torch
from torch import nn

from fcnlab.errors import FCNLabError
from fcnlab.models.alexnet import alexnet_spec, alexnet_tiny_spec
from fcnlab.models.fcn import MODELS
from fcnlab.models.geometry import GEOMETRIES
from fcnlab.models.googlenet import googlenet_spec, googlenet_tiny_spec
from fcnlab.models.vgg import vgg16_spec, vgg16_tiny_spec
from fcnlab.models.weights import load_classifier, resolve_pretrained

# backbone name -> spec builder (its keyword defaults are the backbone's options)
BACKBONES = {
    "alexnet": alexnet_spec,
    "alexnet_tiny": alexnet_tiny_spec,
    "googlenet": googlenet_spec,
    "googlenet_tiny": googlenet_tiny_spec,
    "vgg16": vgg16_spec,
    "vgg16_tiny": vgg16_tiny_spec,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def list_backbones() -> list[str]:
    """Backbone names accepted by :func:`create_model` (``backbone=``), sorted."""
    return sorted(BACKBONES)


def backbone_options(name: str, overrides: dict | None = None) -> dict:
    """Every option of backbone ``name``: its builder's own defaults with ``overrides`` on top.

    The defaults live with the backbone (``vgg16_tiny``: width_divisor 8, pool5_size 3), so a config's
    ``model.backbone_kwargs`` holds overrides only and switching ``model.backbone`` never carries another
    backbone's options along. An option the backbone does not have is an error naming it.
    """
    if name not in BACKBONES:
        raise FCNLabError(f"unknown backbone {name!r}; valid: {', '.join(list_backbones())}")
    params = inspect.signature(BACKBONES[name]).parameters
    overrides = dict(overrides or {})
    if unknown := [k for k in overrides if k not in params]:
        raise FCNLabError(
            f"model.backbone_kwargs.{unknown[0]}: backbone {name} has no such option; "
            f"valid: {', '.join(params) or 'none'}"
        )
    return {k: p.default for k, p in params.items()} | overrides


def backbone_spec(name: str, overrides: dict | None = None):
    """The spec (architecture) of backbone ``name`` with ``overrides`` of its default options."""
    options = backbone_options(name, overrides)  # checks the name first
    return BACKBONES[name](**options)


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
    """Build an FCN by name (see ``list_models()``) on a convolutionalized backbone (``list_backbones()``).

    ``pretrained``: None (random init), "imagenet" (torchvision's file of a full-size backbone, local
    only), "imagenet_caffe" (torchfcn's Caffe-converted VGG16, local only; its input space is caffe,
    see ``fcnlab.data.input_space``) or a path to a classifier state dict in the backbone's
    torchvision layout. ``freeze_backbone`` leaves only the layers after the backbone trainable
    (FCN-32s-fixed). ``learn_upsampling`` trains the 2× upsamplings inside 16s/8s (the paper) or
    keeps them bilinear (the reference release). ``backbone_kwargs`` (the ``model.backbone_kwargs``
    of a config) and extra keywords override the backbone's own defaults (:func:`backbone_options`),
    e.g. ``width_divisor`` for the tiny backbones.
    """
    if name not in MODELS:
        raise FCNLabError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    if num_classes < 1:
        raise FCNLabError(f"num_classes must be >= 1, got {num_classes}")
    options = {**(backbone_kwargs or {}), **backbone_options}
    spec = backbone_spec(backbone, options)  # unknown backbone or option: FCNLabError
    if geometry not in GEOMETRIES:
        raise FCNLabError(f"unknown geometry {geometry!r}; valid: {', '.join(GEOMETRIES)}")
    classifier = spec.classifier()  # the family's classifier, from random init or given weights
    state = resolve_pretrained(pretrained, backbone)
    if state is not None:
        load_classifier(classifier, state, str(pretrained))
    net = MODELS[name](spec.fcn_backbone(classifier, geometry), num_classes, learn_upsampling)
    if freeze_backbone:
        net.backbone.requires_grad_(False)
    return net.to(memory_format=torch.channels_last) if spec.nhwc_weights else net
