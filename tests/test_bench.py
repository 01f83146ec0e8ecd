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

from fcnlab.bench import aggregate, measure, peak, report, suite
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
    "forward_spread",
    "train_step_spread",
    "forward_runs_ms",
    "train_step_runs_ms",
    "repeats",
    "reliable",
    "unreliable",
}
TOP_KEYS = {
    "rows",
    "peak_gflops",
    "peak_conv3x3_gflops",
    "peak_matmul_gflops",
    "peak_probe_gflops",
    "peak_reference_gflops",
    "peak_source",
    "probe",
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
    """One quick run: tiny backbone, 64x64, FCN-8s in both geometries twice, no torchfcn (about 30 s)."""
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
        assert row["peak_fraction"] == pytest.approx(row["forward_gflops"] / quick["peak_reference_gflops"])
        assert row["peer"] is None and row["forward_ratio"] is None  # no torchfcn asked for
        assert row["repeats"] == 2 and len(row["forward_runs_ms"]) == len(row["train_step_runs_ms"]) == 2
        assert row["forward_ms"] == pytest.approx(sum(row["forward_runs_ms"]) / 2)  # median of two
        assert row["reliable"] == (not row["unreliable"])
    best_row = max(r["forward_gflops"] for r in quick["rows"])
    assert quick["peak_reference_gflops"] == pytest.approx(max(quick["peak_probe_gflops"], best_row))
    assert quick["peak_probe_gflops"] >= quick["peak_conv3x3_gflops"] > 0
    assert quick["peak_source"].startswith("achieved" if best_row > quick["peak_probe_gflops"] else "probe")
    assert quick["probe"] and all(p["gflops"] > 0 for p in quick["probe"])
    assert quick["machine"]["cpu_model"] and quick["settings"]["repeats"] == 2
    assert quick["loader_images_per_s"] > 0 and quick["train_images_per_s"] > 0
    assert quick["table2_wall"] is None  # an empty runs dir: reported as absent, never invented
    assert quick["machine"]["cores"] >= 1 and quick["versions"]["torch"] == torch.__version__
    assert {t["target"] for t in quick["targets"]} and all("met" in t for t in quick["targets"])
    statuses = {t["status"] for t in quick["targets"]}
    assert statuses <= {"pass", "fail", "unreliable", "not measured"}


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
    "argv",
    [
        ["--models", "fcn99s"],
        ["--sizes", "big"],
        ["--peers", "fcn8s_atonce"],
        ["--backbone", "vgg19"],
        ["--repeats", "0"],
        ["--table2-profile", "--model", "fcn4s"],
        ["--table2-profile", "--epochs", "0"],
    ],
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


# -- aggregation, flags and targets on fake timings (no measuring) --


def fake_run(impl, geometry, fwd, train, round_, model="fcn8s", size=(375, 500), gflop=None, rss=3000.0):
    gflop = gflop if gflop is not None else (290.0 if geometry == "faithful" else 160.0)
    return {
        "impl": impl,
        "model": model,
        "geometry": geometry,
        "backbone": "vgg16",
        "height": size[0],
        "width": size[1],
        "params": 1,
        "gflop": gflop,
        "train_gflop": 3 * gflop,
        "threads": 2,
        "forward_ms": fwd,
        "train_step_ms": train,
        "peak_rss_mib": rss,
        "rss_model_mib": 1500.0,
        "round": round_,
    }


def test_runs_become_one_row_with_median_and_spread():
    runs = [
        fake_run("fcnlab", "faithful", f, t, i)
        for i, (f, t) in enumerate([(100, 300), (110, 330), (90, 310)])
    ]
    runs.append(fake_run("fcnlab", "efficient", 60, 200, 0, rss=3100.0))
    faithful, efficient = aggregate.aggregate(runs)
    assert faithful["forward_ms"] == 100 and faithful["train_step_ms"] == 310
    assert faithful["forward_runs_ms"] == [100, 110, 90] and faithful["rounds"] == [0, 1, 2]
    assert faithful["forward_spread"] == pytest.approx(0.2) and faithful[
        "train_step_spread"
    ] == pytest.approx(30 / 310)
    assert faithful["repeats"] == 3 and efficient["repeats"] == 1 and efficient["forward_spread"] is None
    assert efficient["peak_rss_mib"] == 3100.0


def test_flags_spread_a_row_above_the_probe_and_a_contradiction():
    runs = []
    for r in range(3):
        runs.append(fake_run("fcnlab", "faithful", 1000 + 5 * r, 3000 + 10 * r, r))  # steady
        runs.append(fake_run("fcnlab", "efficient", 1010 - 5 * r, 2000 + 10 * r, r))  # slower than faithful
        runs.append(fake_run("fcnlab", "faithful", [600, 800, 700][r], 2500, r, model="fcn32s"))  # noisy
        runs.append(fake_run("fcnlab", "efficient", 300, 1500 + r, r, model="fcn32s"))  # 533 GFLOP/s
    rows = aggregate.flag_rows(aggregate.aggregate(runs), probe_gflops=500.0)
    by = {(r["model"], r["geometry"]): r for r in rows}
    assert by["fcn8s", "faithful"]["reliable"] is False and by["fcn8s", "efficient"]["reliable"] is False
    assert any(
        "efficient forward not faster than faithful" in w for w in by["fcn8s", "efficient"]["unreliable"]
    )
    assert by["fcn32s", "faithful"]["unreliable"] == ["forward spread 29% > 10%"]
    assert by["fcn32s", "efficient"]["unreliable"] == ["forward 533 GFLOP/s is above the probed peak 500"]
    reference, source = aggregate.peak_reference(rows, 500.0, "probe shape")
    assert reference == pytest.approx(160 / 0.3) and source.startswith("achieved: fcnlab fcn32s efficient")
    assert aggregate.peak_reference(rows, 900.0, "probe shape") == (900.0, "probe: probe shape")
    single = aggregate.flag_rows(aggregate.aggregate([fake_run("fcnlab", "faithful", 1, 1, 0)]), 1e9)
    assert single[0]["unreliable"] == ["measured once: spread unknown"]


def targets_of(runs: list[dict], peak: float = 1000.0) -> dict:
    rows = aggregate.flag_rows(report.add_derived(aggregate.aggregate(runs), peak), peak)
    result = {"rows": rows, "peak_reference_gflops": peak, "peak_source": "probe: fake"}
    return {t["target"]: t for t in report.targets(result)}


def test_targets_pass_fail_unreliable_from_side_by_side_runs():
    runs = []
    for r in range(3):
        runs.append(fake_run("torchfcn", "faithful", 1000, 3000, r))
        runs.append(fake_run("fcnlab", "faithful", 700 + r, 2410 + r, r, rss=2900.0))  # 0.70x, 0.80x
        runs.append(fake_run("fcnlab", "efficient", [380, 420, 400][r], 1300, r))  # straddles 0.4x
    checks = targets_of(runs)
    assert checks["faithful forward <= 0.8x torchfcn"]["status"] == "pass"
    assert checks["faithful forward <= 0.8x torchfcn"]["value"] == pytest.approx(0.701)
    assert checks["faithful train step <= 0.8x torchfcn"]["status"] == "fail"  # 2411/3000 > 0.8 each round
    forward_8s = checks["efficient FCN-8s forward <= 0.4x torchfcn"]
    assert forward_8s["status"] == "unreliable" and "both sides of the limit" in forward_8s["detail"]
    assert checks["efficient FCN-8s train step <= 0.45x torchfcn"]["status"] == "pass"  # 1300/3000
    assert checks["every VGG16 row's forward >= 75% of the peak"]["status"] == "fail"  # 290/0.7 s = 41 %
    assert checks["train loader >= 3x training throughput"]["status"] == "not measured"
    noisy = [fake_run("torchfcn", "faithful", 1000, 3000, r) for r in range(2)]
    noisy += [fake_run("fcnlab", "faithful", [500, 700][r], 2000, r) for r in range(2)]  # spread 33 %
    forward = targets_of(noisy)["faithful forward <= 0.8x torchfcn"]
    assert (
        forward["status"] == "unreliable"
        and forward["met"] is None
        and "unreliable rows" in forward["detail"]
    )
    big = [
        fake_run("fcnlab", g, 500, 1500, r, size=(500, 500), rss=3500.0 - 100 * r)
        for r in range(2)
        for g in ["efficient"]
    ]
    rss = targets_of(big)["peak RSS of an FCN-8s VGG16 train step at 500x500 <= 3 GiB"]
    assert rss["status"] == "fail" and rss["value"] == 3500.0


def test_rows_of_a_group_are_interleaved_and_alternate():
    group = [{"impl": "torchfcn"}, {"impl": "faithful"}, {"impl": "efficient"}]
    order = [(r, s["impl"]) for r, s in suite.interleaved(group, 3)]
    assert order == [
        (0, "torchfcn"), (0, "faithful"), (0, "efficient"),
        (1, "efficient"), (1, "faithful"), (1, "torchfcn"),
        (2, "torchfcn"), (2, "faithful"), (2, "efficient"),
    ]  # fmt: skip


def test_probe_shapes_are_the_nets_convs():
    spec = {
        "impl": "fcnlab",
        "model": "fcn8s",
        "backbone": "vgg16_tiny",
        "geometry": "efficient",
        "height": 64,
        "width": 64,
    }
    shapes = peak.net_conv_shapes([spec, {**spec, "impl": "torchfcn"}])
    assert (3, 64 // 8, 3, 3, 1, 1, 1, 1, 64, 64) in shapes  # conv1_1 of the tiny VGG16 at 64x64
    assert len(shapes) == len(set(shapes)) and all(peak.conv_shape_flops(s) >= 0 for s in shapes)
    flops = [peak.conv_shape_flops(s) for s in shapes]
    assert flops == sorted(flops, reverse=True)
