"""Configs compose; every model trains on generated data through the real entry point; eval agrees."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

from fcnlab.config import CONF_DIR, compose_job
from fcnlab.errors import FCNLabError
from fcnlab.inference.evaluate import evaluate
from fcnlab.models import backbone_spec, create_model
from fcnlab.models.vgg import VGGClassifier, vgg16_tiny_spec
from fcnlab.training.run import train
from fcnlab.wandb_runs import finish_wandb
from helpers.hang import HANG_GUARD_S

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def make_cfg(config_name: str = "train", overrides: list[str] = (), tmp_path: Path | None = None):
    """Compose like ``@hydra.main`` does, with this test's tmp dir as the job's output and root dir."""
    cfg = compose_job(config_name, overrides, tmp_path)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
    return cfg


def tiny_overrides(data_root: str, *extra: str) -> list[str]:
    """Generated test data, no pretraining, a few small batches on CPU."""
    return [
        f"data.root={data_root}",
        "data.generate=null",
        "data.crop_size=48",
        "data.batch_size=4",
        "data.num_workers=0",
        "model.pretrained=null",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def train_command(data_root: str, tmp_path: Path, *extra: str, multirun: bool = False) -> list[str]:
    """``python -m fcnlab.cli.train`` on the tiny data, for tests that need a real process (kill, DDP)."""
    mode = ["-m"] if multirun else []
    return [
        sys.executable,
        "-m",
        "fcnlab.cli.train",
        *mode,
        f"paths.root_dir={tmp_path}",
        *tiny_overrides(data_root),
        *extra,
    ]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment, tmp_path):
    for model in ("fcn32s", "fcn16s", "fcn32s_long"):
        cfg = make_cfg("table2", [f"experiment={experiment}", f"model={model}"], tmp_path)
        resolved = {
            k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg
            if k != "hydra"
        }
        assert resolved["trainer"]["_target_"] == "lightning.Trainer"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_model_builds_its_network(experiment, tmp_path):
    """Each preset x model composes to options its backbone takes (a merged-dict mix-up fails here)."""
    for model in MODELS:
        cfg = make_cfg("table2", [f"experiment={experiment}", f"model={model}"], tmp_path)
        named = [n for n, p in inspect.signature(create_model).parameters.items() if p.kind != p.VAR_KEYWORD]
        assert set(cfg.model) <= set(named), (experiment, model)  # the model group: create_model's keywords
        with torch.device("meta"):  # pretrained=None: the weights are the slow VOC-size runs' concern
            net = create_model(**{**cfg.model, "pretrained": None})
        assert net.backbone.spec == backbone_spec(cfg.model.backbone), (experiment, model)
        assert net.backbone.geometry == cfg.model.geometry
    expected = {"table2_shapes": "vgg16_tiny", "table2_voc": "vgg16", "table2_voc_heavy": "vgg16"}
    expected |= {"table1_shapes": "vgg16_tiny", "table1_voc": "vgg16"}  # their sweeps set model.backbone
    assert cfg.model.backbone == expected[experiment]


def test_table2_voc_preset_is_the_papers_recipe(tmp_path):
    for model, lr in (("fcn32s", 1e-4), ("fcn16s", 1e-6), ("fcn8s", 1e-6), ("fcn32s_fixed", 1e-4)):
        cfg = make_cfg("table2", ["experiment=table2_voc", f"model={model}"], tmp_path)
        assert cfg.optimizer.lr == pytest.approx(lr)
        assert (cfg.optimizer._target_, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
            "torch.optim.SGD",
            0.9,
            5e-4,
        )
        assert cfg.data.images_per_update == 20 and cfg.loss.normalize == "image"  # 20 single images a step
        assert cfg.trainer.accumulate_grad_batches == 1 and cfg.trainer.accelerator == "gpu"
        assert (cfg.model.backbone, cfg.model.geometry, cfg.model.pretrained) == (
            "vgg16",
            "faithful",
            "imagenet",
        )
        assert cfg.model.learn_upsampling is True and cfg.loss.bias_lr_mult == 2.0
        assert cfg.get("scheduler") in (None, {})
    assert make_cfg("table2", ["experiment=table2_voc", "model=fcn32s_fixed"], tmp_path).model.freeze_backbone


def test_table2_voc_heavy_preset_is_the_reference_recipe(tmp_path):
    for model, lr in (("fcn32s", 1e-10), ("fcn16s", 1e-12), ("fcn8s", 1e-14), ("fcn8s_atonce", 1e-10)):
        cfg = make_cfg("table2", ["experiment=table2_voc_heavy", f"model={model}"], tmp_path)
        assert cfg.optimizer.lr == pytest.approx(lr, rel=1e-9)
        assert (cfg.optimizer.momentum, cfg.optimizer.weight_decay, cfg.data.batch_size) == (0.99, 5e-4, 1)
        assert cfg.data.images_per_update is None and cfg.trainer.precision == "32-true"
        assert cfg.trainer.accelerator == "gpu" and cfg.float32_matmul_precision == "highest"
        assert cfg.loss.normalize is False and cfg.model.learn_upsampling is False
        assert cfg.trainer.max_steps == (300_000 if model == "fcn8s_atonce" else 100_000)
        assert (cfg.trainer.val_check_interval, cfg.trainer.check_val_every_n_epoch) == (4000, None)
    for control, lr in (("fcn32s_mid", 1e-12), ("fcn32s_long", 1e-14)):  # the stages they match: 16s, 8s
        cfg = make_cfg("table2", ["experiment=table2_voc_heavy", f"model={control}"])
        assert (cfg.trainer.max_steps, cfg.optimizer.lr) == (100_000, pytest.approx(lr, rel=1e-9))


def test_table2_sweep_stages_and_control(tmp_path):
    """One stage a row; the control chain fcn32s -> fcn32s_mid -> fcn32s_long mirrors 32s -> 16s -> 8s."""
    stage_epochs = make_cfg("table2", ["model=fcn32s"], tmp_path).stage_epochs
    for model in ("fcn32s", "fcn16s", "fcn8s", "fcn32s_mid", "fcn32s_long"):
        assert make_cfg("table2", [f"model={model}"], tmp_path).trainer.max_epochs == stage_epochs
    assert make_cfg("table2", ["model=fcn32s", "hydra.sweep.dir=/sweep"], tmp_path).init_from is None
    for model, parent in (("fcn8s", "fcn16s"), ("fcn32s_mid", "fcn32s"), ("fcn32s_long", "fcn32s_mid")):
        cfg = make_cfg("table2", [f"model={model}", "seed=2", "hydra.sweep.dir=/sweep"], tmp_path)
        assert cfg.init_from == f"/sweep/{parent}_seed2/checkpoints/best.ckpt"
        assert cfg.model == make_cfg("table2", ["model=fcn32s"], tmp_path).model or model == "fcn8s"


@pytest.mark.parametrize("trainer", sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml")))
def test_every_trainer_composes_and_cpu_ones_build(trainer, tmp_path):
    from hydra.utils import instantiate

    cfg = make_cfg("train", [f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.Trainer"
    if cfg.trainer.accelerator == "cpu":
        built = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert built.num_devices == cfg.trainer.devices


def test_unknown_option_is_refused():
    with pytest.raises(ConfigCompositionException):
        make_cfg("train", ["model.no_such_option=1"])
    with pytest.raises(ConfigCompositionException):
        make_cfg("train", ["model=fcn4s"])


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model(model, tiny_data, tmp_path):
    cfg = make_cfg("train", tiny_overrides(tiny_data, f"model={model}", "debug=fast"), tmp_path)
    results = train(cfg)
    assert results["variant"] == model and results["model"] == cfg.model.name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.num_classes=5", "model.num_classes=5 but the data has 21"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("optimizer.lr=-1e-3", "optimizer.lr=-0.001"),
        ("init_from=/nonexistent/best.ckpt", "init_from=/nonexistent/best.ckpt: no such file"),
        ("data.protocol=coco", "unknown data.protocol"),
    ],
)
def test_bad_config_is_caught_before_training(override, message, tiny_data, tmp_path):
    cfg = make_cfg("train", tiny_overrides(tiny_data, override, "debug=fast"), tmp_path)
    with pytest.raises(FCNLabError, match=message.replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_init_from_another_family_is_refused(tiny_data, tmp_path):
    classifier = tmp_path / "classifier.pth"
    torch.save(VGGClassifier(vgg16_tiny_spec()).state_dict(), classifier)
    cfg = make_cfg("train", tiny_overrides(tiny_data, f"init_from={classifier}", "debug=fast"), tmp_path)
    with pytest.raises(FCNLabError, match="not an FCN checkpoint"):
        train(cfg)


def test_frozen_backbone_trains_only_the_head(tiny_data, tmp_path, caplog):
    cfg = make_cfg("train", tiny_overrides(tiny_data, "model=fcn32s_fixed", "debug=fast"), tmp_path)
    with caplog.at_level("INFO"):
        train(cfg)
    assert "fcn32s: 10,773 of" in caplog.text  # 512 fc7 channels × 21 classes + 21 biases


@pytest.mark.slow
def test_eval_reproduces_the_metrics_logged_at_the_end_of_training(tiny_data, tmp_path):
    cfg = make_cfg("train", tiny_overrides(tiny_data, "model=fcn16s", "trainer.max_epochs=2"), tmp_path)
    results = train(cfg)
    assert results["status"] == "ok" and Path(results["best_checkpoint"]).is_file()
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == results["metrics"]
    ckpt = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)
    saved = ckpt["fcnlab"]
    assert saved["config"]["model"]["name"] == "fcn16s" and saved["git_sha"]
    assert saved["config"]["stage"] == {"variant": "fcn16s", "parent": "fcn32s"}
    stored = ckpt["hyper_parameters"]["model"]  # create_model's keywords, the backbone's defaults filled in
    assert stored["backbone_kwargs"] == {"width_divisor": 8, "pool5_size": 3, "dropout": 0.0}
    assert not {"variant", "parent", "stages", "input_space"} & set(stored)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not list((tmp_path / "checkpoints").glob("*.partial"))
    eval_dir = tmp_path / "eval"
    ecfg = make_cfg("eval", [f"ckpt={results['best_checkpoint']}", *tiny_overrides(tiny_data)[:5]], eval_dir)
    evaluated = evaluate(ecfg)
    for key, value in results["metrics"].items():
        assert evaluated["metrics"][key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.slow
def test_one_batch_overfit_reaches_95_percent(tiny_data, tmp_path):
    """Through the Lightning path with debug=overfit: the tiny FCN-8s learns one batch by heart."""
    from fcnlab.data.transforms import pad_collate
    from fcnlab.training import load_module

    overrides = tiny_overrides(
        tiny_data,
        "model=fcn8s",
        "debug=overfit",
        "optimizer=adam",
        "optimizer.lr=3e-3",
        "trainer.max_epochs=150",
        "trainer.check_val_every_n_epoch=150",
        "data.batch_size=2",
        "data.crop_size=null",
    )
    cfg = make_cfg("train", overrides, tmp_path)
    train(cfg)
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    images, masks = pad_collate([datamodule.train_set[0], datamodule.train_set[1]])  # overfit: no shuffle
    module = load_module(str(tmp_path / "checkpoints" / "last.ckpt")).eval()
    with torch.inference_mode():
        pred = module(images).argmax(1)
    valid = masks != 255
    accuracy = (pred[valid] == masks[valid]).float().mean().item()
    assert accuracy >= 0.95, accuracy


class ValidationSteps(L.Callback):
    """Appends the global step of every validation during fit to ``path`` (one line each)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            with self.path.open("a") as f:
                f.write(f"{trainer.global_step}\n")


def run_counting_validations(tiny_data: str, tmp_path: Path, *extra: str) -> tuple[dict, list[int]]:
    steps = tmp_path / "val_steps.txt"
    recorder = [
        f"+callbacks.val_steps._target_={__name__}.ValidationSteps",
        f"+callbacks.val_steps.path={steps}",
    ]
    overrides = tiny_overrides(tiny_data, "model=fcn32s", "trainer.limit_val_batches=3", *recorder, *extra)
    results = train(make_cfg("train", overrides, tmp_path / "run"))
    return results, [int(line) for line in steps.read_text().split()]


def checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_max_steps_ending_mid_epoch_is_validated_at_the_last_step(tiny_data, tmp_path):
    """6 batches an epoch, max_steps=3: the only validation is at step 3, and best.ckpt is that step."""
    results, validated = run_counting_validations(
        tiny_data, tmp_path, "trainer.max_epochs=-1", "trainer.max_steps=3"
    )
    assert validated == [3]
    assert results["status"] == "ok" and results["steps"] == 3
    checkpoints = tmp_path / "run" / "checkpoints"
    assert checkpoint_step(checkpoints / "best.ckpt") == checkpoint_step(checkpoints / "last.ckpt") == 3


def test_step_interval_validates_across_epochs_and_at_the_end(tiny_data, tmp_path):
    """val_check_interval=4 over 6-batch epochs, 10 steps: steps 4, 8 and the last one, 10."""
    results, validated = run_counting_validations(
        tiny_data,
        tmp_path,
        "trainer.max_epochs=-1",
        "trainer.max_steps=10",
        "trainer.val_check_interval=4",
        "trainer.check_val_every_n_epoch=null",
    )
    assert validated == [4, 8, 10] and results["steps"] == 10
    checkpoints = tmp_path / "run" / "checkpoints"
    assert checkpoint_step(checkpoints / "best.ckpt") in validated
    assert checkpoint_step(checkpoints / "last.ckpt") == 10  # epoch ends and the end, for resume


def test_epoch_end_runs_are_validated_once_per_epoch(tiny_data, tmp_path):
    results, validated = run_counting_validations(tiny_data, tmp_path, "trainer.max_epochs=2")
    assert validated == [6, 12] and results["steps"] == 12


def test_interrupted_checkpoint_write_leaves_no_file(tmp_path, monkeypatch):
    from lightning import Trainer

    from fcnlab.training.callbacks import AtomicModelCheckpoint

    callback = AtomicModelCheckpoint(dirpath=str(tmp_path))
    trainer = Trainer(logger=False, enable_progress_bar=False, callbacks=[callback])

    def dies_mid_write(path, weights_only=False):
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        callback._save_checkpoint(trainer, str(tmp_path / "best.ckpt"))
    assert not (tmp_path / "best.ckpt").exists()  # only the .partial, never a file that looks complete


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb", "[csv,tensorboard]", "[csv,wandb]"])
def test_each_logger_records_the_run(logger, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg(
        "train",
        tiny_overrides(
            tiny_data,
            f"logger={logger}",
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=2",
        ),
        tmp_path,
    )
    try:
        train(cfg)
    finally:
        finish_wandb()
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert ("metrics.csv" in written) == ("csv" in logger)
    assert any(n.startswith("events.out.tfevents") for n in written) == ("tensorboard" in logger)
    assert any(n.endswith(".wandb") for n in written) == ("wandb" in logger)


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("optimizer.lr=abc", "optimizer.lr"),
        ("seed=abc", "seed"),
        ("seed=1.5", "seed"),
        ("seed=-1", "seed"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.max_epochs=-2", "trainer.max_epochs"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=true", "data.batch_size"),
        ("data.val_batch_size=0", "data.val_batch_size"),
        ("data.crop_size=0", "data.crop_size"),
        ("data.num_workers=-1", "data.num_workers"),
        ("optimizer.momentum=abc", "optimizer.momentum"),
        ("trainer.limit_train_batches=abc", "trainer.limit_train_batches"),
    ],
)
def test_scalar_option_of_wrong_type_or_range_is_one_line_naming_it(override, option, tmp_path):
    from fcnlab.training.settings import check_config

    cfg = make_cfg("train", [override], tmp_path)
    with pytest.raises(FCNLabError) as info:
        check_config(cfg)
    assert str(info.value).startswith(f"{option}=") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override", ["trainer.max_epochs=-1", "data.crop_size=null", "data.num_workers=null"]
)
def test_scalar_options_that_mean_no_limit_are_accepted(override, tmp_path):
    from fcnlab.training.settings import check_config

    check_config(make_cfg("train", [override, "trainer.max_steps=10"], tmp_path))


def test_init_from_a_folder_without_a_checkpoint_says_what_to_give(tmp_path):
    from fcnlab.training.settings import check_config

    cfg = make_cfg("train", [f"init_from={tmp_path}"], tmp_path)
    with pytest.raises(FCNLabError, match=r"is a folder, not a checkpoint file; give the checkpoint file"):
        check_config(cfg)


@pytest.mark.slow
def test_a_refused_rerun_never_touches_the_finished_record(tiny_data, tmp_path):
    run = tmp_path / "run"
    limits = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
    command = train_command(tiny_data, tmp_path, "model=fcn32s", *limits, f"hydra.run.dir={run}")
    first = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    finished = {name: (run / name).read_bytes() for name in ("results.json", "job.json")}
    assert json.loads(finished["results.json"])["status"] == "ok"
    for typo, said in (
        ("optimizer.lr=0", "error: optimizer.lr=0: the learning rate must be positive"),
        ("model=fcn16s", f"error: {run} holds a run of other overrides"),  # another job's folder
    ):
        again = subprocess.run(
            [*command, typo], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path
        )
        assert again.returncode == 2 and said in again.stderr, again.stderr[-3000:]
        assert {name: (run / name).read_bytes() for name in finished} == finished, typo


# The generated data's 21 classes under a user's names (spaces, a slash, unicode, names that only
# differ by characters a logger key cannot hold) and colours.
USER_CLASSES = [
    "background",
    "road / sidewalk",
    "café",
    "a b",
    "a_b",
    *(f"class {i}" for i in range(5, 21)),
]
USER_COLORS = [[(7 * i) % 256, (40 + 11 * i) % 256, (200 - 9 * i) % 256] for i in range(21)]


def class_overrides() -> list[str]:
    names = ",".join(f"'{n}'" for n in USER_CLASSES)
    colors = ",".join(f"[{r},{g},{b}]" for r, g, b in USER_COLORS)
    return [f"data.class_names=[{names}]", f"data.class_colors=[{colors}]"]


@pytest.fixture(scope="module")
def user_class_run(tiny_data, tmp_path_factory) -> tuple[dict, Path]:
    """A few steps of a tiny FCN-32s on the generated data under USER_CLASSES / USER_COLORS."""
    out = tmp_path_factory.mktemp("user_classes")
    extra = ["model=fcn32s", "logger=[csv,tensorboard]", "debug=limit", "trainer.max_epochs=1"]
    cfg = make_cfg("train", tiny_overrides(tiny_data, *extra, *class_overrides()), out)
    return train(cfg), out


@pytest.mark.slow
def test_user_classes_reach_the_checkpoint_results_and_logs(user_class_run):
    results, out = user_class_run
    record = json.loads((out / "results.json").read_text())
    assert record["class_names"] == USER_CLASSES and record["class_colors"] == USER_COLORS
    assert list(record["per_class_iu"]) == USER_CLASSES  # the names as given, in class order
    hparams = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)[
        "hyper_parameters"
    ]
    assert hparams["class_names"] == USER_CLASSES and hparams["class_colors"] == USER_COLORS
    from fcnlab.training import load_module

    module = load_module(results["best_checkpoint"])  # the checkpoint alone names and colours them
    assert module.class_names == USER_CLASSES and module.class_colors == USER_COLORS
    # Logger keys: one slash (no nested panels), no spaces (TensorBoard would rename them with a warning).
    header = (out / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    keys = [h.removeprefix("val_iu/") for h in header if h.startswith("val_iu/")]
    assert "background" in keys and len(keys) == len(set(keys))
    assert set(keys) <= {"background", "road___sidewalk", "café", "a_b_3", "a_b_4"} | {
        f"class_{i}" for i in range(5, 21)
    }


@pytest.mark.slow
def test_eval_scores_under_the_checkpoints_classes_and_refuses_others(user_class_run, tiny_data, tmp_path):
    from fcnlab.inference.evaluate import format_table

    results, _ = user_class_run
    base = [f"ckpt={results['best_checkpoint']}", *tiny_overrides(tiny_data)[:5]]
    evaluated = evaluate(make_cfg("eval", [*base, *class_overrides()], tmp_path / "same"))
    assert list(evaluated["per_class_iu"]) == USER_CLASSES and evaluated["class_colors"] == USER_COLORS
    table = format_table(evaluated).splitlines()
    assert any(line.startswith("road / sidewalk ") for line in table)
    assert any(line.startswith("café ") for line in table)
    with pytest.raises(FCNLabError) as info:  # the data's default (VOC) names are other classes
        evaluate(make_cfg("eval", base, tmp_path / "other"))
    assert str(info.value) == (
        f"ckpt={results['best_checkpoint']} was trained on classes background, road / sidewalk, café, "
        "a b, a_b, class 5, … (21 in all) but the data's class 1 is 'aeroplane', not 'road / sidewalk'; "
        "evaluate on the data it was trained for (same classes, same order)"
    )


def test_logger_keys_of_class_names_are_safe_and_distinct():
    from fcnlab.data.classes import metric_keys

    keys = metric_keys(["road / sidewalk", "café", "a b", "a_b", "x.y-z", "日本"])
    assert keys == ["road___sidewalk", "café", "a_b_2", "a_b_3", "x.y-z", "日本"]
