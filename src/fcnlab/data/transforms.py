"""Paired (image, mask) transforms on torchvision v2 ``tv_tensors``: masks resize with nearest
neighbour and pad with the void label, so padding is never scored. Images are put into the weights'
input space (``fcnlab.data.input_space``) before they are cropped, so crop padding is 0 there: the
mean pixel, in either space."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fcnlab.data.classes import VOID
from fcnlab.data.input_space import IMAGENET_MEAN, IMAGENET_STD, InputSpace, get_input_space

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ToInputSpace",
    "eval_transform",
    "pad_collate",
    "train_transform",
]


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range`` (images bilinear, masks nearest)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.lo, self.hi = scale_range

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        s = float(torch.empty(1).uniform_(self.lo, self.hi))
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt, params: dict):
        return TF.resize(inpt, params["size"], antialias=True)


class ToInputSpace(v2.Transform):
    """uint8 RGB image → float32 in ``space`` (see ``InputSpace.normalize``); masks → int64."""

    def __init__(self, space: str | dict | InputSpace | None) -> None:
        super().__init__()
        self.space = get_input_space(space)

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.wrap(inpt.as_subclass(torch.Tensor).to(torch.int64), like=inpt)
        if isinstance(inpt, tv_tensors.Image):
            return tv_tensors.wrap(self.space.normalize(inpt.as_subclass(torch.Tensor)), like=inpt)
        return inpt


def train_transform(
    crop_size: int | None,
    scale_range: tuple[float, float] | None = None,
    hflip: bool = True,
    input_space: str | dict | InputSpace | None = "torchvision",
) -> v2.Compose:
    """Optional random scale, normalise, random crop (padded with 0 = the mean / void), optional flip."""
    steps: list = []
    if scale_range is not None:
        steps.append(RandomScale(tuple(scale_range)))
    steps.append(ToInputSpace(input_space))
    if crop_size is not None:
        fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: VOID}
        steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def eval_transform(input_space: str | dict | InputSpace | None = "torchvision") -> v2.Compose:
    """Whole image at native size, in the weights' input space."""
    return v2.Compose([ToInputSpace(input_space)])


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images of different sizes: pad bottom/right with 0 (the mean, normalised) and void (masks)."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images = torch.zeros(len(batch), batch[0][0].shape[0], h, w, dtype=batch[0][0].dtype)
    masks = torch.full((len(batch), h, w), VOID, dtype=torch.int64)
    for i, (img, mask) in enumerate(batch):
        images[i, :, : img.shape[-2], : img.shape[-1]] = img
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks
