"""A job's Figure-4 panels: its best checkpoint's predictions on a few fixed validation images, as files.

``fcnlab-train`` writes them into ``<job dir>/figure4/`` once the best checkpoint is re-validated, so
``fcnlab-report`` draws the grid (input, ground truth, FCN-32s, FCN-16s, FCN-8s) by reading files only:

- ``image_<id>.png``: the input image (RGB, as stored);
- ``truth_<id>.png``, ``pred_<id>.png``: ground truth and prediction as palette PNGs of class indices
  (255: void);
- ``index.json`` (written last: its presence means the panels are complete): the ids, class names,
  the palette (``#rrggbb`` by class index: the run's class colours, else VOC's), the variant, the
  checkpoint and the file name patterns.

The images are the same in every job on the same data: among the first :data:`CANDIDATES` of the
protocol's validation split, the :data:`NUM_IMAGES` with the most classes (ties: split order), where
the differences between strides show on small objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch.utilities.seed import isolate_rng
from PIL import Image
from torchvision import tv_tensors

from fcnlab.atomic import atomic_path, write_json
from fcnlab.data.classes import class_palette
from fcnlab.data.loading import load_sample
from fcnlab.data.transforms import eval_transform
from fcnlab.data.voc import Sample

if TYPE_CHECKING:
    from fcnlab.data.datamodule import SegmentationDataModule
    from fcnlab.training.module import FCNModule

FIGURE4_DIR = "figure4"
NUM_IMAGES = 4
CANDIDATES = 40


def pick_figure_samples(val: list[Sample], num_images: int = NUM_IMAGES) -> list[Sample]:
    """Of a validation split's first :data:`CANDIDATES` samples, the ``num_images`` with the most classes."""
    candidates = val[:CANDIDATES]
    classes = [len(np.unique(load_sample(s)[1].numpy())) for s in candidates]
    order = sorted(range(len(candidates)), key=lambda i: -classes[i])  # stable: ties keep split order
    return [candidates[i] for i in order[:num_images]]


def _save_png(path: Path, pixels: np.ndarray, palette: np.ndarray | None = None) -> None:
    img = Image.fromarray(pixels.astype(np.uint8))  # (H, W, 3): RGB; (H, W): L, made P by its palette
    if palette is not None:
        img.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def write_figure_panels(
    module: FCNModule,
    datamodule: SegmentationDataModule,
    job_dir: str | Path,
    *,
    variant: str,
    checkpoint: str,
    num_images: int = NUM_IMAGES,
) -> dict:
    """Predict the figure images with ``module`` (its weights, its input space) into ``job_dir/figure4``.

    The images come from ``datamodule``'s root and protocol. Leaves the module's train/eval mode, its
    metrics and every random generator as they were. Returns the index written to ``index.json``.
    """
    out_dir = Path(job_dir) / FIGURE4_DIR
    palette = class_palette(module.class_colors, len(module.class_names))[:256]  # 8-bit panels
    samples = pick_figure_samples(datamodule.split_samples()[1], num_images)  # any layout
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with isolate_rng(), torch.inference_mode():
            for sample in samples:
                image, mask = load_sample(sample)
                x = eval_transform(module.input_space)(tv_tensors.Image(image)).as_subclass(torch.Tensor)
                pred = module(x[None].to(device)).argmax(1)[0].cpu().numpy()
                _save_png(out_dir / f"image_{sample.id}.png", image.permute(1, 2, 0).numpy())
                _save_png(out_dir / f"truth_{sample.id}.png", mask.numpy(), palette)
                _save_png(out_dir / f"pred_{sample.id}.png", pred, palette)
    finally:
        module.train(was_training)
    index = {
        "ids": [s.id for s in samples],
        "class_names": list(datamodule.class_names),
        "palette": ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in palette.tolist()],  # by class index
        "variant": variant,
        "checkpoint": checkpoint,
        "files": {"image": "image_{id}.png", "truth": "truth_{id}.png", "prediction": "pred_{id}.png"},
    }
    write_json(out_dir / "index.json", index)
    return index
