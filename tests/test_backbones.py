"""Every backbone of the family (``list_backbones()``): shapes at any size for every model and geometry,
torchvision's weights by name, convolutionalization against torchvision's own classifiers, geometry
derived from the real layers (the release's FCN-AlexNet, the paper's receptive fields)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

from fcnlab.data.input_space import INPUT_SPACES, resolve_input_space
from fcnlab.errors import FCNLabError
from fcnlab.models import (
    backbone_spec,
    convolutionalize,
    create_model,
    list_backbones,
    list_models,
    load_staged,
)
from fcnlab.models.backbone import count_weights
from fcnlab.models.geometry import GEOMETRIES, CeilMaxPool2d, CoordMap, walk
from fcnlab.models.weights import PRETRAINED_FILES

TINY = [b for b in list_backbones() if b.endswith("_tiny")]
FULL = [b for b in list_backbones() if not b.endswith("_tiny")]
SIZES = [(1, 1), (2, 3), (17, 31), (97, 53), (224, 224), (375, 500), (1, 700)]
SKIPS = {
    "vgg16": ("pool4", "pool3"),
    "alexnet": ("pool2", "pool1"),
    "googlenet": ("inception4e", "inception3b"),
}


def family(backbone: str) -> str:
    return backbone.removesuffix("_tiny")


def torchvision_classifier(backbone: str) -> nn.Module:
    """torchvision's own model of a full-size backbone, random weights (GoogLeNet with its aux heads,
    as its ImageNet file holds them, and non-trivial BatchNorm statistics)."""
    torch.manual_seed(0)
    if backbone == "googlenet":
        net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
        for bn in net.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.normal_(0, 0.1)
        return net.eval()
    return getattr(torchvision.models, backbone)(weights=None).eval()


def googlenet_features(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A GoogLeNet classifier's own layers up to inception5b (before the average pooling)."""
    for name, layer in classifier.named_children():
        if name == "avgpool":
            return x
        x = layer(x)
    raise AssertionError("no avgpool")


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("backbone", TINY)
def test_tiny_output_matches_input_size(backbone, name, geometry):
    model = create_model(name, backbone=backbone, geometry=geometry, num_classes=5).eval()
    assert tuple(model.fusions) == SKIPS[family(backbone)][: len(model.fusions)]
    with torch.inference_mode():
        for h, w in SIZES:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 5, h, w), (h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("backbone", ["alexnet_tiny", "googlenet_tiny"])
def test_fcn8s_every_small_height_and_each_side_of_every_stride(backbone, geometry):
    """Crops and map sizes hold for heights 1..40 and on each side of every multiple of 32 up to 320
    (tests/test_models.py walks every height to 1024 for vgg16_tiny)."""
    model = create_model("fcn8s", backbone=backbone, geometry=geometry, num_classes=2).eval()
    heights = sorted({*range(1, 41), *(h + d for h in range(64, 321, 32) for d in (-1, 0, 1))})
    with torch.inference_mode():
        for h in heights:
            assert model(torch.randn(1, 3, h, 1)).shape[-2:] == (h, 1), h


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("backbone", FULL)
def test_full_size_output_matches_input_size(backbone, geometry):
    for name in list_models():
        model = create_model(name, backbone=backbone, geometry=geometry).eval()
        assert tuple(model.fusions) == SKIPS[backbone][: len(model.fusions)]
        with torch.inference_mode():
            for h, w in [(1, 1), (37, 61)]:
                assert model(torch.randn(1, 3, h, w)).shape == (1, 21, h, w), (name, h, w)


def test_faithful_fcn_alexnet_equals_the_reference_release():
    """voc-fcn-alexnet: conv1 padded by 100, ceil pools, fc6 6×6; upscore kernel 63, stride 32, crop 18."""
    net = create_model("fcn32s", backbone="alexnet", geometry="faithful")
    maps = net.backbone.coord_maps
    assert (maps["pool1"].stride, maps["pool1"].offset) == (8, -91)
    assert (maps["pool2"].stride, maps["pool2"].offset) == (16, -83)
    assert (maps["fc7"].stride, maps["fc7"].offset) == (32, 13)
    assert net.backbone.fc.fc6.kernel_size == (6, 6) and net.backbone.fc.fc6.padding == (0, 0)
    assert net.backbone.features[0].padding == (100, 100)
    assert all(m.ceil_mode for m in net.backbone.features if isinstance(m, nn.MaxPool2d))
    assert (net.upscore.kernel_size, net.upscore.factor, net.crop) == (63, 32, 18)


@pytest.mark.parametrize(
    ("backbone", "rf", "parameters"),
    [("vgg16", 404, 134.26), ("alexnet", 355, 57.00), ("googlenet", 379, 5.60)],
)
def test_receptive_field_stride_and_parameters_come_from_the_built_net(backbone, rf, parameters):
    """The paper's 404 (VGG16) and 355 (AlexNet) count fc6 at stride 32; torchvision's GoogLeNet sees
    379 px at inception5b (its "5×5" branches are 3×3, pool4 2×2: see the next test for the paper's)."""
    net = create_model("fcn32s", backbone=backbone)
    out = net.backbone.coord_maps[net.backbone.out]
    assert (out.rf, out.stride, net.output_stride) == (rf, 32, 32)
    assert round(count_weights(net.backbone) / 1e6, 2) == parameters


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2)])
def test_ceil_pooling_as_export_runs_it_is_the_same_pooling(kernel, stride):
    """The padded floor pooling CeilMaxPool2d runs under export gives ceil mode's output, every size."""
    pool = CeilMaxPool2d(kernel, stride)
    for n in range(kernel - 1, 40):
        x = torch.randn(1, 2, n, n + 5)
        torch.testing.assert_close(
            pool.padded_floor(x), torch.nn.functional.max_pool2d(x, kernel, stride, ceil_mode=True)
        )


def test_walk_gives_the_papers_googlenet_receptive_field():
    """With true 5×5 branches and a 3×3 pool4 (the paper's GoogLeNet) the walk gives 715 px at
    inception5b and 907 with the 7×7 average pooling, the paper's Table 1 value."""
    classifier = backbone_spec("googlenet").classifier()
    for block in classifier.children():
        if isinstance(block, Inception):
            conv = block.branch3[1].conv
            block.branch3[1].conv = nn.Conv2d(conv.in_channels, conv.out_channels, 5, padding=2, bias=False)
    classifier.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    m = CoordMap()
    for name, layer in classifier.named_children():
        if name == "avgpool":
            break
        m = walk(layer, m)
    assert (m.rf, m.stride) == (715, 32)
    assert m.conv(7).rf == 907


@pytest.mark.parametrize("backbone", FULL)
def test_torchvision_weights_load_by_name(backbone, tmp_path, monkeypatch):
    """A torchvision state dict by path and by its real file name in $TORCH_HOME: every backbone tensor
    equals the file's (fc layers reshaped); a missing file is one line naming where it goes."""
    reference = torchvision_classifier(backbone)
    state = reference.state_dict()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(
        FCNLabError, match=f"hub/checkpoints/{PRETRAINED_FILES[backbone]['imagenet']} is missing"
    ):
        create_model("fcn32s", backbone=backbone, pretrained="imagenet")
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / PRETRAINED_FILES[backbone]["imagenet"])
    net = create_model("fcn32s", backbone=backbone, pretrained="imagenet")
    ours = net.backbone.state_dict()
    expected = {
        k: v
        for k, v in state.items()
        if not k.startswith(("classifier.6.", "fc.", "aux")) and not k.endswith("num_batches_tracked")
    }
    fc = {"classifier.0": "fc.fc6", "classifier.3": "fc.fc7"} if backbone == "vgg16" else {}
    fc |= {"classifier.1": "fc.fc6", "classifier.4": "fc.fc7"} if backbone == "alexnet" else {}
    checked = 0
    for key, value in expected.items():
        layer, _, param = key.rpartition(".")
        ours_key = f"{fc[layer]}.{param}" if layer in fc else key
        ours_key = ours_key if ours_key.startswith(("fc.", "features.")) else f"features.{key}"  # GoogLeNet
        assert torch.equal(ours[ours_key].reshape(value.shape), value), key
        checked += 1
    assert checked == len([k for k in ours if not k.endswith("num_batches_tracked")])


@pytest.mark.parametrize("backbone", ["vgg16", "alexnet"])
def test_convolutionalized_fc_layers_reproduce_torchvisions_logits(backbone):
    """fc6/fc7/fc8 as convs are the Linear weights reshaped; on the native input the kept head gives
    torchvision's logits, and on a larger input one more score per 32 px."""
    reference = torchvision_classifier(backbone)
    spec = backbone_spec(backbone)
    ours = spec.classifier().eval()
    ours.load_state_dict(reference.state_dict())
    k = spec.pool5_size
    fc = convolutionalize(ours.classifier, spec.widths[-1], k, keep_head=True).eval()
    linears = [m for m in reference.classifier if isinstance(m, nn.Linear)]
    convs = [m for m in fc if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(k, k), (1, 1), (1, 1)]
    for conv, linear in zip(convs, linears, strict=True):
        assert torch.equal(conv.weight.flatten(1), linear.weight) and torch.equal(conv.bias, linear.bias)
    x = torch.randn(2, 3, spec.native_input, spec.native_input)
    with torch.no_grad():
        logits = reference(x)
        torch.testing.assert_close(ours(x), logits)
        heat = fc(ours.features(x))
        assert heat.shape == (2, 1000, 1, 1)
        torch.testing.assert_close(heat.flatten(1), logits, atol=1e-5, rtol=1e-4)
        wide = fc(ours.features(torch.randn(1, 3, spec.native_input, spec.native_input + 64)))
    assert wide.shape[-2:] == (1, 3)


def test_googlenet_reproduces_torchvisions_logits_in_its_input_space():
    """torchvision's GoogLeNet weights in our layout: same logits; its transform_input is the googlenet
    input space; the head as a 1×1 conv scores every position, and their mean is the logits."""
    reference = torchvision_classifier("googlenet")
    ours = backbone_spec("googlenet").classifier().eval()
    state = reference.state_dict()
    ours.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux")})
    pixels = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    torchvision_input = INPUT_SPACES["torchvision"].normalize(pixels)
    with torch.no_grad():
        torch.testing.assert_close(ours(torchvision_input), reference(torchvision_input))
        reference.transform_input = True
        expected = reference(torchvision_input)
        got = ours(INPUT_SPACES["googlenet"].normalize(pixels))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        head = convolutionalize(nn.Sequential(ours.dropout, ours.fc), 1024, 1, keep_head=True).eval()
        dense = head(googlenet_features(ours, INPUT_SPACES["googlenet"].normalize(pixels)))
        assert dense.shape == (2, 1000, 7, 7)
        torch.testing.assert_close(dense.mean((2, 3)), expected, atol=1e-4, rtol=1e-4)
    assert resolve_input_space("auto", "imagenet", backbone="googlenet").name == "googlenet"
    assert resolve_input_space("auto", "imagenet", backbone="alexnet").name == "torchvision"
    with pytest.raises(FCNLabError, match=r"imagenet \(googlenet\) expects googlenet input"):
        resolve_input_space("torchvision", "imagenet", backbone="googlenet")


@pytest.mark.parametrize("backbone", TINY)
def test_tiny_classifier_convolutionalizes_to_its_own_logits(backbone):
    spec = backbone_spec(backbone)
    classifier = spec.classifier(num_classes=20).eval()
    x = torch.randn(2, 3, spec.native_input, spec.native_input)
    with torch.no_grad():
        logits = classifier(x)
        if backbone.startswith("googlenet"):  # global pooling: the 1×1 head's mean over positions
            head = convolutionalize(nn.Sequential(classifier.fc), spec.out_channels, 1, keep_head=True)
            dense = head(googlenet_features(classifier, x)).mean((2, 3))
        else:
            head = convolutionalize(classifier.classifier, spec.widths[-1], spec.pool5_size, keep_head=True)
            dense = head(classifier.features(x)).flatten(1)
    torch.testing.assert_close(dense, logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backbone", TINY)
def test_staged_init_on_every_backbone_adds_a_silent_branch(backbone):
    """32s -> 16s -> 8s on any backbone: the parent's weights are copied and the new tap's branch
    starts at zero, so the finer net's output does not depend on that tap's features yet."""
    torch.manual_seed(0)
    parent = create_model("fcn32s", backbone=backbone, geometry="efficient", num_classes=4).eval()
    for p in parent.parameters():
        nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 45, 67)
    for name, tap in zip(("fcn16s", "fcn8s"), SKIPS[family(backbone)], strict=True):
        child = create_model(name, backbone=backbone, geometry="efficient", num_classes=4).eval()
        new = load_staged(child, parent.state_dict())
        assert new and all(k.startswith(f"fusions.{tap}.") for k in new), new
        with torch.no_grad():
            out = child(x)
            hook = child.fusions[tap].score.register_forward_pre_hook(lambda m, a: (a[0] * 0 + 7.0,))
            perturbed = child(x)
            hook.remove()
        torch.testing.assert_close(out, perturbed)
        assert out.abs().max() > 0
        parent = child


def test_googlenet_batchnorm_stays_frozen_in_training(tmp_path):
    """GoogLeNet's BatchNorms hold the classifier's statistics and weights, in training as in eval."""
    classifier = backbone_spec("googlenet_tiny").classifier().train()
    classifier(torch.randn(4, 3, 96, 96) * 3 + 1)  # statistics that are not the initial 0 / 1
    path = tmp_path / "googlenet_tiny.pth"
    torch.save(classifier.state_dict(), path)
    net = create_model("fcn32s", backbone="googlenet_tiny", num_classes=3, pretrained=str(path))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    frozen = net.backbone.features.conv1.bn
    torch.testing.assert_close(frozen.running_var, classifier.conv1.bn.running_var)
    assert frozen.eps == classifier.conv1.bn.eps == 1e-3
    torch.nn.init.normal_(net.score_fr.weight)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net.eval()(x)
    trained = net.train()(x)
    torch.testing.assert_close(trained, expected)  # no batch statistics in training
    trained.sum().backward()
    assert torch.equal(frozen.running_var, classifier.conv1.bn.running_var)
    assert net.backbone.features.conv1.conv.weight.grad is not None
    assert not any("bn." in name for name, _ in net.named_parameters())
