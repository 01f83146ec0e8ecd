"""FCN models: VGG16, AlexNet and GoogLeNet backbones, convolutionalization, bilinear upsampling,
FCN-32s/16s/8s."""

from fcnlab.models.convolutionalize import convolutionalize
from fcnlab.models.factory import backbone_options, backbone_spec, create_model, list_backbones, list_models
from fcnlab.models.fcn import FCN
from fcnlab.models.upsample import BilinearUpsample, bilinear_kernel
from fcnlab.models.weights import load_staged

__all__ = [
    "FCN",
    "BilinearUpsample",
    "backbone_options",
    "backbone_spec",
    "bilinear_kernel",
    "convolutionalize",
    "create_model",
    "list_backbones",
    "list_models",
    "load_staged",
]
