"""fcnlab-export: ONNX with dynamic batch/height/width that onnxruntime runs like PyTorch at odd sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnlab.atomic import OUTPUTS_MANIFEST
from fcnlab.data.classes import voc_palette
from fcnlab.errors import FCNLabError
from fcnlab.inference.export import export
from fcnlab.inference.inputs import normalize
from fcnlab.training import load_module
from helpers.hang import HANG_GUARD_S

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_predict import make_cfg, tiny_checkpoint  # noqa: E402  (shared helpers; after the skips)

# fcn32s has one static crop; fcn8s's two fusions crop by min() of sizes, in both geometries.
CASES = [("fcn32s", "faithful"), ("fcn8s", "faithful"), ("fcn8s", "efficient")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {case: tiny_checkpoint(root / f"{case[0]}_{case[1]}" / "best.ckpt", *case) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_onnx_matches_torch_at_any_size(case, checkpoints, tmp_path, capsys):
    ckpt = checkpoints[case]
    output = [] if case[0] == "fcn8s" else [f"output={tmp_path}"]  # default: beside the checkpoint
    result = export(make_cfg("export", [f"ckpt={ckpt}", *output], tmp_path / "job"))
    path = Path(result["path"])
    assert path == (ckpt.with_suffix(".onnx") if case[0] == "fcn8s" else tmp_path / "best.onnx")
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].split()[-1] for line in printed] == ["1x3x64x80", "2x3x97x131", "1x3x200x150"]

    sidecar = json.loads(path.with_name("best.onnx.json").read_text())
    assert sidecar["input"]["name"] == "image" and sidecar["output"]["name"] == "logits"
    assert sidecar["inference"]["graph"].startswith("single-scale") and sidecar["input"]["normalisation"]
    assert sidecar["num_classes"] == 21 and len(sidecar["class_names"]) == 21
    assert sidecar["class_colors"] == voc_palette()[:21].tolist()  # a checkpoint without colours
    assert (sidecar["model"], sidecar["geometry"], sidecar["opset"]) == (*case, 18)
    assert sidecar["source_ckpt"] == str(ckpt.resolve()) and sidecar["export_git_sha"]
    assert [c["shape"] for c in sidecar["checks"]] == [[1, 3, 64, 80], [2, 3, 97, 131], [1, 3, 200, 150]]
    assert all(c["max_abs_diff"] < 1e-4 and c["argmax_agreement"] > 0.99 for c in sidecar["checks"])
    assert [p.name for p in path.parent.glob(".*")] == [OUTPUTS_MANIFEST]  # no temp file left behind

    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = load_module(str(ckpt)).model.eval()
    for shape in [(1, 3, 1, 1), (3, 3, 33, 17)]:  # beyond the export's own checks: 1x1 and a batch of 3
        pixels = torch.randint(0, 256, shape, dtype=torch.uint8)
        x = normalize(pixels, sidecar["input"]["input_space"])
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        assert got.shape == expected.shape == (shape[0], 21, *shape[2:])
        assert np.abs(got - expected).max() < 1e-4


def test_baked_crop_is_caught_and_not_kept(checkpoints, tmp_path):
    """The TorchScript exporter fixes FCN-8s's fusion crops at the example size; the check refuses it."""
    ckpt = checkpoints[("fcn8s", "faithful")]
    cfg = make_cfg("export", [f"ckpt={ckpt}", "exporter=torchscript", f"output={tmp_path}/m.onnx"], tmp_path)
    with pytest.raises(FCNLabError, match=r"ONNX check at 2x3x97x131: onnxruntime cannot run the exported"):
        export(cfg)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".onnx", ".json", ".tmp")) == []


def test_bad_options(checkpoints, tmp_path):
    ckpt = checkpoints[("fcn32s", "faithful")]
    with pytest.raises(FCNLabError, match=r"ckpt=/nonexistent\.ckpt: no such file"):
        export(make_cfg("export", ["ckpt=/nonexistent.ckpt"], tmp_path))
    with pytest.raises(FCNLabError, match="is the checkpoint itself"):
        export(make_cfg("export", [f"ckpt={ckpt}", f"output={ckpt}"], tmp_path))
    with pytest.raises(FCNLabError, match=r"check_sizes: \[1, 64\] is not \[batch, height, width\]"):
        export(make_cfg("export", [f"ckpt={ckpt}", "check_sizes=[[1,64]]"], tmp_path))


def test_unknown_format_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).parent / "fcnlab-export"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fcnlab.cli.export"]
    args = ["ckpt=/nonexistent.ckpt", "format=tflite", f"hydra.run.dir={tmp_path / 'job'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: format=tflite is not supported; supported: onnx"]


def test_sidecar_names_and_colours_the_checkpoints_classes(tmp_path):
    from test_predict import USER_COLORS, USER_NAMES

    ckpt = tiny_checkpoint(tmp_path / "user.ckpt", "fcn32s", class_names=USER_NAMES, class_colors=USER_COLORS)
    fast = ["check_sizes=[[1,32,40]]"]
    sidecar = export(make_cfg("export", [f"ckpt={ckpt}", f"output={tmp_path}/u.onnx", *fast], tmp_path))
    assert sidecar["class_names"] == USER_NAMES and sidecar["class_colors"] == USER_COLORS
    assert json.loads((tmp_path / "u.onnx.json").read_text())["class_colors"] == USER_COLORS
