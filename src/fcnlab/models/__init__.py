"""FCN models: VGG16 backbones, convolutionalization, bilinear upsampling, FCN-32s/16s/8s."""

from fcnlab.models.convolutionalize import convolutionalize
from fcnlab.models.factory import create_model, list_models
from fcnlab.models.fcn import FCN
from fcnlab.models.upsample import BilinearUpsample, bilinear_kernel
from fcnlab.models.weights import load_staged

__all__ = [
    "FCN",
    "BilinearUpsample",
    "bilinear_kernel",
    "convolutionalize",
    "create_model",
    "list_models",
    "load_staged",
]
