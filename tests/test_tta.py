"""Test-time inference (fcnlab.models.tta): multi-scale, flip and sliding windows on tiny nets."""

from __future__ import annotations

import pytest
import torch

from fcnlab.errors import FCNLabError
from fcnlab.models import create_model
from fcnlab.models.tta import InferSettings, infer_logits, infer_settings, window_starts

TINY = {"backbone": "vgg16_tiny", "num_classes": 5}


def tiny_net(name: str = "fcn8s", geometry: str = "efficient", seed: int = 0) -> torch.nn.Module:
    """A tiny FCN whose scores are not all zero (score layers start at zero)."""
    torch.manual_seed(seed)
    net = create_model(name, geometry=geometry, **TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    return net


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return tiny_net()


def image(h: int, w: int, n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_single_scale_without_flip_is_the_net_bit_for_bit(net):
    x = image(37, 53, n=2)
    with torch.inference_mode():
        expected = net(x)
        for s in (InferSettings(), InferSettings(mode="slide", crop=64, stride=10)):  # window >= image
            assert torch.equal(infer_logits(net, x, s), expected)


def test_a_slide_window_at_least_the_image_equals_whole_image_tta(net):
    x = image(40, 31)
    whole = InferSettings(scales=(0.75, 1.0, 1.5), flip=True)
    slide = InferSettings(mode="slide", scales=(0.75, 1.0, 1.5), flip=True, crop=61, stride=7)
    with torch.inference_mode():
        assert torch.equal(infer_logits(net, x, slide), infer_logits(net, x, whole))


def test_flip_is_equivariant_and_on_a_mirror_symmetric_image_flip_changes_nothing(net):
    x = image(33, 48)
    flip = InferSettings(flip=True)
    with torch.inference_mode():
        out, out_mirrored = infer_logits(net, x, flip), infer_logits(net, x.flip(-1), flip)
        torch.testing.assert_close(out_mirrored, out.flip(-1), rtol=0, atol=1e-6)
        symmetric = torch.cat([x[..., :24], x[..., :24].flip(-1)], -1)
        plain = net(symmetric).log_softmax(1)
        if torch.equal(net(symmetric), net(symmetric).flip(-1)):
            pytest.skip("the net is mirror-symmetric itself")
        torch.testing.assert_close(
            infer_logits(net, symmetric, flip), (plain.exp() + plain.flip(-1).exp()).div(2).log()
        )


def test_slide_averages_overlapping_windows_and_shifts_the_last_one_inside(net):
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(101, 40, 30) == [0, 30, 60, 61]
    assert window_starts(40, 40, 30) == [0]
    assert window_starts(7, 40, 30) == [0]
    x = image(50, 23)
    s = InferSettings(mode="slide", crop=32, stride=18)  # rows: [0, 18] -> windows 0..32 and 18..50
    with torch.inference_mode():
        out = infer_logits(net, x, s).exp()
        top, bottom = net(x[..., :32, :]).softmax(1), net(x[..., 18:, :]).softmax(1)
    torch.testing.assert_close(out[..., :18, :], top[..., :18, :])
    torch.testing.assert_close(out[..., 18:32, :], (top[..., 18:, :] + bottom[..., :14, :]) / 2)
    torch.testing.assert_close(out[..., 32:, :], bottom[..., 14:, :])


def test_batched_windows_and_mirrors_give_the_one_at_a_time_result(net):
    x = image(45, 61, n=2)
    one = InferSettings(mode="slide", scales=(0.5, 1.25), flip=True, crop=24, stride=16, batch=1)
    many = InferSettings(mode="slide", scales=(0.5, 1.25), flip=True, crop=24, stride=16, batch=7)
    with torch.inference_mode():
        torch.testing.assert_close(infer_logits(net, x, many), infer_logits(net, x, one), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (13, 7), (97, 131)])
@pytest.mark.parametrize(
    "settings",
    [
        InferSettings(),
        InferSettings(scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True),
        InferSettings(mode="slide", crop=32, stride=21),
        InferSettings(mode="slide", scales=(0.5, 1.5), flip=True, crop=32, stride=21, batch=4),
    ],
    ids=["whole", "msflip", "slide", "slide-msflip"],
)
@pytest.mark.parametrize("model", ["fcn8s-efficient", "fcn32s-faithful"])
def test_odd_and_tiny_sizes_work_in_every_mode(size, settings, model, net):
    model_net = net if model == "fcn8s-efficient" else _faithful32()
    x = image(*size)
    with torch.inference_mode():
        out = infer_logits(model_net, x, settings)
    assert out.shape == (1, 5, *size)
    assert torch.isfinite(out).all()
    if not settings.is_single_pass:  # log-probabilities: they sum to 1 after exp
        torch.testing.assert_close(out.exp().sum(1), torch.ones(1, *size))


_FAITHFUL = {}


def _faithful32() -> torch.nn.Module:
    if "net" not in _FAITHFUL:
        _FAITHFUL["net"] = tiny_net("fcn32s", "faithful")
    return _FAITHFUL["net"]


def test_settings_from_a_config_block():
    s = infer_settings(
        {"mode": "slide", "scales": [0.5, 1], "flip": True, "crop": 64, "stride": 64, "batch": 2}
    )
    assert s == InferSettings("slide", (0.5, 1.0), True, 64, 64, 2)
    assert s.label == "slide+ms+flip"
    assert infer_settings(None).label == "single-scale"
    assert infer_settings({"scales": [1.0], "flip": True}).label == "flip"
    assert infer_settings({"scales": 1.5}).scales == (1.5,)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"scales": []}, "infer.scales=[]: give at least one scale, e.g. [1.0]"),
        (
            {"scales": [1.0, -0.5]},
            "infer.scales=[1.0,-0.5]: every scale must be a number > 0, e.g. [0.5,1.0,1.5]",
        ),
        ({"mode": "tile"}, "infer.mode=tile: unknown; use whole or slide"),
        ({"crop": 0}, "infer.crop=0: must be a whole number >= 1 (the window side in pixels)"),
        ({"stride": 0}, "infer.stride=0: must be a whole number >= 1 (pixels between windows)"),
        ({"flip": "maybe"}, "infer.flip=maybe: must be true or false"),
        ({"batch": 0}, "infer.batch=0: must be a whole number >= 1 (windows per forward pass)"),
    ],
)
def test_bad_settings_are_one_line_naming_the_option(block, message):
    with pytest.raises(FCNLabError) as info:
        infer_settings(block)
    assert str(info.value) == message
