"""DDP on two CPU processes (gloo): every val pixel counted once, metrics equal to one process.

Also the Hydra + DDP pitfalls: inside a multirun, ranks > 0 re-run only their job, in its folder.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from fcnlab.data.classes import VOID
from fcnlab.data.loading import load_sample
from fcnlab.data.sampling import ShardSampler
from fcnlab.data.voc import protocol_samples
from fcnlab.inference.evaluate import evaluate
from fcnlab.training.distributed import rank_command
from helpers.hang import HANG_GUARD_S
from test_train import make_cfg, train_command


def ddp_cmd(data_root: str, tmp_path: Path, *extra: str, multirun: bool = False) -> list[str]:
    # data.batch_size is per process: 4 images a step in all. limit_val=7 is odd on purpose:
    # DistributedSampler would pad a duplicate onto one rank.
    base = ["trainer=ddp_cpu", "data.batch_size=2", "+data.limit_val=7", "optimizer=adam"]
    return train_command(data_root, tmp_path, *base, *extra, multirun=multirun)


def labelled_pixels(data_root: str, limit: int) -> int:
    _, val, _ = protocol_samples(data_root, "seg11valid")
    return sum(int((np.asarray(load_sample(s)[1]) != VOID).sum()) for s in val[:limit])


@pytest.mark.parametrize("size,world", [(7, 2), (8, 2), (5, 3), (1, 2)])
def test_shards_cover_every_item_exactly_once(size, world):
    shards = [list(ShardSampler(range(size), num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(size))
    assert [len(ShardSampler(range(size), num_replicas=world, rank=r)) for r in range(world)] == [
        len(s) for s in shards
    ]


def test_rank_command_reruns_this_job_in_its_folder(tmp_path):
    cfg = make_cfg("train", ["model=fcn16s", "seed=3", "trainer=ddp_cpu"], tmp_path)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):  # as Hydra sets it for job 1 of `fcnlab-train -m model=fcn32s,fcn16s seed=3`
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.runtime.output_dir = str(tmp_path / "sweep" / "1_fcn16s_seed3")
        cfg.hydra.job.config_name = "table2"
    HydraConfig.instance().set_config(cfg)
    command, _ = rank_command(1)
    assert "-m" not in command[3:] and "--multirun" not in command
    assert command[command.index("--config-name") + 1] == "table2"
    assert {"model=fcn16s", "seed=3", "trainer=ddp_cpu"} <= set(command)
    assert f"hydra.run.dir={tmp_path}/sweep/1_fcn16s_seed3" in command
    assert f"hydra.sweep.dir={tmp_path}/sweep" in command  # staged init_from resolves as in rank 0
    assert "hydra.output_subdir=null" in command


@pytest.mark.slow
def test_ddp_cpu_metrics_equal_one_process_and_count_each_pixel_once(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    proc = subprocess.run(
        [*ddp_cmd(tiny_data, tmp_path, "model=fcn16s", "trainer.max_epochs=2"), f"hydra.run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((run / "results.json").read_text())
    assert (run / "train_rank1.log").is_file() and not list(tmp_path.glob("outputs*"))
    confusion = np.array(ddp["confusion"])
    assert confusion.sum() == labelled_pixels(tiny_data, 7)  # no pixel missing, none twice
    panels = json.loads((run / "figure4/index.json").read_text())  # rank 0 drew the report's panels
    assert sorted(p.name for p in (run / "figure4").iterdir()) == sorted(
        ["index.json", *(f"{k}_{i}.png" for k in ("image", "pred", "truth") for i in panels["ids"])]
    )

    overrides = [
        f"ckpt={ddp['best_checkpoint']}",
        f"data.root={tiny_data}",
        "data.generate=null",
        "+data.limit_val=7",
    ]
    single = evaluate(make_cfg("eval", overrides, tmp_path / "eval"))
    assert single["metrics"] == ddp["metrics"]  # exactly: one summed confusion matrix either way
    assert single["per_class_iu"] == pytest.approx(ddp["per_class_iu"], nan_ok=True)


@pytest.mark.slow
def test_ddp_inside_a_multirun_gives_one_folder_per_job(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = ddp_cmd(
        tiny_data,
        tmp_path,
        "model=fcn32s,fcn16s",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${stage.variant}",
        multirun=True,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["fcn16s", "fcn32s"]
    for job in ("fcn32s", "fcn16s"):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["status"] == "ok" and results["variant"] == job
        assert (sweep / job / "train_rank1.log").is_file()  # rank 1 ran this job, here
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "logs").exists()
