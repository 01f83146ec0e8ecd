"""Table 1: its presets compose for every backbone, the computed net columns, the report and the line
search's report from files, and a miniature ``reproduce-table1`` sweep through the real Hydra multirun."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from fcnlab.cli.models import table1_nets
from fcnlab.config import compose_train_config
from fcnlab.errors import FCNLabError
from fcnlab.models import backbone_spec, create_model
from fcnlab.reporting.table1 import BACKBONES, CSV_COLUMNS, build_lr_search, build_table1
from test_sweep import run_sweep

TINY = ("vgg16_tiny", "alexnet_tiny", "googlenet_tiny")
MODELS = ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce", "fcn32s_mid", "fcn32s_long")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_file_builds_on_every_backbone(model):
    """One base model file (fcn32s.yaml) and model.backbone= picks the backbone for every model."""
    for backbone in TINY:
        cfg = compose_train_config([f"model={model}", f"model.backbone={backbone}", "model.pretrained=null"])
        with torch.device("meta"):
            net = create_model(**cfg.model)
        assert net.name == cfg.model.name and net.backbone.spec == backbone_spec(backbone)


def test_table1_preset_gives_each_backbone_its_searched_lr():
    for backbone in TINY:
        cfg = compose_train_config(["experiment=table1_shapes", f"model.backbone={backbone}"])
        assert cfg.model.name == "fcn32s" and cfg.stage.variant == backbone
        assert cfg.optimizer.lr == cfg.table1_lr[backbone]
        assert cfg.pretrain.output.endswith(f"/pretrained/{backbone}_shapes.pth")


def test_computed_net_columns_are_the_papers_where_the_nets_agree():
    nets = table1_nets(repeats=1, size=40)
    rows = nets["backbones"]
    assert {b: rows[b]["conv_layers"] for b in BACKBONES} == {"alexnet": 8, "vgg16": 16, "googlenet": 22}
    assert {b: rows[b]["rf_size"] for b in BACKBONES} == {"alexnet": 355, "vgg16": 404, "googlenet": 379}
    assert {b: round(rows[b]["parameters"] / 1e6) for b in BACKBONES} == {
        "alexnet": 57,
        "vgg16": 134,
        "googlenet": 6,
    }
    assert all(rows[b]["max_stride"] == 32 and rows[b]["forward_ms"] > 0 for b in BACKBONES)
    assert nets["input"] == [1, 3, 40, 40] and nets["cpu_model"]


def nets_file(path: Path) -> Path:
    computed = {
        "alexnet": (40.0, 8, 57_092_694, 355, 32),
        "vgg16": (900.0, 16, 134_347_157, 404, 32),
        "googlenet": (60.0, 22, 5_621_429, 379, 32),
    }
    keys = ("forward_ms", "conv_layers", "parameters", "rf_size", "max_stride")
    nets = {
        "input": [1, 3, 500, 500],
        "geometry": "faithful",
        "repeats": 5,
        "cpu_model": "Some CPU",
        "threads": 2,
        "backbones": {b: dict(zip(keys, v, strict=True)) for b, v in computed.items()},
    }
    path.write_text(json.dumps(nets))
    return path


def fake_sweep(root: Path, mean_iu: dict[str, float]) -> Path:
    for variant, iu in mean_iu.items():
        job = root / f"{variant}_seed0"
        job.mkdir(parents=True)
        metrics = {"pixel_acc": 0.8, "mean_acc": 0.5, "mean_iu": iu, "fw_iu": 0.7}
        record = {"variant": variant, "seed": 0, "status": "ok", "metrics": metrics, "epochs": 8}
        (job / "results.json").write_text(json.dumps(record))
    return root


def test_table1_report_from_files(tmp_path):
    sweep = fake_sweep(
        tmp_path / "sweep", {"vgg16_tiny": 0.40, "alexnet_tiny": 0.30, "googlenet_tiny": 0.395}
    )
    rows = build_table1(sweep, nets_file(tmp_path / "nets.json"), tmp_path / "out", ["a note"])
    assert [r["backbone"] for r in rows] == ["alexnet", "vgg16", "googlenet"]
    with (tmp_path / "out" / "table1.csv").open() as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [(r["backbone"], r["mean_iu"], r["rf_size"]) for r in table] == [
        ("alexnet", "30.0", "355"),
        ("vgg16", "40.0", "404"),
        ("googlenet", "39.5", "379"),
    ]
    md = (tmp_path / "out" / "table1.md").read_text()
    assert "VGG16 40.0 > GoogLeNet 39.5 > AlexNet 30.0 — holds (a gap of 0.5 points" in md
    assert "FCN-GoogLeNet rf_size: 379 here, 907 in the paper: torchvision's GoogLeNet" in md
    assert "FCN-AlexNet rf_size" not in md and "not explained" not in md
    assert "Some CPU" in md and "a note" in md

    swapped = fake_sweep(
        tmp_path / "swapped", {"vgg16_tiny": 0.3, "alexnet_tiny": 0.35, "googlenet_tiny": 0.2}
    )
    build_table1(swapped, tmp_path / "nets.json", tmp_path / "out2")
    assert "— DOES NOT HOLD" in (tmp_path / "out2" / "table1.md").read_text()

    partial = fake_sweep(tmp_path / "partial", {"vgg16_tiny": 0.4})
    rows = build_table1(partial, tmp_path / "nets.json", tmp_path / "out3")
    assert [r["status"] for r in rows] == ["did not run", "ok", "did not run"]
    assert "cannot be checked: googlenet, alexnet" in (tmp_path / "out3" / "table1.md").read_text()

    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FCNLabError, match=r"^--nets .*bad.json: not fcnlab-models --table1's output"):
        build_table1(sweep, tmp_path / "bad.json", tmp_path / "out4")
    with pytest.raises(FCNLabError, match="are not Table 1 rows"):
        build_table1(fake_sweep(tmp_path / "t2", {"fcn8s": 0.5}), tmp_path / "nets.json", tmp_path / "out5")


def test_table1_reports_replace_only_their_own_files(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep", {"vgg16_tiny": 0.4, "alexnet_tiny": 0.3, "googlenet_tiny": 0.35})
    nets, out = nets_file(tmp_path / "nets.json"), tmp_path / "out"
    build_table1(sweep, nets, out)
    build_table1(sweep, nets, out)  # the same command again: its own files, replaced
    (out / "table1.md").write_text("edited by hand")
    with pytest.raises(
        FCNLabError, match=r"table1.md exists and fcnlab-report did not write it; .*--overwrite"
    ):
        build_table1(sweep, nets, out)
    assert (out / "table1.md").read_text() == "edited by hand"
    build_table1(sweep, nets, out, overwrite=True)
    (out / "table1_lr_search.md").write_text("mine")
    ius = {"vgg16_tiny_lr0.001": 0.4}
    with pytest.raises(FCNLabError, match="table1_lr_search.md exists and fcnlab-report did not write it"):
        build_lr_search(fake_sweep(tmp_path / "search", ius), out)
    assert (out / "table1_lr_search.md").read_text() == "mine"


def test_lr_search_report_picks_each_backbones_best(tmp_path):
    ius = {"vgg16_tiny_lr0.001": 0.4, "vgg16_tiny_lr0.003": 0.45, "alexnet_tiny_lr0.001": 0.3}
    best = build_lr_search(fake_sweep(tmp_path / "sweep", ius), tmp_path / "out")
    assert best == {"alexnet_tiny": 0.001, "vgg16_tiny": 0.003}
    md = (tmp_path / "out" / "table1_lr_search.md").read_text()
    assert "| vgg16_tiny | 40.0 | 45.0 | 0.003 |" in md and "| alexnet_tiny | 30.0 | — | 0.001 |" in md
    assert "table1_lr: {alexnet_tiny: 0.001, vgg16_tiny: 0.003}" in md


@pytest.mark.slow
def test_miniature_table1_sweep_and_report(tiny_data, tmp_path):
    """The Table 1 multirun on the tiny data (pretraining each backbone for an epoch), then its report."""
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, tiny_data, tmp_path, config="table1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [f"{b}_seed0" for b in sorted(TINY)]
    for backbone in TINY:
        results = json.loads((sweep / f"{backbone}_seed0" / "results.json").read_text())
        assert results["status"] == "ok" and results["variant"] == backbone
        assert results["pretrained"] == f"{tmp_path}/data/pretrained/{backbone}_shapes.pth"
        assert (tmp_path / "data" / "pretrained" / f"{backbone}_shapes.json").is_file()
    rows = build_table1(sweep, nets_file(tmp_path / "nets.json"), tmp_path / "out")
    assert all(r["status"] == "ok" and 0 <= r["mean_iu"] <= 100 for r in rows)
    assert (tmp_path / "out" / "table1_predictions.png").stat().st_size > 0
    assert "table1_predictions.png" in (tmp_path / "out" / "table1.md").read_text()
