"""The report's inputs from a job: Figure-4 panels written by a module, without touching its state."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.data.loading import load_sample
from fcnlab.data.transforms import eval_transform
from fcnlab.data.voc import protocol_samples
from fcnlab.training import FCNModule
from fcnlab.training.figure_panels import write_figure_panels

TINY_FCN8S = {
    "name": "fcn8s",
    "num_classes": 21,
    "backbone": "vgg16_tiny",
    "pretrained": None,
    "width_divisor": 8,
    "pool5_size": 3,
}


def test_figure_panels_are_the_modules_argmax_and_leave_its_state_alone(tiny_data, tmp_path):
    torch.manual_seed(0)
    module = FCNModule(model=TINY_FCN8S).train()
    with torch.no_grad():  # random weights everywhere (the score layers start at zero): varied predictions
        for p in module.parameters():
            p.normal_(0, 0.1)
    datamodule = SegmentationDataModule(tiny_data, protocol="seg11valid", num_workers=0)
    rng = torch.get_rng_state()
    index = write_figure_panels(module, datamodule, tmp_path, variant="fcn8s", checkpoint="none.ckpt")
    assert torch.equal(torch.get_rng_state(), rng) and module.training
    assert json.loads((tmp_path / "figure4/index.json").read_text()) == index
    assert index["palette"][:3] == ["#000000", "#800000", "#008000"] and len(index["palette"]) == 256
    _, val, _ = protocol_samples(tiny_data, "seg11valid")
    by_id = {s.id: s for s in val}
    module.eval()
    classes_seen = set()
    for i in index["ids"]:
        image, _ = load_sample(by_id[i])
        x = eval_transform(module.input_space)(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        with torch.inference_mode():
            expected = module(x[None]).argmax(1)[0].numpy()
        pred = np.asarray(Image.open(tmp_path / f"figure4/pred_{i}.png"))
        np.testing.assert_array_equal(pred, expected)
        classes_seen |= set(np.unique(pred).tolist())
    assert len(classes_seen) > 1  # a comparison that could tell two nets apart
