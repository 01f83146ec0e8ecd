"""``fcnlab-bench``: a quick run's JSON schema, FLOP counting, ratios, bad input, torchfcn stub.

No timing is asserted anywhere: speed targets are reported by the bench itself, never tested.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys

import pytest
import torch
from torch import nn

from fcnlab.bench import measure, report
from fcnlab.bench.peers import build_peer, import_torchfcn
from fcnlab.cli.bench import main

ROW_KEYS = {
    "impl",
    "model",
    "geometry",
    "backbone",
    "height",
    "width",
    "params",
    "forward_ms",
    "train_step_ms",
    "gflop",
    "train_gflop",
    "forward_gflops",
    "peak_fraction",
    "peak_rss_mib",
    "rss_model_mib",
    "forward_ratio",
    "train_step_ratio",
    "gflop_ratio",
    "peer",
}
TOP_KEYS = {
    "rows",
    "peak_gflops",
    "peak_conv3x3_gflops",
    "peak_matmul_gflops",
    "flop_counter_check",
    "loader_images_per_s",
    "train_images_per_s",
    "loader_over_train",
    "confusion_update_ms_per_image",
    "segmentation_scores_ms",
    "table2_wall",
    "targets",
    "machine",
    "versions",
    "git_sha",
    "timestamp",
    "settings",
    "torchfcn",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, tiny_data) -> dict:
    """One quick run: tiny backbone, 64x64, FCN-8s in both geometries, no torchfcn (about 15 s)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    main(
        [
            "--quick",
            "--sizes",
            "64x64",
            "--backbone",
            "vgg16_tiny",
            "--models",
            "fcn8s",
            "--peers",
            "--out",
            str(out),
            "--runs-dir",
            str(out.parent / "no_runs"),
            "--override",
            f"data.root={tiny_data}",
            "--override",
            "data.generate=null",
        ]
    )
    return json.loads(out.read_text())


def test_quick_run_schema(quick):
    assert set(quick) >= TOP_KEYS
    measured = [(r["model"], r["geometry"]) for r in quick["rows"]]
    assert measured == [("fcn8s", "faithful"), ("fcn8s", "efficient")]
    for row in quick["rows"]:
        assert set(row) >= ROW_KEYS, ROW_KEYS - set(row)
        for key in ("forward_ms", "train_step_ms", "gflop", "train_gflop", "peak_rss_mib", "params"):
            assert row[key] > 0, key
        assert row["train_gflop"] > row["gflop"]  # backward costs about twice the forward
        assert row["forward_gflops"] == pytest.approx(row["gflop"] / row["forward_ms"] * 1000)
        assert row["peak_fraction"] == pytest.approx(row["forward_gflops"] / quick["peak_conv3x3_gflops"])
        assert row["peer"] is None and row["forward_ratio"] is None  # no torchfcn asked for
    assert quick["peak_gflops"] == quick["peak_conv3x3_gflops"] > 0
    assert quick["loader_images_per_s"] > 0 and quick["train_images_per_s"] > 0
    assert quick["table2_wall"] is None  # an empty runs dir: reported as absent, never invented
    assert quick["machine"]["cores"] >= 1 and quick["versions"]["torch"] == torch.__version__
    assert {t["target"] for t in quick["targets"]} and all("met" in t for t in quick["targets"])


def test_faithful_costs_more_flops_than_efficient(quick):
    faithful, efficient = quick["rows"]  # pad 100 makes every map larger
    assert faithful["gflop"] > efficient["gflop"] and faithful["train_gflop"] > efficient["train_gflop"]


def test_flop_counter_matches_the_analytic_conv_count(quick):
    check = quick["flop_counter_check"]
    assert check["counted"] == check["analytic"]
    conv = nn.Conv2d(16, 32, 3, padding=1)
    with torch.inference_mode():
        counted = measure.count_flops(lambda: conv(torch.zeros(1, 16, 20, 24)))
    assert counted == measure.conv_flops(16, 32, 3, 20, 24) == 2 * 16 * 32 * 9 * 20 * 24


def test_ratios_follow_from_the_rows(quick):
    rows = copy.deepcopy(quick["rows"])
    peer = {**rows[0], "impl": "torchfcn", "geometry": "faithful", "forward_ms": 7.0, "train_step_ms": 11.0}
    rows.append(peer)
    report.add_derived(rows, quick["peak_conv3x3_gflops"])
    for row in rows:
        if row["impl"] == "fcnlab" and row["model"] == peer["model"]:
            assert row["peer"] == f"torchfcn {peer['model']}"
            assert row["forward_ratio"] == pytest.approx(row["forward_ms"] / 7.0)
            assert row["train_step_ratio"] == pytest.approx(row["train_step_ms"] / 11.0)
            assert row["gflop_ratio"] == pytest.approx(row["gflop"] / peer["gflop"])
        elif row["impl"] == "fcnlab":
            assert row["forward_ratio"] is None


@pytest.mark.parametrize(
    "argv", [["--models", "fcn99s"], ["--sizes", "big"], ["--peers", "fcn8s_atonce"], ["--backbone", "vgg19"]]
)
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("torchfcn") is None, reason="torchfcn not installed")
def test_torchfcn_imports_with_the_stub_and_runs():
    had_fcn = "fcn" in sys.modules
    torchfcn, why = import_torchfcn()
    try:
        assert torchfcn is not None, why
        net = build_peer(torchfcn, "fcn32s").eval()
        with torch.inference_mode():
            out = net(torch.randn(1, 3, 16, 16))
        assert out.shape == (1, 21, 16, 16) and math.isfinite(out.sum().item())
    finally:
        if not had_fcn:
            sys.modules.pop("fcn", None)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_input", "channels_last_weights", "batch"])
def test_gemm_fc6_equals_the_convolution(layout, monkeypatch):
    # fc6 runs as unfold + matmul on CPU (measured faster, less memory); values and gradients must not change.
    import torch.nn.functional as F

    from fcnlab.models.convolutionalize import GemmConv2d

    calls = []
    unfold = F.unfold
    monkeypatch.setattr(F, "unfold", lambda *a, **k: calls.append(1) or unfold(*a, **k))

    torch.manual_seed(0)
    gemm = GemmConv2d(8, 64, 5, padding=2)
    plain = nn.Conv2d(8, 64, 5, padding=2)
    plain.load_state_dict(gemm.state_dict())
    x = torch.randn(3 if layout == "batch" else 1, 8, 4, 6)  # batch 3: 72 px > 64 channels, plain path
    if layout == "channels_last_input":
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == "channels_last_weights":
        gemm, plain = (m.to(memory_format=torch.channels_last) for m in (gemm, plain))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = gemm(xa), plain(xb)
    assert bool(calls) == (layout in ("contiguous", "channels_last_input"))  # which path ran
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    (a * b.detach()).sum().backward()
    (b * b.detach()).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gemm.weight.grad, plain.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(gemm.bias.grad, plain.bias.grad, atol=1e-4, rtol=1e-5)
