"""Test-time inference through fcnlab-eval (one checkpoint, a sweep pass), fcnlab-predict and the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlab.evaluation import segmentation_scores
from fcnlab.inference.evaluate import evaluate
from fcnlab.inference.predict import predict
from fcnlab.training import load_module
from helpers.hang import HANG_GUARD_S
from test_predict import make_cfg, tiny_checkpoint

DATA = ["data.generate=null", "data.num_workers=0", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


def eval_cfg(tiny_data: str, job: Path, *extra: str):
    return make_cfg("eval", [f"data.root={tiny_data}", *DATA, *extra], job)


def test_single_scale_eval_is_exactly_the_plain_forward_pass(tiny_data, ckpt, tmp_path):
    """infer=single (the default) gives today's numbers: the net's argmax, one confusion matrix, exactly."""
    from hydra.utils import instantiate

    cfg = eval_cfg(tiny_data, tmp_path, f"ckpt={ckpt}")
    result = evaluate(cfg)
    module = load_module(ckpt)
    dm = instantiate(cfg.data, _convert_="all", input_space=module.input_space.as_dict())
    dm.setup("validate")
    confusion = torch.zeros(21, 21, dtype=torch.long)
    with torch.inference_mode():
        for images, masks in dm.val_dataloader():
            pred, keep = module.model.eval()(images).argmax(1), masks != 255
            confusion += torch.bincount(21 * masks[keep] + pred[keep], minlength=21 * 21).reshape(21, 21)
    assert result["metrics"] == segmentation_scores(confusion).as_dict()
    assert result["infer"]["label"] == "single-scale" and result["images"] == len(dm.val_dataloader().dataset)
    flipped = evaluate(eval_cfg(tiny_data, tmp_path / "flip", f"ckpt={ckpt}", "infer=msflip"))
    assert flipped["infer"]["label"] == "ms+flip" and flipped["infer"]["scales"][-1] == 1.75
    assert flipped["metrics"] != result["metrics"]  # really another inference
    assert json.loads((tmp_path / "flip" / "eval.json").read_text())["metrics"] == flipped["metrics"]


def sweep_of(ckpt: str, tiny_data: str, root: Path) -> Path:
    """A finished sweep's layout: one job with results.json and checkpoints/best.ckpt, one failed job."""
    sweep = root / "sweep"
    job = sweep / "fcn8s_seed0"
    (job / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, job / "checkpoints" / "best.ckpt")
    metrics = {"pixel_acc": 0.5, "mean_acc": 0.4, "mean_iu": 0.3, "fw_iu": 0.2}
    record = {"variant": "fcn8s", "seed": 0, "status": "ok", "metrics": metrics, "data_root": tiny_data}
    (job / "results.json").write_text(json.dumps({**record, "protocol": "seg11valid", "epochs": 1}))
    (sweep / "fcn16s_seed0").mkdir()
    return sweep


def test_a_sweep_pass_writes_tta_results_and_the_report_shows_them_beside_single_scale(
    tiny_data, ckpt, tmp_path, capsys
):
    from fcnlab.cli.report import main as report_main

    sweep = sweep_of(ckpt, tiny_data, tmp_path)
    job = sweep / "fcn8s_seed0"
    summary = evaluate(make_cfg("eval", [f"sweep={sweep}", "infer=flip", *DATA], tmp_path / "eval"))
    tta = json.loads((job / "results_tta.json").read_text())
    assert [Path(j["job_dir"]).name for j in summary["jobs"]] == ["fcn8s_seed0"]
    assert tta["variant"] == "fcn8s" and tta["infer"]["label"] == "flip" and tta["ms_per_image"] > 0
    assert summary["skipped"] == [f"{sweep / 'fcn16s_seed0'}: no finished results.json; skipped"]
    assert not list(job.glob("*.tmp*"))  # written atomically
    with pytest.raises(SystemExit):  # the fcn16s row failed
        report_main([str(sweep), "--out", str(tmp_path / "report")])
    table = (tmp_path / "report" / "table2.md").read_text()
    head = next(line for line in table.splitlines() if line.startswith("| variant"))
    row = next(line for line in table.splitlines() if line.startswith("| fcn8s"))
    cells = dict(zip(head.split(" | "), row.split(" | "), strict=True))
    assert cells["mean IU"] == "30.0" and cells["flip mean IU"] == f"{100 * tta['metrics']['mean_iu']:.1f}"
    assert "the paper's numbers are single-scale" in table
    csv_head = (tmp_path / "report" / "table2.csv").read_text().splitlines()[0]
    assert "tta_mean_iu" in csv_head.split(",")


def test_predict_slide_with_a_window_over_the_image_writes_the_whole_image_masks(ckpt, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name, size in (("a", (7, 13)), ("b", (97, 131)), ("c", (1, 1))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tmp_path / "in" / f"{name}.png"
        )
    masks = {}
    for mode in ("single", "slide"):
        out = tmp_path / mode
        cfg = make_cfg(
            "predict",
            [f"ckpt={ckpt}", f"input={tmp_path / 'in'}", f"output={out}", "device=cpu", f"infer={mode}"],
            tmp_path / f"job_{mode}",
        )
        record = predict(cfg)
        assert not record["errors"] and record["infer"]["mode"] == ("slide" if mode == "slide" else "whole")
        assert record["peak_rss_mib"] > 0
        masks[mode] = {
            p.name: np.array(Image.open(p)) for p in sorted(out.glob("*.png")) if p.stem != "legend"
        }
    assert masks["single"].keys() == masks["slide"].keys() and len(masks["single"]) == 3
    for name in masks["single"]:
        assert np.array_equal(masks["single"][name], masks["slide"][name]), name


@pytest.mark.parametrize(
    ("command", "option"),
    [("eval", "infer.scales=[]"), ("predict", "infer.stride=600"), ("train", "infer.crop=0")],
)
def test_a_bad_setting_is_one_line_from_every_command_before_any_work(command, option, tmp_path):
    """The CLIs print ``error: <line>`` and exit 2 before any checkpoint, image or data is touched."""
    args = {
        "eval": ["ckpt=/nowhere.ckpt"],
        "predict": ["ckpt=/nowhere.ckpt", "input=/nowhere"],
        "train": ["data.root=/nowhere", "data.generate=null", "model.pretrained=null"],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-m", f"fcnlab.cli.{command}", f"paths.root_dir={tmp_path}", *args, option],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option.split('=')[0]}="), proc.stderr
