"""The reference release's nets as torchfcn distributes them: read, mapped onto fcnlab's FCN, and
computing what torchfcn's own model computes on the same weights (random ones here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fcnlab.bench.peers import import_torchfcn
from fcnlab.cli.verify import main as verify_main
from fcnlab.data.input_space import INPUT_SPACES
from fcnlab.errors import FCNLabError
from fcnlab.inference.evaluate import evaluate
from fcnlab.inference.predict import predict
from fcnlab.models import create_model, load_staged
from fcnlab.models.weights import TORCHFCN_FILES, read_checkpoint, stored_input_space
from fcnlab.training import load_module
from test_predict import make_cfg

CLASSES = {"fcn32s": "FCN32s", "fcn16s": "FCN16s", "fcn8s": "FCN8s", "fcn8s_atonce": "FCN8sAtOnce"}
SIZES = [(64, 80), (97, 131), (188, 250)]  # the last: a VOC image (375 x 500) at half size, for CI time


def torchfcn():
    """torchfcn, installed by ``make test``; missing under CI=true is a failure, never a skip."""
    module, why = import_torchfcn()
    if module is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"torchfcn is not importable under CI ({why}); make test installs it (make peers)")
        pytest.skip(f"torchfcn not installed ({why}); make peers installs it")
    return module


@torch.no_grad()
def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (convs He-scaled so the logits stay O(1); deconvs too, not bilinear)."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.bias.normal_(0, 0.1)
        elif isinstance(m, nn.ConvTranspose2d):
            m.weight.normal_(0, 1.0 / m.kernel_size[0])
    return net.eval()


def torchfcn_file(folder: Path, variant: str, seed: int = 0) -> tuple[nn.Module, Path]:
    net = randomised(getattr(torchfcn().models, CLASSES[variant])(n_class=21), seed)
    path = folder / TORCHFCN_FILES[variant]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(CLASSES))
def test_imported_nets_equal_torchfcn_at_three_sizes(variant, tmp_path):
    peer, path = torchfcn_file(tmp_path, variant, seed=list(CLASSES).index(variant))
    module = load_module(str(path), name="fcn8s_atonce" if variant == "fcn8s_atonce" else None)
    ours = module.model.eval()
    assert ours.name == variant and module.input_space == INPUT_SPACES["caffe"]
    assert ours.backbone.geometry == "faithful" and ours.num_classes == 21
    generator = torch.Generator().manual_seed(7)
    for h, w in SIZES:
        pixels = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=generator)
        x = module.input_space.normalize(pixels)
        with torch.inference_mode():
            expected, got = peer(x), ours(x)
        diff = (got - expected).abs().max().item()
        scale = expected.abs().max().item()
        print(f"{variant} {h}x{w}: max |fcnlab - torchfcn| = {diff:.3g} (logit scale {scale:.3g})")
        assert got.shape == expected.shape == (1, 21, h, w)
        assert scale > 1e-2  # random weights that leave real signal, not all-zero logits
        assert diff <= 2e-5 * max(1.0, scale)  # float32 rounding, relative to the logits


@pytest.mark.slow
def test_variant_is_read_from_the_keys_and_model_name_picks_at_once(tmp_path):
    torchfcn()
    for variant in ("fcn32s", "fcn16s", "fcn8s"):
        _, path = torchfcn_file(tmp_path, variant)
        ckpt = read_checkpoint(path, "ckpt")
        assert (ckpt.format, ckpt.variant) == ("torchfcn", variant)
        assert stored_input_space(ckpt)["name"] == "caffe"  # so train's auto input space follows it
        path.unlink()
    _, path = torchfcn_file(tmp_path, "fcn16s")
    with pytest.raises(FCNLabError, match=r"its layers hold a torchfcn fcn16s, not fcn8s_atonce"):
        load_module(str(path), name="fcn8s_atonce")


@pytest.mark.slow
def test_a_torchfcn_net_starts_staged_training(tmp_path):
    """init_from=<torchfcn fcn16s file> into fcnlab's FCN-8s: every shared tensor copied."""
    torchfcn()
    _, path = torchfcn_file(tmp_path, "fcn16s")
    with torch.no_grad():  # the release nets' final upsampling is bilinear, which fcnlab keeps fixed
        state = torch.load(path)
        state["upscore16.weight"] = torchfcn().models.FCN16s().upscore16.weight
        torch.save(state, path)
    net = create_model("fcn8s", backbone="vgg16", geometry="faithful", learn_upsampling=True)
    fresh = load_staged(net, path)
    assert fresh == [
        "fusions.pool3.score.bias",
        "fusions.pool3.score.weight",
        "fusions.pool3.upsample.deconv.weight",
    ]
    assert torch.equal(net.state_dict()["fusions.pool4.score.weight"], state["score_pool4.weight"])
    fixed = create_model("fcn8s", backbone="vgg16", geometry="faithful", learn_upsampling=False)
    with pytest.raises(FCNLabError, match=r"fusions.pool4.upsample.deconv.weight holds learned upsampling"):
        load_staged(fixed, path)  # random 2x deconv: fcnlab's fixed bilinear one would be another net


@pytest.mark.slow
def test_fcnlab_eval_and_predict_take_a_torchfcn_file_with_caffe_input(tmp_path, tiny_data):
    peer, path = torchfcn_file(tmp_path / "w", "fcn32s")
    cfg = make_cfg(
        "eval",
        [f"ckpt={path}", "data=voc_sbd", f"data.root={tiny_data}", "data.num_workers=0"],
        tmp_path / "job",
    )
    result = evaluate(cfg)
    assert result["input_space"] == "caffe" and result["model"] == "fcn32s"
    assert set(result["metrics"]) == {"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}
    assert all(0.0 <= v <= 1.0 for v in result["metrics"].values())
    assert (tmp_path / "job" / "eval.json").is_file()

    image = next(Path(tiny_data, "VOCdevkit", "VOC2011", "JPEGImages").glob("*.jpg"))
    record = predict(
        make_cfg("predict", [f"ckpt={path}", f"input={image}", f"output={tmp_path / 'p'}"], tmp_path)
    )
    assert record["input_space"]["name"] == "caffe" and not record["errors"]
    rgb = torch.from_numpy(np.asarray(Image.open(image).convert("RGB")).copy()).permute(2, 0, 1)
    bgr = rgb.flip(0).float() - torch.tensor([104.00699, 116.66877, 122.67892]).view(3, 1, 1)
    with torch.inference_mode():
        expected = peer(bgr[None])[0].argmax(0).numpy()  # torchfcn's own net, Caffe input by hand
    assert (np.asarray(Image.open(tmp_path / "p" / f"{image.stem}.png")) == expected).mean() > 0.999


@pytest.mark.slow
def test_verify_prints_one_line_per_net_found(tmp_path, tiny_data, capsys):
    torchfcn_file(tmp_path / "w", "fcn32s")
    rc = verify_main(["--voc", tiny_data, "--weights", str(tmp_path / "w"), "--out", str(tmp_path / "o"),
                      "data.num_workers=0"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fcn32s") and "fcn32s_from_caffe.pth" in lines[0]
    assert "mean_iu" in lines[0] and "(expected 63.63)" in lines[0]
    assert rc == 1  # random weights: far from the release's numbers, and it says so
    assert "DIFFERS" in lines[0]


def test_verify_without_nets_says_where_to_put_them(tmp_path, capsys):
    assert verify_main(["--voc", str(tmp_path), "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no release net in {tmp_path}; put torchfcn's")
