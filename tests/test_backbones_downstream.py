"""Everything after training takes any backbone: tiny AlexNet / GoogLeNet checkpoints through export
(ONNX, dynamic height and width), prediction, evaluation with test-time flips, and training on a
folder dataset from a coarser net's checkpoint (init_from)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlab.inference.evaluate import evaluate
from fcnlab.inference.export import export
from fcnlab.inference.inputs import normalize
from fcnlab.inference.predict import predict
from fcnlab.training import load_module
from fcnlab.training.run import train
from helpers.folder_data import make_folder, stripes
from test_predict import make_cfg, tiny_checkpoint

ort = pytest.importorskip("onnxruntime")

BACKBONES = ["alexnet_tiny", "googlenet_tiny"]  # vgg16_tiny: the other tests of these commands
DATA = ["data.generate=null", "data.num_workers=0", "trainer.enable_progress_bar=false"]


def checkpoint(path: Path, backbone: str, name: str, num_classes: int = 21) -> Path:
    """A Lightning checkpoint of a tiny FCN on ``backbone`` after one step, its scoring layers random."""
    return tiny_checkpoint(path, name, "faithful", num_classes, backbone=backbone)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_export_predict_and_eval_on_any_backbone(backbone, tiny_data, tmp_path):
    ckpt = checkpoint(tmp_path / "fcn8s.ckpt", backbone, "fcn8s")
    module = load_module(str(ckpt))
    assert module.model.backbone.spec.family.lower() == backbone.removesuffix("_tiny")

    result = export(make_cfg("export", [f"ckpt={ckpt}"], tmp_path / "export"))  # checks 3 sizes itself
    sidecar = json.loads(Path(result["path"]).with_name("fcn8s.onnx.json").read_text())
    # relative to the logits: a random GoogLeNet's frozen (initial) BatchNorms leave them in the thousands
    assert all(c["max_abs_diff"] < 1e-5 * max(1.0, c["logit_scale"]) for c in sidecar["checks"])
    session = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 1, 1), (2, 3, 45, 23)]:
        x = normalize(torch.randint(0, 256, shape, dtype=torch.uint8), sidecar["input"]["input_space"])
        with torch.inference_mode():
            expected = module.model.eval()(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        assert got.shape == expected.shape == (shape[0], 21, *shape[2:])
        assert np.abs(got - expected).max() < 1e-5 * max(1.0, np.abs(expected).max())

    images = tmp_path / "images"
    images.mkdir()
    for name, (h, w) in {"one": (1, 1), "odd": (37, 53)}.items():
        pixels = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.png")
    out = tmp_path / "predictions"
    predict(make_cfg("predict", [f"ckpt={ckpt}", f"input={images}", f"output={out}"], tmp_path / "predict"))
    for name, (h, w) in {"one": (1, 1), "odd": (37, 53)}.items():
        with Image.open(out / f"{name}.png") as mask:
            assert mask.size == (w, h)

    single = evaluate(make_cfg("eval", [f"ckpt={ckpt}", f"data.root={tiny_data}", *DATA], tmp_path / "e1"))
    flipped = evaluate(
        make_cfg("eval", [f"ckpt={ckpt}", f"data.root={tiny_data}", "infer=flip", *DATA], tmp_path / "e2")
    )
    assert single["infer"]["label"] == "single-scale" and flipped["infer"]["label"] == "flip"
    assert all(0 <= v <= 1 for v in (*single["metrics"].values(), *flipped["metrics"].values()))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_staged_training_on_folder_data_on_any_backbone(backbone, tmp_path):
    """fcnlab-train data=folder model=fcn16s init_from=<an FCN-32s of the backbone>: trains and scores."""
    masks = {split: {f"{split}{i}": stripes(48 + 8 * i, 40) for i in range(3)} for split in ("train", "val")}
    root = make_folder(tmp_path / "data", masks)
    parent = checkpoint(tmp_path / "fcn32s.ckpt", backbone, "fcn32s", num_classes=3)
    overrides = [
        "data=folder",
        f"data.root={root}",
        "data.crop_size=32",
        "data.batch_size=2",
        "model=fcn16s",
        f"model.backbone={backbone}",
        "model.geometry=faithful",
        "model.pretrained=null",
        f"init_from={parent}",
        "trainer.max_epochs=1",
        *DATA,
    ]
    results = train(make_cfg("train", overrides, tmp_path / "run"))
    assert results["status"] == "ok" and results["init_from"] == str(parent)
    assert results["class_names"] == ["sky", "grass", "road"]
    state = torch.load(results["best_checkpoint"], weights_only=False)["state_dict"]
    first = next(k for k in state if k.startswith("model.backbone.features.") and k.endswith("weight"))
    parent_state = torch.load(parent, weights_only=False)["state_dict"]
    assert state[first].shape == parent_state[first].shape and not torch.equal(
        state[first], parent_state[first]
    )
    assert any(k.startswith("model.fusions.") for k in state)
