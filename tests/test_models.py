"""FCN models: shapes at any size, bilinear upsampling, convolutionalization, freezing, staged init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fcnlab.errors import FCNLabError
from fcnlab.models import (
    BilinearUpsample,
    backbone_options,
    backbone_spec,
    bilinear_kernel,
    convolutionalize,
    create_model,
    list_models,
    load_staged,
)
from fcnlab.models.backbone import fold_batchnorm
from fcnlab.models.vgg import VGGClassifier, VGGSpec, vgg16_tiny_spec

GEOMETRIES = ("faithful", "efficient")
SIZES = [(1, 1), (2, 3), (17, 31), (97, 53), (375, 500), (224, 224)]


def tiny(name: str, **kw) -> torch.nn.Module:
    return create_model(name, backbone="vgg16_tiny", **kw)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", list_models())
def test_tiny_output_matches_input_size(name, geometry):
    model = tiny(name, geometry=geometry, num_classes=5).eval()
    with torch.inference_mode():
        for h, w in [*SIZES, (1024, 1024), (1, 1024)]:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 5, h, w), (h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_every_height_up_to_1024(name, geometry):
    """Crops and map sizes hold for heights 1..1024 (a 1-channel-wide net keeps this fast): all of
    them for the efficient geometry; for the faithful one (padding 100 makes each call dearer) all up
    to 320 and each side of every multiple of 32 above."""
    model = tiny(name, geometry=geometry, num_classes=2, width_divisor=64).eval()
    heights = (
        range(1, 1025)
        if geometry == "efficient"
        else sorted(
            {*range(1, 321), *(h + d for h in range(320, 1025, 32) for d in (-1, 0, 1) if h + d <= 1024)}
        )
    )
    with torch.inference_mode():
        for h in heights:
            assert model(torch.randn(1, 3, h, 1)).shape[-2:] == (h, 1), h


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", list_models())
def test_vgg16_output_matches_input_size(name, geometry):
    model = create_model(name, geometry=geometry).eval()
    with torch.inference_mode():
        for h, w in [(1, 1), (37, 61)] + ([(375, 500)] if name == "fcn8s" else []):
            assert model(torch.randn(1, 3, h, w)).shape == (1, 21, h, w)


def test_faithful_crops_equal_the_reference_release():
    """The derived crops equal the constants of the Caffe nets (voc-fcn32s/16s/8s)."""
    assert create_model("fcn32s").crop == 19
    m16 = create_model("fcn16s")
    assert (m16.fusions["pool4"].crop_skip, m16.crop) == (5, 27)
    m8 = create_model("fcn8s")
    assert (m8.fusions["pool4"].crop_skip, m8.fusions["pool3"].crop_skip, m8.crop) == (5, 9, 31)


def test_batch_of_images_is_independent():
    model = tiny("fcn8s", geometry="efficient").eval()
    torch.nn.init.normal_(model.score_fr.weight)
    x = torch.randn(3, 3, 40, 56)
    with torch.inference_mode():
        whole = model(x)
        one = model(x[1:2])
    torch.testing.assert_close(whole[1:2], one, atol=1e-5, rtol=1e-5)


# --- bilinear upsampling -------------------------------------------------------------------------


def test_bilinear_kernel_values():
    torch.testing.assert_close(
        bilinear_kernel(2)[0] / bilinear_kernel(2)[0].max(), torch.tensor([0.25, 0.75, 0.75, 0.25]) / 0.75
    )
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(2), torch.outer(taps, taps))
    taps3 = torch.tensor([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    torch.testing.assert_close(bilinear_kernel(3), torch.outer(taps3, taps3))
    for f in (1, 2, 3, 8, 16, 32):
        k = bilinear_kernel(f)
        assert k.shape == (2 * f - f % 2,) * 2
        torch.testing.assert_close(k, k.T)
    with pytest.raises(ValueError):
        bilinear_kernel(0)


@pytest.mark.parametrize("factor", [2, 4, 8, 32])
@pytest.mark.parametrize("learnable", [True, False])
def test_upsampling_is_bilinear_interpolation(factor, learnable):
    """Interior outputs equal F.interpolate(bilinear) shifted by factor/2, channel by channel."""
    up = BilinearUpsample(3, factor, learnable)
    x = torch.randn(1, 3, 6, 7)
    y = up(x).detach()
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    s, m = factor // 2, factor  # shift; margin where borders differ
    torch.testing.assert_close(
        y[..., s + m : s + 5 * factor, s + m : s + 6 * factor],
        ref[..., m : 5 * factor, m : 6 * factor],
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_constant_map_stays_constant_inside(factor):
    up = BilinearUpsample(21, factor, learnable=False)
    y = up(torch.full((1, 21, 5, 5), 3.0))
    k = up.kernel_size
    interior = y[..., k:-k, k:-k]
    torch.testing.assert_close(interior, torch.full_like(interior, 3.0))


def test_learnable_and_fixed_upsampling_agree_and_do_not_mix_channels():
    x = torch.randn(2, 4, 5, 6)
    learn, fixed = BilinearUpsample(4, 2, True), BilinearUpsample(4, 2, False)
    torch.testing.assert_close(learn(x), fixed(x))
    x[:, 1:] = 0
    assert learn(x)[:, 1:].abs().max() == 0
    assert sum(p.numel() for p in fixed.parameters()) == 0
    assert "weight" not in fixed.state_dict()


@pytest.mark.parametrize("factor", [2, 3, 8, 32])
@pytest.mark.parametrize(("offset", "size"), [(0, None), (5, (9, 11)), (19, (20, 7))])
def test_fixed_upsampling_window_is_the_cropped_transposed_convolution(factor, offset, size):
    """The separable form computes exactly the window of the depthwise deconvolution, gradients too."""
    up = BilinearUpsample(3, factor, learnable=False)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    k = bilinear_kernel(factor).double().expand(3, 1, -1, -1)
    full = F.conv_transpose2d(x, k, stride=factor, groups=3)
    assert full.shape[-2:] == (up.full_size(4), up.full_size(5))
    h, w = size or (full.shape[-2] - offset, full.shape[-1] - offset)
    if offset + h > full.shape[-2] or offset + w > full.shape[-1]:
        with pytest.raises(RuntimeError, match="cannot cover"):
            up(x, offset, (h, w))
        return
    ref = full[..., offset : offset + h, offset : offset + w]
    got = up(x, offset, (h, w))
    torch.testing.assert_close(got, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(ref, x, g)[0])
    learnable = BilinearUpsample(3, factor, learnable=True).double()
    torch.testing.assert_close(learnable(x, offset, (h, w)), ref)


# --- convolutionalization ------------------------------------------------------------------------


def _check_convolutionalized(classifier, in_channels, k, native):
    classifier.eval()
    fc = convolutionalize(classifier.classifier, in_channels, k, keep_head=True).eval()
    x = torch.randn(2, 3, native, native)
    with torch.no_grad():
        logits = classifier(x)
        heat = fc(classifier.features(x))
        assert heat.shape[-2:] == (1, 1)
        torch.testing.assert_close(heat.flatten(1), logits, atol=1e-5, rtol=1e-4)
        big = fc(classifier.features(torch.randn(1, 3, native + 64, native + 96)))
    assert big.shape[-2:] == (1 + 2, 1 + 3)  # one more column per 32 px


def test_convolutionalized_tiny_vgg_gives_classifier_logits():
    spec = vgg16_tiny_spec()
    _check_convolutionalized(
        VGGClassifier(spec, num_classes=20), spec.widths[-1], spec.pool5_size, spec.native_input
    )


def test_convolutionalized_torchvision_vgg16_gives_classifier_logits():
    vgg = torchvision.models.vgg16(weights=None)
    _check_convolutionalized(vgg, 512, 7, 224)


def test_convolutionalize_rejects_wrong_kernel():
    with pytest.raises(ValueError, match="kernel_size"):
        convolutionalize(torchvision.models.vgg16().classifier, 512, 6)


def test_fold_batchnorm_keeps_eval_outputs():
    spec = vgg16_tiny_spec()
    bn = VGGClassifier(spec, num_classes=20, batch_norm=True)
    bn.train()
    with torch.no_grad():  # give the running statistics non-trivial values
        for _ in range(3):
            bn(torch.randn(4, 3, 96, 96) * 2 + 1)
    bn.eval()
    plain = fold_batchnorm(bn).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), bn(x), atol=1e-5, rtol=1e-4)


# --- weights ---------------------------------------------------------------------------------------


def test_torchvision_vgg16_weights_load_by_name(tmp_path, monkeypatch):
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    model = create_model("fcn32s", pretrained=str(path))
    fc6 = model.backbone.fc.fc6
    assert fc6.weight.shape == (4096, 512, 7, 7)
    torch.testing.assert_close(fc6.weight.flatten(1), vgg.classifier[0].weight)
    torch.testing.assert_close(model.backbone.fc.fc7.weight.flatten(1), vgg.classifier[3].weight)
    torch.testing.assert_close(model.backbone.features[28].bias, vgg.features[28].bias)

    # "imagenet" reads torch's hub cache and never downloads.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(FCNLabError, match="missing and nothing is downloaded"):
        create_model("fcn32s", pretrained="imagenet")
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    path.rename(cache / "vgg16-397923af.pth")
    model = create_model("fcn32s", pretrained="imagenet")
    torch.testing.assert_close(model.backbone.features[0].weight, vgg.features[0].weight)


def test_pretrained_of_another_size_is_rejected(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(VGGClassifier(vgg16_tiny_spec(width_divisor=4)).state_dict(), path)
    with pytest.raises(FCNLabError, match="another backbone size"):
        tiny("fcn32s", pretrained=str(path))


@pytest.mark.parametrize("name", list_models())
def test_freeze_backbone_leaves_only_head_trainable(name):
    model = tiny(name, freeze_backbone=True, geometry="efficient")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("backbone.") for n in trainable)
    if name == "fcn32s":
        assert trainable == {"score_fr.weight", "score_fr.bias"}
    model(torch.randn(2, 3, 48, 40)).sub(1).square().mean().backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    assert model.score_fr.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize(
    ("parent", "child", "new"), [("fcn32s", "fcn16s", "pool4"), ("fcn16s", "fcn8s", "pool3")]
)
def test_staged_init_copies_parent_and_new_branch_adds_zero(parent, child, new, geometry, tmp_path):
    src = tiny(parent, geometry=geometry)
    for p in src.parameters():  # make every tensor distinct from a fresh init
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "parent.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = tiny(child, geometry=geometry)
    left_new = load_staged(dst, path)
    assert left_new and all(k.startswith(f"fusions.{new}.") for k in left_new)
    dst_state = dst.state_dict()
    for key, value in src.state_dict().items():
        assert torch.equal(dst_state[key], value), key

    # The new branch starts at zero: its scores vanish, whatever the pool features are.
    dst.eval()
    x = torch.randn(1, 3, 45, 67)
    feats = dst.backbone(x)
    assert torch.count_nonzero(dst.fusions[new].score(feats[new])) == 0
    scale_hook = dst.fusions[new].score.register_forward_pre_hook(lambda m, a: (a[0] * 0 + 7.0,))
    with torch.no_grad():
        perturbed = dst(x)
    scale_hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(dst(x), perturbed)


def test_staged_init_errors(tmp_path):
    m32, m8 = tiny("fcn32s"), tiny("fcn8s")
    with pytest.raises(FCNLabError, match="no such file"):
        load_staged(m8, tmp_path / "missing.ckpt")
    bad = tmp_path / "truncated.ckpt"
    torch.save(m32.state_dict(), bad)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(FCNLabError, match="truncated"):
        load_staged(m8, bad)
    with pytest.raises(FCNLabError, match="coarser net to a finer"):
        load_staged(m32, m8.state_dict())
    with pytest.raises(FCNLabError, match="not an FCN checkpoint"):
        load_staged(m8, VGGClassifier(vgg16_tiny_spec()).state_dict())
    with pytest.raises(FCNLabError, match="num_classes"):
        load_staged(tiny("fcn8s", num_classes=5), m32.state_dict())


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="fcn16s, fcn32s, fcn8s, fcn8s_atonce"):
        create_model("fcn4s")
    with pytest.raises(ValueError, match="vgg16, vgg16_tiny"):
        create_model("fcn8s", backbone="resnet50")
    with pytest.raises(ValueError, match="faithful, efficient"):
        create_model("fcn8s", geometry="fast")
    with pytest.raises(ValueError, match="width_divisor"):
        create_model("fcn8s", backbone="vgg16_tiny", width_divisor=7)
    with pytest.raises(
        ValueError, match="depth: backbone vgg16_tiny has no such option; valid: width_divisor"
    ):
        create_model("fcn8s", backbone="vgg16_tiny", depth=3)


def test_backbone_defaults_live_with_the_backbone():
    """Options are the backbone's own defaults plus overrides; another backbone's options are refused."""
    assert backbone_options("vgg16_tiny") == {"width_divisor": 8, "pool5_size": 3, "dropout": 0.0}
    tiny_spec = VGGSpec(
        widths=(8, 16, 32, 64, 64), fc_width=512, pool5_size=3, dropout=0.0, nhwc_weights=True
    )
    assert backbone_spec("vgg16_tiny") == backbone_spec("vgg16_tiny", {}) == tiny_spec
    assert backbone_options("vgg16_tiny", {"width_divisor": 4}) == {
        "width_divisor": 4,
        "pool5_size": 3,
        "dropout": 0.0,
    }
    assert backbone_options("vgg16") == {} and backbone_spec("vgg16") == VGGSpec()
    assert tiny("fcn8s").backbone.spec == tiny_spec
    with pytest.raises(FCNLabError, match="width_divisor: backbone vgg16 has no such option; valid: none"):
        backbone_options("vgg16", {"width_divisor": 8, "pool5_size": 3})
