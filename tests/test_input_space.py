"""Input spaces follow the weights: stored in every checkpoint, used from there by eval, predict and
export; ``model.pretrained=imagenet_caffe`` loads the Caffe VGG16 and implies its input space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlab.data.input_space import INPUT_SPACES, resolve_input_space
from fcnlab.errors import FCNLabError
from fcnlab.inference.evaluate import evaluate
from fcnlab.inference.predict import predict
from fcnlab.models import create_model
from fcnlab.models.weights import VGG16_CAFFE_FILE, imagenet_weights_path
from fcnlab.training import FCNModule, load_module
from fcnlab.training.run import train
from test_predict import make_cfg, tiny_checkpoint
from test_train import make_cfg as train_cfg
from test_train import tiny_overrides

TINY = {"name": "fcn8s", "num_classes": 21, "backbone": "vgg16_tiny", "geometry": "efficient"}
TINY_KW = {"width_divisor": 8, "pool5_size": 3}


def saved_module(path: Path, space: str | None) -> Path:
    """A checkpoint as fcnlab-train writes it (state dict + hyperparameters), non-zero scoring layers."""
    torch.manual_seed(0)
    module = FCNModule(model={**TINY, **TINY_KW}, input_space=space)
    with torch.no_grad():
        for name, p in module.model.named_parameters():
            if "score" in name:
                p.normal_(0, 0.05)
    hparams = dict(module.hparams)
    if space is None:  # a checkpoint from before input spaces were stored
        hparams.pop("input_space")
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, path)
    return path


def test_auto_follows_the_weights_and_a_contradiction_is_refused():
    assert resolve_input_space("auto", "imagenet_caffe").name == "caffe"
    assert resolve_input_space("auto", "imagenet").name == "torchvision"
    assert resolve_input_space("auto", None).name == "torchvision"
    assert resolve_input_space("auto", None, "caffe").name == "caffe"  # a caffe init_from
    assert resolve_input_space("caffe", "/some/classifier.pth").name == "caffe"
    with pytest.raises(FCNLabError, match=r"^input_space=torchvision but model.pretrained=imagenet_caffe"):
        resolve_input_space("torchvision", "imagenet_caffe")


def test_lightning_checkpoints_store_the_input_space(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.ckpt")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["input_space"] == INPUT_SPACES["torchvision"].as_dict()
    assert load_module(str(path)).input_space == INPUT_SPACES["torchvision"]


def test_old_checkpoints_without_a_space_read_as_torchvision(tmp_path):
    module = load_module(str(saved_module(tmp_path / "old.ckpt", None)))
    assert module.input_space == INPUT_SPACES["torchvision"]


def test_checkpoints_with_backbone_options_flat_or_nested_load_the_same_net(tmp_path):
    """Model options stored flat or in create_model's own keywords (nested backbone_kwargs) rebuild
    the same net."""
    path = saved_module(tmp_path / "flat.ckpt", "torchvision")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    want = load_module(str(path)).model.state_dict()
    saved["hyper_parameters"]["model"] = {**TINY, "backbone_kwargs": TINY_KW}
    torch.save(saved, tmp_path / "nested.ckpt")
    got = load_module(str(tmp_path / "nested.ckpt")).model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_caffe_checkpoint_is_fed_caffe_input_by_predict_export_and_eval(tmp_path, tiny_data):
    ckpt = str(saved_module(tmp_path / "caffe.ckpt", "caffe"))
    module = load_module(ckpt)
    assert module.input_space == INPUT_SPACES["caffe"]
    model = module.model.eval()

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "a.png")
    record = predict(
        make_cfg("predict", [f"ckpt={ckpt}", f"input={src}", f"output={tmp_path / 'out'}"], tmp_path)
    )
    assert record["input_space"]["name"] == "caffe" and not record["errors"]
    # By hand: BGR, 0-255, minus Caffe's mean pixel (BGR), no std.
    bgr = torch.from_numpy(rgb[:, :, ::-1].copy()).permute(2, 0, 1).float()
    x = bgr - torch.tensor([104.00699, 116.66877, 122.67892]).view(3, 1, 1)
    with torch.inference_mode():
        expected = model(x[None])[0].argmax(0).numpy()
    assert (np.asarray(Image.open(tmp_path / "out" / "a.png")) == expected).all()
    rgb_labels = model(INPUT_SPACES["torchvision"].normalize(torch.from_numpy(rgb).permute(2, 0, 1))[None])
    assert not (rgb_labels[0].argmax(0).numpy() == expected).all()  # the space matters here

    pytest.importorskip("onnxruntime")
    from fcnlab.inference.export import export

    out = export(make_cfg("export", [f"ckpt={ckpt}", f"output={tmp_path / 'm.onnx'}"], tmp_path))
    sidecar = json.loads(Path(out["path"] + ".json").read_text())["input"]
    assert (sidecar["input_space"], sidecar["channel_order"], sidecar["scale"]) == ("caffe", "BGR", 1.0)
    assert sidecar["mean"] == [104.00699, 116.66877, 122.67892] and sidecar["std"] == [1.0, 1.0, 1.0]

    # Eval: the checkpoint's space wins over a data config that says torchvision.
    base = [f"ckpt={ckpt}", f"data.root={tiny_data}", "data.generate=null", "data.num_workers=0"]
    told = evaluate(make_cfg("eval", [*base, "+data.input_space=torchvision"], tmp_path / "e1"))
    plain = evaluate(make_cfg("eval", base, tmp_path / "e2"))
    assert told["input_space"] == plain["input_space"] == "caffe"
    assert told["metrics"] == plain["metrics"]


def random_vgg16_file(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """torchvision's VGG16 state-dict layout (names and shapes) with random tensors, saved as ``name``."""
    import torchvision

    torch.manual_seed(1)
    state = {k: torch.randn_like(v) * 0.01 for k, v in torchvision.models.vgg16().state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    return state


@pytest.mark.slow
def test_imagenet_caffe_loads_the_caffe_vgg16_from_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert (
        imagenet_weights_path("imagenet_caffe")
        == tmp_path / "torch" / "hub" / "checkpoints" / VGG16_CAFFE_FILE
    )
    state = random_vgg16_file(tmp_path / "torch" / "hub" / "checkpoints", VGG16_CAFFE_FILE)
    net = create_model("fcn32s", backbone="vgg16", geometry="faithful", pretrained="imagenet_caffe")
    own = net.state_dict()
    assert torch.equal(own["backbone.features.0.weight"], state["features.0.weight"])
    assert torch.equal(own["backbone.features.28.bias"], state["features.28.bias"])
    assert torch.equal(own["backbone.fc.fc6.weight"], state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(own["backbone.fc.fc7.weight"], state["classifier.3.weight"].view(4096, 4096, 1, 1))


@pytest.mark.parametrize(("experiment", "pretrained", "space"), [
    ("table2_voc_heavy", "imagenet_caffe", "caffe"),  # its lrs were tuned for Caffe's 0-255 BGR input
    ("table2_voc", "imagenet", "torchvision"),
])  # fmt: skip
def test_voc_presets_pick_the_weights_and_so_the_input_space(experiment, pretrained, space, tmp_path):
    for model in ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"):
        cfg = train_cfg("table2", [f"experiment={experiment}", f"model={model}"], tmp_path)
        assert (cfg.model.pretrained, cfg.input_space) == (pretrained, "auto")
        assert resolve_input_space(cfg.input_space, cfg.model.pretrained).name == space


def test_training_from_a_caffe_space_net_stays_in_it(tmp_path, tiny_data):
    """init_from a caffe-space checkpoint: auto follows it into the data, the new checkpoint and eval."""
    parent = saved_module(tmp_path / "parent.ckpt", "caffe")
    extra = ["model=fcn8s", f"init_from={parent}", "trainer.max_epochs=1"]
    extra += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
    results = train(train_cfg("train", tiny_overrides(tiny_data, *extra), tmp_path / "run"))
    assert results["status"] == "ok" and results["input_space"] == "caffe"
    saved = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["input_space"]["name"] == "caffe"
    assert load_module(results["best_checkpoint"]).input_space == INPUT_SPACES["caffe"]
