"""The real-data presets run end to end at VOC sizes: full-size backbones, ImageNet-layout weights.

A generated VOC2011 + SBD tree with images of VOC's sizes (333-500 px a side) stands in for the real
data, and randomly initialised torchvision state dicts (VGG16, AlexNet, GoogLeNet) saved under the real
file names in ``$TORCH_HOME`` for the ImageNet weights, so ``experiment=table2_voc_heavy``,
``experiment=table2_voc`` and ``experiment=table1_voc`` run exactly as a user's would, only for two
optimizer steps. Each VGG16 checkpoint is ~1 GB (weights and momentum): every test deletes its
checkpoints when done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from fcnlab.data.synthetic import SyntheticConfig, generate
from helpers.hang import HANG_GUARD_S

pytestmark = pytest.mark.slow

# model.pretrained -> the file it is read from in $TORCH_HOME/hub/checkpoints (torchvision key names).
PRETRAINED_FILES = {"imagenet": "vgg16-397923af.pth", "imagenet_caffe": "vgg16_from_caffe.pth"}
INPUT_SPACE = {"imagenet": "torchvision", "imagenet_caffe": "caffe"}  # implied by the weights
# Table 1's other backbones: torchvision's file names, and each one's first conv in the file.
TABLE1_FILES = {"alexnet": "alexnet-owt-7be5be79.pth", "googlenet": "googlenet-1378be20.pth"}
FIRST_CONV = {"vgg16": "features.0.weight", "alexnet": "features.0.weight", "googlenet": "conv1.conv.weight"}

VOC_SIZE_DATA = SyntheticConfig(
    seed=11,
    sbd_train=4,  # batch 1: two steps end inside the first epoch
    sbd_val=1,
    voc_val=2,
    voc_val_in_sbd_train=1,  # seg11valid: 1 image
    voc_train=1,
    min_size=333,  # VOC's images are at most 500 px a side, most of them 500 x 375 or 375 x 500
    max_size=500,
    classification_train=20,
    classification_val=20,
    classification_size=32,
)
CHECKED_LAYER = "features.28.weight"  # conv5_3: what no input space changes


@pytest.fixture(scope="session")
def voc_size_data(tmp_path_factory) -> str:
    return str(generate(tmp_path_factory.mktemp("voc_size") / "voc", VOC_SIZE_DATA, workers=1))


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A ``$TORCH_HOME`` whose hub/checkpoints hold a random VGG16 under every name model.pretrained reads."""
    home = tmp_path_factory.mktemp("torch_home")
    hub = home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.vgg16().state_dict()
    first, *others = (hub / name for name in PRETRAINED_FILES.values())
    torch.save(state, first)
    for path in others:
        os.link(first, path)
    torch.save(torchvision.models.alexnet().state_dict(), hub / TABLE1_FILES["alexnet"])
    googlenet = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(
        googlenet.state_dict(), hub / TABLE1_FILES["googlenet"]
    )  # with its aux heads, as torchvision's
    yield home, state[CHECKED_LAYER]
    for path in hub.iterdir():
        path.unlink()


@pytest.fixture
def run_dir(tmp_path):
    """This test's folder; the checkpoints written under it are deleted afterwards, pass or fail."""
    yield tmp_path
    for ckpt in tmp_path.rglob("*.ckpt"):
        ckpt.unlink()


def fcnlab_train(
    torch_home: Path, cwd: Path, *args: str, multirun: bool = False, config: str = "table2"
) -> subprocess.CompletedProcess:
    mode = ["-m"] if multirun else []
    cmd = [
        sys.executable,
        "-m",
        "fcnlab.cli.train",
        *mode,
        "--config-name",
        config,
        f"paths.root_dir={cwd}",
        *args,
    ]
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=cwd, env=env)


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def assert_finished_at(job: Path, steps: int, pretrained: str) -> dict:
    """results.json ok after ``steps`` updates, scored by a validation at that last step."""
    results = json.loads((job / "results.json").read_text())
    assert results["status"] == "ok", results.get("error")
    assert results["steps"] == steps and results["pretrained"] == pretrained
    assert set(results["metrics"]) == {"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}
    assert all(0 <= v <= 1 for v in results["metrics"].values())
    assert results["best_checkpoint"] == str(job / "checkpoints" / "best.ckpt")
    assert checkpoint(job / "checkpoints" / "best.ckpt")["global_step"] == steps
    assert checkpoint(job / "checkpoints" / "last.ckpt")["global_step"] == steps
    return results


def test_heavy_preset_32s_16s_8s_sweep_at_voc_size(voc_size_data, torch_home, run_dir):
    """The reference recipe as one multirun: each stage starts from its parent's best.ckpt (the resolver)."""
    home, imagenet_conv5_3 = torch_home
    sweep = run_dir / "sweep"
    proc = fcnlab_train(
        home,
        run_dir,
        "experiment=table2_voc_heavy",
        "trainer=cpu",  # the presets' GPU trainer, opted out of
        "hydra.sweeper.params.model='fcn32s,fcn16s,fcn8s'",
        f"hydra.sweep.dir={sweep}",
        f"data.root={voc_size_data}",
        "data.num_workers=0",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        multirun=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "fcn16s_seed0",
        "fcn32s_seed0",
        "fcn8s_seed0",
    ]
    parents = {"fcn32s": None, "fcn16s": "fcn32s", "fcn8s": "fcn16s"}
    for variant, parent in parents.items():
        job = sweep / f"{variant}_seed0"
        config = checkpoint(job / "checkpoints" / "best.ckpt")["fcnlab"]["config"]
        results = assert_finished_at(job, 2, config["model"]["pretrained"])
        expected_init = (
            None if parent is None else str(sweep / f"{parent}_seed0" / "checkpoints" / "best.ckpt")
        )
        assert results["init_from"] == expected_init
        assert config["model"]["backbone"] == "vgg16" and config["model"]["geometry"] == "faithful"
        assert config["loss"]["normalize"] is False and config["trainer"]["val_check_interval"] == 4000
        space = checkpoint(job / "checkpoints" / "best.ckpt")["hyper_parameters"]["input_space"]["name"]
        assert config["model"]["pretrained"] == "imagenet_caffe" and space == "caffe"
    # The backbone came from $TORCH_HOME (lr 1e-10 over two steps leaves it where it started).
    state = checkpoint(sweep / "fcn8s_seed0" / "checkpoints" / "best.ckpt")["state_dict"]
    torch.testing.assert_close(state[f"model.backbone.{CHECKED_LAYER}"], imagenet_conv5_3, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pretrained", ["imagenet"])  # the caffe space: the heavy sweep above, by default
def test_paper_preset_with_gradient_accumulation_at_voc_size(pretrained, voc_size_data, torch_home, run_dir):
    """Section 4.3's recipe, whole images accumulated: 4 images of 4 sizes (batches of 1), 2 images
    per update, one epoch = 2 updates."""
    home, imagenet_conv5_3 = torch_home
    job = run_dir / "run"
    proc = fcnlab_train(
        home,
        run_dir,
        "experiment=table2_voc",
        "trainer=cpu",
        "model=fcn32s",
        f"model.pretrained={pretrained}",
        f"hydra.run.dir={job}",
        f"data.root={voc_size_data}",
        "data.num_workers=0",
        "stage_epochs=1",
        "data.images_per_update=2",
        "trainer.enable_progress_bar=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = assert_finished_at(job, 2, pretrained)
    assert results["init_from"] is None and results["epochs"] == 1
    ckpt = checkpoint(job / "checkpoints" / "best.ckpt")
    assert ckpt["fcnlab"]["config"]["data"]["images_per_update"] == 2
    assert ckpt["fcnlab"]["config"]["loss"]["normalize"] == "image"
    assert ckpt["hyper_parameters"]["input_space"]["name"] == INPUT_SPACE[pretrained]
    moved = (ckpt["state_dict"][f"model.backbone.{CHECKED_LAYER}"] - imagenet_conv5_3).abs().max()
    assert 0 < moved < 1e-2  # started from the file's weights and took real steps (lr 1e-4)


def test_table1_preset_on_every_backbone_at_voc_size(voc_size_data, torch_home, run_dir):
    """Table 1's protocol (VOC2011 train -> val) on AlexNet, VGG16 and GoogLeNet from torchvision's files,
    each at the paper's learning rate and in its weights' input space, as one multirun."""
    home, _ = torch_home
    sweep = run_dir / "sweep"
    proc = fcnlab_train(
        home,
        run_dir,
        "experiment=table1_voc",
        "model.backbone=alexnet,vgg16,googlenet",
        f"hydra.sweep.dir={sweep}",
        f"data.root={voc_size_data}",
        "data.num_workers=0",
        "stage_epochs=2",  # VOC2011 train holds one image here: two epochs, two updates (each epoch's end)
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        multirun=True,
        config="table1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "alexnet_seed0",
        "googlenet_seed0",
        "vgg16_seed0",
    ]
    voc = Path(voc_size_data) / "VOCdevkit" / "VOC2011" / "ImageSets" / "Segmentation"
    hub = home / "hub" / "checkpoints"
    files = {"vgg16": PRETRAINED_FILES["imagenet"], **TABLE1_FILES}
    for backbone, space, lr in [
        ("alexnet", "torchvision", 1e-3),
        ("vgg16", "torchvision", 1e-4),
        ("googlenet", "googlenet", 5e-5),
    ]:
        job = sweep / f"{backbone}_seed0"
        results = json.loads((job / "results.json").read_text())
        assert results["status"] == "ok" and results["steps"] == 2 and results["pretrained"] == "imagenet"
        assert checkpoint(job / "checkpoints" / "best.ckpt")["global_step"] in (1, 2)  # best of 2 epochs
        assert results["variant"] == backbone and results["protocol"] == "voc2011"
        assert (job / "splits" / "train.txt").read_text().split() == (voc / "train.txt").read_text().split()
        assert (job / "splits" / "val.txt").read_text().split() == (voc / "val.txt").read_text().split()
        ckpt = checkpoint(job / "checkpoints" / "best.ckpt")
        config = ckpt["fcnlab"]["config"]
        assert config["model"]["backbone"] == backbone and config["model"]["geometry"] == "faithful"
        assert config["optimizer"]["lr"] == lr and ckpt["hyper_parameters"]["input_space"]["name"] == space
        first = torch.load(hub / files[backbone], weights_only=True)[FIRST_CONV[backbone]]
        key = "features." + FIRST_CONV[backbone].removeprefix("features.")
        last = checkpoint(job / "checkpoints" / "last.ckpt")["state_dict"][f"model.backbone.{key}"]
        moved = (last - first).abs().max()  # the first step's backbone gradient is 0 (score_fr starts at 0)
        assert 0 < moved < 0.1, backbone  # started from the file's weights and took real steps
