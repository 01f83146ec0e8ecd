"""Paired (image, mask) transforms on torchvision v2 ``tv_tensors``: masks resize with nearest
neighbour and pad with the void label, so padding is never scored."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fcnlab.data.classes import VOID

# torchvision's ImageNet statistics, which its VGG16 weights (and our tiny pretraining) assume.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _finish(mean, std) -> list:
    return [
        v2.ToDtype(
            {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
        ),
        v2.Normalize(mean, std),
    ]


def train_transform(
    crop_size: int | None,
    scale_range: tuple[float, float] | None = None,
    hflip: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """Optional random scale, random crop (padded with 0 / void), optional flip, normalise."""
    steps: list = []
    if scale_range is not None:
        steps.append(RandomScale(tuple(scale_range)))
    if crop_size is not None:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: VOID}
        steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std))


def eval_transform(
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> v2.Compose:
    """Whole image at native size, normalised."""
    return v2.Compose(_finish(mean, std))


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images of different sizes: pad bottom/right with 0 (images) and void (masks)."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images = torch.zeros(len(batch), batch[0][0].shape[0], h, w, dtype=batch[0][0].dtype)
    masks = torch.full((len(batch), h, w), VOID, dtype=torch.int64)
    for i, (img, mask) in enumerate(batch):
        images[i, :, : img.shape[-2], : img.shape[-1]] = img
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks
