"""The report's inputs from a job: Figure-4 panels written by a module, without touching its state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.data.loading import load_sample
from fcnlab.data.transforms import eval_transform
from fcnlab.data.voc import protocol_samples
from fcnlab.training import FCNModule
from fcnlab.training.figure_panels import write_figure_panels

TINY_FCN8S = {
    "name": "fcn8s",
    "num_classes": 21,
    "backbone": "vgg16_tiny",
    "pretrained": None,
    "width_divisor": 8,
    "pool5_size": 3,
}


def test_figure_panels_are_the_modules_argmax_and_leave_its_state_alone(tiny_data, tmp_path):
    torch.manual_seed(0)
    module = FCNModule(model=TINY_FCN8S).train()
    with torch.no_grad():  # random weights everywhere (the score layers start at zero): varied predictions
        for p in module.parameters():
            p.normal_(0, 0.1)
    datamodule = SegmentationDataModule(tiny_data, protocol="seg11valid", num_workers=0)
    rng = torch.get_rng_state()
    index = write_figure_panels(module, datamodule, tmp_path, variant="fcn8s", checkpoint="none.ckpt")
    assert torch.equal(torch.get_rng_state(), rng) and module.training
    assert json.loads((tmp_path / "figure4/index.json").read_text()) == index
    assert index["palette"][:3] == ["#000000", "#800000", "#008000"] and len(index["palette"]) == 256
    _, val, _ = protocol_samples(tiny_data, "seg11valid")
    by_id = {s.id: s for s in val}
    module.eval()
    classes_seen = set()
    for i in index["ids"]:
        image, _ = load_sample(by_id[i])
        x = eval_transform(module.input_space)(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        with torch.inference_mode():
            expected = module(x[None]).argmax(1)[0].numpy()
        pred = np.asarray(Image.open(tmp_path / f"figure4/pred_{i}.png"))
        np.testing.assert_array_equal(pred, expected)
        classes_seen |= set(np.unique(pred).tolist())
    assert len(classes_seen) > 1  # a comparison that could tell two nets apart


def test_figure_panels_are_drawn_in_the_modules_class_colours(tiny_data, tmp_path):
    colors = [[(37 * i) % 256, (11 * i) % 256, 255 - i] for i in range(21)]
    module = FCNModule(model=TINY_FCN8S, class_colors=colors)
    datamodule = SegmentationDataModule(tiny_data, protocol="seg11valid", num_workers=0)
    index = write_figure_panels(
        module, datamodule, tmp_path, variant="fcn8s", checkpoint="none.ckpt", num_images=1
    )
    assert index["palette"][:21] == ["#{:02x}{:02x}{:02x}".format(*c) for c in colors]
    with Image.open(tmp_path / f"figure4/truth_{index['ids'][0]}.png") as truth:
        assert truth.getpalette()[:63] == [v for c in colors for v in c]


def fake_sweep(root: Path, names_by_job: dict[str, list[str]]) -> Path:
    """A finished sweep's folders as fcnlab-report reads them: one results.json per job."""
    for job, names in names_by_job.items():
        variant, _, seed = job.rpartition("_seed")
        record = {
            "variant": variant,
            "seed": int(seed),
            "status": "ok",
            "metrics": {"pixel_acc": 0.9, "mean_acc": 0.7, "mean_iu": 0.6, "fw_iu": 0.8},
            "per_class_iu": {n: (k % 10) / 10 for k, n in enumerate(names)},
            "class_names": names,
            "epochs": 1,
            "wall_seconds": 1.0,
        }
        (root / job).mkdir(parents=True)
        (root / job / "results.json").write_text(json.dumps(record))
    return root


def drawn_heatmap(records: list[dict], monkeypatch) -> tuple[list[str], float, float]:
    """(x tick labels, figure width in inches, tick font size) of the per-class heatmap drawn."""
    from fcnlab.reporting import plots

    seen = {}

    def keep(fig, path, dpi):
        ax = fig.axes[0]
        seen["ticks"] = [t.get_text() for t in ax.get_xticklabels()]
        seen["width"] = fig.get_size_inches()[0]
        seen["font"] = ax.get_xticklabels()[0].get_fontsize()

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.per_class_heatmap(records, Path("unused.png"))
    return seen["ticks"], seen["width"], seen["font"]


def test_per_class_heatmap_uses_the_runs_class_names_at_any_count(tmp_path, monkeypatch):
    from fcnlab.reporting.table import collect

    names = ["background", "road / sidewalk", "café", *(f"c{i}" for i in range(3, 7))]
    sweep = fake_sweep(tmp_path / "few", {"fcn32s_seed0": names, "fcn8s_seed0": names})
    ticks, width, font = drawn_heatmap(collect(sweep), monkeypatch)
    assert ticks == names and width == 8 and font == 7
    many = [f"class {i}" for i in range(400)]
    sweep = fake_sweep(tmp_path / "many", {"fcn32s_seed0": many})
    ticks, width, font = drawn_heatmap(collect(sweep), monkeypatch)
    assert ticks == many and width == 40 and 2 <= font < 7  # capped width, smaller labels


def test_report_of_runs_on_different_classes_is_one_line(tmp_path):
    import pytest

    from fcnlab.errors import FCNLabError
    from fcnlab.reporting.build import build_report

    a, b = ["background", "cat", "dog"], ["background", "cat", "car", "bus"]
    sweep = fake_sweep(tmp_path / "sweep", {"fcn32s_seed0": a, "fcn8s_seed0": b})
    with pytest.raises(FCNLabError) as info:
        build_report(sweep, tmp_path / "report")
    assert str(info.value) == (
        f"{sweep} is not one sweep's data: {sweep / 'fcn32s_seed0'} scored 3 classes and "
        f"{sweep / 'fcn8s_seed0'} 4 (class 2: 'dog' vs 'car'); report each dataset's sweep on its own"
    )


def test_init_column_says_random_init_parent_stage_or_pretrained_backbone():
    from fcnlab.reporting.table import summarize

    base = {"status": "ok", "metrics": dict.fromkeys(("pixel_acc", "mean_acc", "mean_iu", "fw_iu"), 0.5)}
    records = [
        {**base, "variant": "fcn32s", "seed": 0, "pretrained": None, "init_from": None},
        {**base, "variant": "fcn32s_fixed", "seed": 0, "pretrained": "backbone.pth", "init_from": None},
        {**base, "variant": "fcn16s", "seed": 0, "init_from": "/s/1_fcn32s_seed0/checkpoints/best.ckpt"},
        {**base, "variant": "fcn8s", "seed": 0},  # a record from before "pretrained" was stored
    ]
    init = {row["variant"]: row["init"] for row in summarize(records)}
    assert init == {
        "fcn32s": "random init",
        "fcn32s_fixed": "pretrained backbone",
        "fcn16s": "fcn32s best.ckpt",
        "fcn8s": "pretrained backbone",
    }


def test_a_running_job_is_running_not_failed_and_a_dead_ones_lock_is_not_running(tmp_path):
    import fcntl
    import os

    from fcnlab.reporting.table import collect, ordering_report, summarize

    for job in ("0_fcn32s_seed0", "1_fcn8s_seed0"):
        (tmp_path / job).mkdir()
        (tmp_path / job / ".fcnlab.lock").write_text("12345\n")  # left by a killed run: free
    (tmp_path / "0_fcn32s_seed0" / "results.json").write_text('{"variant": "fcn32s", "status": "failed"}')
    rows = summarize(collect(tmp_path))
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "failed"), ("fcn8s", "failed")]
    fd = os.open(tmp_path / "0_fcn32s_seed0" / ".fcnlab.lock", os.O_RDWR)  # now a re-run holds it
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        rows = summarize(collect(tmp_path))
    finally:
        os.close(fd)
    assert [(r["variant"], r["status"]) for r in rows] == [("fcn32s", "running"), ("fcn8s", "failed")]
    assert rows[0]["errors"] == "still running (pid 12345)"
    assert ordering_report(rows) == [
        "The ordering cannot be checked: fcn32s_fixed, fcn32s (still running), fcn16s, fcn8s failed, is "
        "running or did not run."
    ]
