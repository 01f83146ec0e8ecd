"""Input spaces: how an RGB uint8 image becomes the float tensor a given set of weights expects.

``torchvision``: RGB, divided by 255, then ImageNet mean/std (torchvision's VGG16 and AlexNet, and
our tiny pretraining). ``caffe``: BGR, 0–255, the ILSVRC mean pixel (BGR order) subtracted, no std
(the Caffe VGG16 and every net of the FCN reference release, so also torchfcn's converted files).
``googlenet``: RGB, divided by 255, then mapped to [-1, 1] (mean 0.5, std 0.5): torchvision's
GoogLeNet weights, ported from TensorFlow, which torchvision feeds through ``transform_input``.

The space belongs to the weights: it is stored in every checkpoint (``FCNModule`` hyperparameters)
and read back from there by evaluation, prediction and export, so a net is never fed another input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from fcnlab.errors import FCNLabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)


@dataclass(frozen=True)
class InputSpace:
    """``x = (pixels[channels] * scale - mean) / std``, pixels uint8 RGB, mean/std in ``channels`` order."""

    name: str
    channels: str  # "RGB" or "BGR": the order of the network's input channels
    scale: float  # multiplies the 0–255 pixel values before the mean is subtracted
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def describe(self) -> str:
        scaled = "0-255" if self.scale == 1.0 else f"/ {1 / self.scale:.6g}"
        return f"{self.channels} {scaled}, then (x - mean) / std per channel ({self.channels} order)"

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0–255 float) RGB ``(..., 3, H, W)`` → float32 network input."""
        x = images.to(torch.float32)
        if self.channels == "BGR":
            x = x.flip(-3)
        if self.scale != 1.0:
            x = x * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (x - mean) / std

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse, for display: network input ``(..., 3, H, W)`` → uint8 RGB."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        pixels = (x.float() * std + mean) / self.scale
        if self.channels == "BGR":
            pixels = pixels.flip(-3)
        return pixels.round().clamp(0, 255).to(torch.uint8)


INPUT_SPACES = {
    "torchvision": InputSpace("torchvision", "RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD),
    "caffe": InputSpace("caffe", "BGR", 1.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)),
    "googlenet": InputSpace("googlenet", "RGB", 1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
CHOICES = ("auto", *INPUT_SPACES)
# The space of ``model.pretrained=imagenet`` (torchvision's file) where it is not torchvision's own.
IMAGENET_SPACES = {"googlenet": "googlenet"}


def get_input_space(space: str | dict | InputSpace | None) -> InputSpace:
    """An ``InputSpace`` from its name, its stored dict, or None (torchvision: checkpoints before spaces)."""
    if space is None:
        return INPUT_SPACES["torchvision"]
    if isinstance(space, InputSpace):
        return space
    if isinstance(space, dict):
        return InputSpace(
            name=str(space["name"]),
            channels=str(space["channels"]),
            scale=float(space["scale"]),
            mean=tuple(float(v) for v in space["mean"]),
            std=tuple(float(v) for v in space["std"]),
        )
    if str(space) not in INPUT_SPACES:
        raise FCNLabError(f"input space {space!r} is unknown; use {' or '.join(INPUT_SPACES)}")
    return INPUT_SPACES[str(space)]


def resolve_input_space(
    setting: str | None, pretrained: object, weights_space: str | None = None, backbone: str | None = None
) -> InputSpace:
    """``input_space`` (auto or a name in INPUT_SPACES) → the space, implied by the weights for ``auto``.

    ``weights_space`` is the space of an ``init_from`` net (stored in its checkpoint; caffe for an
    imported torchfcn net). ``pretrained=imagenet_caffe`` implies caffe; ``imagenet`` the space of
    ``backbone``'s torchvision file (googlenet for GoogLeNet's); anything else torchvision.
    An explicit setting that contradicts the weights is refused: the net would see the wrong input.
    """
    setting = "auto" if setting in (None, "", "null") else str(setting)
    if setting not in CHOICES:
        raise FCNLabError(f"input_space={setting}: unknown; use {', '.join(CHOICES)}")
    implied, source = None, ""
    if weights_space is not None:
        implied, source = weights_space, "init_from"
    elif str(pretrained) == "imagenet_caffe":
        implied, source = "caffe", "model.pretrained=imagenet_caffe"
    elif str(pretrained) == "imagenet":
        implied = IMAGENET_SPACES.get(str(backbone), "torchvision")
        source = "model.pretrained=imagenet" + (f" ({backbone})" if backbone in IMAGENET_SPACES else "")
    if setting == "auto":
        return INPUT_SPACES[implied or "torchvision"]
    if implied is not None and implied != setting:
        raise FCNLabError(
            f"input_space={setting} but {source} expects {implied} input; "
            f"drop the override (auto follows the weights) or set input_space={implied}"
        )
    return INPUT_SPACES[setting]
