"""``fcnlab-bench``: a quick run's rows, the interleaving, the flags, FLOPs by torch's counter, bad input.

No timing is asserted anywhere: speeds are what the bench prints, never what a test checks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcnlab.bench import bench
from fcnlab.bench.peers import build_peer, import_torchfcn
from fcnlab.cli.bench import main
from fcnlab.models import create_model

ROW_KEYS = {
    "impl", "model", "geometry", "backbone", "height", "width", "precision", "params", "gflop",
    "train_gflop", "forward_ms", "train_step_ms", "forward_spread", "train_step_spread",
    "forward_times_ms", "train_step_times_ms", "forward_gflops", "peak_fraction", "peak_memory_mib",
    "forward_ratio", "train_step_ratio", "runs", "reliable", "unreliable", "errors",
}  # fmt: skip


@pytest.fixture(scope="module")
def quick(tmp_path_factory, tiny_data) -> dict:
    """FCN-8s in both geometries on the tiny backbone at 48x64, two rounds, no torchfcn (about 20 s)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["--sizes", "48x64", "--models", "fcn8s", "--repeats", "2", "--forward-reps", "1", "--peers"]
    for override in ("model.backbone=vgg16_tiny", f"data.root={tiny_data}", "data.generate=null"):
        argv += ["--override", override]
    main([*argv, "--out", str(out)])
    return json.loads(out.read_text())


def test_quick_run_rows_are_present_and_well_formed(quick):
    rows = quick["rows"]
    assert [(r["impl"], r["model"], r["geometry"]) for r in rows] == [
        ("fcnlab", "fcn8s", "faithful"),
        ("fcnlab", "fcn8s", "efficient"),
    ]
    for row in rows:
        assert set(row) >= ROW_KEYS, ROW_KEYS - set(row)
        assert (row["height"], row["width"], row["backbone"]) == (48, 64, "vgg16_tiny")
        assert row["runs"] == 2 and row["errors"] == [] and row["precision"] == "32-true"
        for key in ("forward", "train_step"):
            times = row[f"{key}_times_ms"]
            assert len(times) >= 2 and all(t > 0 for t in times)  # >= 1 call a run, two runs
            assert row[f"{key}_ms"] == pytest.approx(statistics.median(times))
            assert row[f"{key}_spread"] == pytest.approx((max(times) - min(times)) / row[f"{key}_ms"])
        assert row["forward_gflops"] == pytest.approx(row["gflop"] / row["forward_ms"] * 1000)
        assert row["peak_fraction"] == pytest.approx(row["forward_gflops"] / quick["peak_gflops"])
        assert row["peak_memory_mib"] > 0 and row["train_gflop"] > row["gflop"] > 0
        assert row["forward_ratio"] is None  # no torchfcn row
        assert row["reliable"] == (not row["unreliable"])
    assert rows[0]["gflop"] > rows[1]["gflop"]  # pad 100 makes every map of the faithful net larger
    assert quick["peak_gflops"] == max(quick["peak"]["runs_gflops"]) > 0
    assert quick["loader"]["images_per_s"] > 0 and quick["errors"] == []
    assert quick["machine"]["cpu_model"] and quick["versions"]["torch"] == torch.__version__
    assert quick["memory"] == "ru_maxrss of the run's process"


@pytest.mark.parametrize("geometry", ["faithful", "efficient"])
def test_flops_are_torchs_counter_on_the_real_net(geometry):
    # The bench counts on the meta device; on the CPU the net runs other kernels (fc6 as a GEMM).
    kwargs = dict(name="fcn8s", backbone="vgg16_tiny", geometry=geometry, num_classes=21)
    counted = bench.net_flops({"impl": "fcnlab", "net": kwargs, "height": 40, "width": 56})
    torch.manual_seed(0)
    net, x = create_model(**kwargs), torch.randn(1, 3, 40, 56)
    with FlopCounterMode(display=False) as forward, torch.inference_mode():
        net.eval()(x)
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(net.train()(x), torch.zeros(1, 40, 56, dtype=torch.long)).backward()
    assert counted["gflop"] * 1e9 == forward.get_total_flops() > 0
    assert counted["train_gflop"] * 1e9 == train.get_total_flops()
    assert counted["params"] == sum(p.numel() for p in net.parameters())


def test_rows_of_a_group_are_interleaved_and_alternate():
    order = [(r, impl) for r, impl in bench.interleaved(["torchfcn", "faithful", "efficient"], 3)]
    assert order == [
        (0, "torchfcn"), (0, "faithful"), (0, "efficient"),
        (1, "efficient"), (1, "faithful"), (1, "torchfcn"),
        (2, "torchfcn"), (2, "faithful"), (2, "efficient"),
    ]  # fmt: skip


def fake_row(impl: str, geometry: str, forward: list[float], train: list[float], gflop: float = 160.0):
    return {
        "impl": impl, "model": "fcn8s", "geometry": geometry, "backbone": "vgg16", "gflop": gflop,
        "train_gflop": 3 * gflop, "runs": len(forward), "forward_times": forward, "train_step_times": train,
    }  # fmt: skip


def test_medians_spreads_flags_and_ratios_from_synthetic_timings():
    group = [
        fake_row("torchfcn", "faithful", [1000, 1010, 990], [3000, 3030, 2970], gflop=290.0),
        fake_row("fcnlab", "faithful", [700, 1000, 800], [2390, 2400, 2410], gflop=290.0),  # noisy forward
        fake_row("fcnlab", "efficient", [300], [1500], gflop=160.0),  # timed once, above the peak
        {**fake_row("fcnlab", "efficient", [], []), "runs": 0},  # every run failed
    ]
    bench.finish(group, peak=500.0, max_spread=0.10)
    peer, faithful, efficient, failed = group
    assert peer["forward_ms"] == 1000 and peer["forward_spread"] == pytest.approx(0.02)
    assert peer["reliable"] and peer["unreliable"] == [] and peer["forward_ratio"] is None
    assert faithful["forward_ms"] == 800 and faithful["forward_spread"] == pytest.approx(300 / 800)
    assert faithful["unreliable"] == ["forward spread 38% > 10%"] and not faithful["reliable"]
    assert faithful["forward_ratio"] == pytest.approx(0.8) and faithful["train_step_ratio"] == pytest.approx(
        0.8
    )
    assert efficient["forward_gflops"] == pytest.approx(160 / 0.3)
    assert efficient["peak_fraction"] == pytest.approx(160 / 0.3 / 500)
    assert efficient["unreliable"] == [
        "forward timed once: spread unknown",
        "train step timed once: spread unknown",
        "forward 533 GFLOP/s is above the measured peak 500",
    ]
    assert failed["unreliable"] == ["no run finished"] and math.isnan(failed["forward_ms"])


def test_a_row_on_another_backbone_has_no_ratio_to_torchfcns_vgg16():
    tiny = {**fake_row("fcnlab", "faithful", [500, 500], [900, 900]), "backbone": "vgg16_tiny"}
    group = [fake_row("torchfcn", "faithful", [1000, 1000], [3000, 3000]), tiny]
    bench.finish(group, peak=1e6, max_spread=0.10)
    assert group[1]["forward_ratio"] is None and group[1]["reliable"]


def test_time_calls_warms_up_once_then_takes_reps_and_min_seconds():
    calls = []
    times = bench.time_calls(lambda: calls.append(1), 3, torch.device("cpu"), min_seconds=0.0)
    assert len(times) == 3 and len(calls) == 4  # the warm-up is not timed
    times = bench.time_calls(lambda: calls.append(1), 1, torch.device("cpu"), min_seconds=0.01)
    assert sum(times) >= 10  # calls go on until the minimum time is covered


def test_bf16_mixed_runs_under_the_trainers_autocast_and_32_true_under_none():
    with bench.autocast("bf16-mixed", torch.device("cpu"))():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert not torch.is_autocast_cache_enabled()  # as Lightning's bf16-mixed: weights recast each step
    with bench.autocast("32-true", torch.device("cpu"))():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "fcn99s"],
        ["--sizes", "big"],
        ["--peers", "fcn8s_atonce"],
        ["--repeats", "0"],
        ["--device", "cuda"],
        ["--peers", "--override", "model.geometry"],
        ["--peers", "--override", "trainer.precision=16-mixed"],
        ["--peers", "--override", "model.backbone=vgg19"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "bench.json")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bench.json").exists()


def test_an_out_file_it_did_not_write_is_refused_before_any_timing(capsys, tmp_path, monkeypatch):
    notes = tmp_path / "notes.json"
    notes.write_text("mine")
    monkeypatch.setattr(bench, "run", lambda args: pytest.fail("timed before refusing"))
    with pytest.raises(SystemExit) as e:
        main(["--peers", "--out", str(notes)])
    assert e.value.code == 2 and notes.read_text() == "mine"
    err = capsys.readouterr().err.strip()
    todo = "give another --out, or --overwrite to replace it"
    assert err == f"error: {notes} exists and fcnlab-bench did not write it; {todo}"


def test_its_own_out_file_is_replaced_without_a_word(quick, tmp_path_factory, monkeypatch):
    from fcnlab.atomic import foreign_files

    out = next(tmp_path_factory.getbasetemp().glob("bench*/bench.json"))
    assert foreign_files(out.parent, [out.name]) == []  # recorded as fcnlab-bench's own
    monkeypatch.setattr(bench, "run", lambda args: {**quick, "errors": []})
    main(["--peers", "--out", str(out)])  # the same command again: no refusal


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
