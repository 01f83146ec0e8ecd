"""``fcnlab-gpu-check`` (``make gpu-check``): the VOC presets on one CUDA GPU, measured and checked.

On generated VOC-size data and a random VGG16 under the ImageNet weights' file names, in this process,
through the trainer's own path: (1) the heavy and the paper presets' images/s, ms/iteration, share of
the time the GPU is busy (CUDA events around each step, read at the end: no sync in the loop, which
Lightning's ThroughputMonitor would add) and share spent waiting for data (Lightning's SimpleProfiler),
peak memory; (2) each preset from a checkpoint with a random (non-zero) scoring layer in true fp32
(TF32 off), TF32 and bf16-mixed: losses and score_fr update against true fp32, within ``TOLERANCE``
for the precision the preset ships with; (3) FCN-16s and FCN-8s (``init_from`` the stage before),
at-once, and FCN-32s under DDP on one GPU; (4) ``fcnlab-eval`` on seg11valid, timed in the process.
A failed run or check exits 1; ``--smoke`` runs it all on the CPU, tiny (the test suite does).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch

from fcnlab.config import compose_job

TOLERANCE = 2e-2  # relative: a precision against true fp32, on the losses and on the score_fr update
WEIGHT_FILES = ("vgg16-397923af.pth", "vgg16_from_caffe.pth")  # what model.pretrained reads in $TORCH_HOME
MODES = {"fp32": ("32-true", "highest"), "tf32": ("32-true", "high"), "bf16": ("bf16-mixed", "highest")}
SHIPPED = {"table2_voc_heavy": "fp32", "table2_voc": "bf16"}  # the precision each preset trains in
DATA_WAIT = "[_TrainingEpochLoop].train_dataloader_next"
RECORDS: dict[str, dict] = {}  # StepClock's figures, by run name


class CheckFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    """What one gpu-check runs: ``Plan()`` on CUDA, ``Plan.smoke()`` its CPU miniature."""

    trainer: str = "gpu"
    ddp: str = "ddp"
    steps: tuple[int, int, int, int] = (200, 20, 10, 10)  # heavy, paper (updates), precision, per model
    warmup: int = 10
    val_batches: int = 8
    # 500 x 500, VOC's largest size, every image alike: the paper preset's batches are full (its best case).
    data: tuple = (("sbd_train", 400), ("voc_val", 737), ("min_size", 500), ("max_size", 500))
    extra: tuple[str, ...] = ()

    @staticmethod
    def smoke() -> Plan:
        data = (("sbd_train", 4), ("voc_val", 3), ("min_size", 64), ("max_size", 64))
        tiny = ("model.backbone=vgg16_tiny", "model.pretrained=null")
        return Plan("cpu", "ddp_cpu", (3, 2, 2, 2), 1, 1, data, tiny)


class StepClock(L.Callback):
    """Times the optimizer steps after ``warmup``; its figures land in ``RECORDS[name]`` at the end."""

    def __init__(self, name: str, warmup: int) -> None:
        self.name, self.warmup, self.marks, self.losses, self.images = name, warmup, [], [], 0

    @staticmethod
    def _now(trainer: L.Trainer):
        if trainer.strategy.root_device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step >= self.warmup:
            if not self.marks:  # the window opens: this batch's wait for data is already recorded
                self.first_step = trainer.global_step
                torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
                self.waits = len(trainer.profiler.recorded_durations[DATA_WAIT]) - 1
            self.marks.append([self._now(trainer), None])
            self.images += len(batch[0])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.losses.append(outputs["loss"].detach())
        if self.marks and self.marks[-1][1] is None:
            self.marks[-1][1] = self._now(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        cuda = trainer.strategy.root_device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        span = (lambda a, b: a.elapsed_time(b) / 1e3) if cuda else (lambda a, b: b - a)
        wall, iterations = span(self.marks[0][0], self.marks[-1][1]), trainer.global_step - self.first_step
        RECORDS[self.name] = {
            "iterations_timed": iterations,
            "images_per_s": self.images / wall,
            "ms_per_iteration": 1e3 * wall / iterations,
            "busy_share": sum(span(a, b) for a, b in self.marks) / wall,
            "data_wait_share": sum(trainer.profiler.recorded_durations[DATA_WAIT][self.waits :]) / wall,
            "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
            "precision": str(trainer.precision),
            "losses": torch.stack(self.losses).float().tolist(),
        }


def prepare(plan: Plan, work: Path) -> Path:
    """A random VGG16 under every file name model.pretrained reads, and the generated VOC tree."""
    import torchvision

    from fcnlab.data.synthetic import SyntheticConfig, generate

    hub = work / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.vgg16().state_dict(), hub / WEIGHT_FILES[0])
    for name in WEIGHT_FILES[1:]:
        os.link(hub / WEIGHT_FILES[0], hub / name)
    fixed = {"seed": 0, "sbd_val": 1, "voc_train": 1, "voc_val_in_sbd_train": 1, "classification_size": 32}
    config = SyntheticConfig(**fixed, classification_train=20, classification_val=20, **dict(plan.data))
    return generate(work / "voc", config, workers=min(16, os.cpu_count() or 1))


def run(plan: Plan, work: Path, data: Path, name: str, experiment: str, steps: int, *extra: str) -> dict:
    """One training job of ``experiment`` (FCN-32s unless ``extra`` says) in this process; its figures."""
    from fcnlab.training.run import train

    overrides = [f"experiment={experiment}", "model=fcn32s", f"trainer={plan.trainer}", f"data.root={data}"]
    overrides += [f"paths.root_dir={work}", f"data.num_workers={min(8, os.cpu_count() or 1)}"]
    overrides += ["trainer.max_epochs=-1", f"trainer.max_steps={steps}"]
    overrides += [f"trainer.limit_val_batches={plan.val_batches}", "trainer.enable_progress_bar=false"]
    overrides += [f"+callbacks.clock._target_={__name__}.StepClock"]
    overrides += [f"+callbacks.clock.name={name}", f"+callbacks.clock.warmup={min(plan.warmup, steps - 1)}"]
    overrides += ["+trainer.profiler._target_=lightning.pytorch.profilers.SimpleProfiler", *plan.extra]
    overrides += [f"+trainer.profiler.dirpath={work / name}", "+trainer.profiler.filename=profile", *extra]
    try:
        results = train(compose_job("table2", overrides, work / name))
    except Exception as e:  # any failure of a run fails the check, named
        raise CheckFailed(f"{name}: {type(e).__name__}: {e}"[:400]) from e
    if results.get("status") != "ok":
        raise CheckFailed(f"{name}: the run finished without scores")
    return {**RECORDS.pop(name), "steps": results["steps"]}


def describe(name: str, r: dict) -> str:
    peak = f", peak memory {r['peak_memory_bytes'] / 2**30:.2f} GiB" if r["peak_memory_bytes"] else ""
    speed = f"{r['images_per_s']:.1f} images/s, {r['ms_per_iteration']:.1f} ms/iteration"
    busy = f"device busy {100 * r['busy_share']:.0f}%, waiting for data {100 * r['data_wait_share']:.0f}%"
    return f"{name}: {speed} over {r['iterations_timed']} iterations ({r['precision']}); {busy}{peak}"


load_state = functools.partial(torch.load, map_location="cpu", weights_only=False)


def scored_checkpoint(work: Path, name: str) -> Path:
    """``name``'s last checkpoint with a random scoring layer: precisions compared on real scores."""
    state, generator = load_state(work / name / "checkpoints" / "last.ckpt"), torch.Generator().manual_seed(0)
    for key, value in state["state_dict"].items():
        if key.startswith("model.score") and key.endswith("weight"):
            value.copy_(torch.randn(value.shape, generator=generator) * 0.01)
    torch.save(state, path := work / f"{name}_scored.ckpt")
    return path


def compare(plan: Plan, work: Path, data: Path, experiment: str, init: Path) -> dict:
    """TF32 and bf16-mixed against true fp32 from ``init``: the losses and the score_fr update."""
    start, seen, out = load_state(init)["state_dict"]["model.score_fr.weight"], {}, {}
    for mode, (precision, matmul) in MODES.items():
        name = f"{experiment}_{mode}"
        args = (f"init_from={init}", f"trainer.precision={precision}", f"float32_matmul_precision={matmul}")
        losses = run(plan, work, data, name, experiment, plan.steps[2], *args)["losses"]
        last = load_state(work / name / "checkpoints" / "last.ckpt")["state_dict"]["model.score_fr.weight"]
        shutil.rmtree(work / name / "checkpoints")  # ~2 GB a run, not needed again
        seen[mode] = (torch.tensor(losses), last - start)
    for mode in ("tf32", "bf16"):
        diff = [float((a - b).norm() / b.norm()) for a, b in zip(seen[mode], seen["fp32"], strict=True)]
        out[mode] = {"loss": diff[0], "update": diff[1], "agrees": max(diff) <= TOLERANCE}
    parts = "; ".join(f"{m} losses {d['loss']:.1e}, update {d['update']:.1e}" for m, d in out.items())
    print(f"{experiment} vs true fp32 over {plan.steps[2]} iterations: {parts} (tolerance {TOLERANCE:.0e})")
    if SHIPPED[experiment] != "fp32" and not out[SHIPPED[experiment]]["agrees"]:
        raise CheckFailed(f"{experiment}: its precision, {SHIPPED[experiment]}, is off true fp32")
    return out


def check(plan: Plan, work: Path) -> dict:
    """The four steps of the module doc on data generated under ``work``; their figures."""
    home = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(work / "torch_home")
    try:
        data, results = prepare(plan, work), {"plan": asdict(plan)}
        for name, experiment, steps in (("heavy", "table2_voc_heavy", 0), ("paper", "table2_voc", 1)):
            results[name] = run(plan, work, data, name, experiment, plan.steps[steps])
            print(describe(f"{experiment} (FCN-32s)", results[name]), flush=True)
        for name, experiment in (("heavy", "table2_voc_heavy"), ("paper", "table2_voc")):
            init = scored_checkpoint(work, name)
            results[f"{name}_precision"] = compare(plan, work, data, experiment, init)
        results["eval"] = evaluate(plan, work, data)  # before DDP, which leaves its process group
        for name, parent in (("fcn16s", "heavy"), ("fcn8s", "fcn16s"), ("fcn8s_atonce", None), ("ddp", None)):
            args = [f"init_from={work / parent / 'checkpoints' / 'last.ckpt'}"] if parent else []
            args += [f"trainer={plan.ddp}", "trainer.devices=1"] if name == "ddp" else [f"model={name}"]
            results[name] = run(plan, work, data, name, "table2_voc_heavy", plan.steps[3], *args)
            print(describe(f"table2_voc_heavy {name}", results[name]), flush=True)
        return results
    finally:  # this process as it was: TORCH_HOME, and no process group left by the DDP run
        os.environ.pop("TORCH_HOME") if home is None else os.environ.update(TORCH_HOME=home)
        torch.distributed.destroy_process_group() if torch.distributed.is_initialized() else None


def evaluate(plan: Plan, work: Path, data: Path) -> dict:
    """``fcnlab-eval`` of the heavy run's best checkpoint on seg11valid, timed in this process."""
    from fcnlab.inference.evaluate import evaluate as evaluate_cfg

    images = dict(plan.data)["voc_val"] - 1  # seg11valid: VOC val minus the one also in SBD train
    overrides = [f"ckpt={work / 'heavy' / 'checkpoints' / 'best.ckpt'}", "data=voc_sbd", f"data.root={data}"]
    overrides += [f"trainer={plan.trainer}", f"paths.root_dir={work}"]
    start = time.perf_counter()
    evaluate_cfg(compose_job("eval", overrides, work / "eval"))
    seconds = time.perf_counter() - start
    print(f"fcnlab-eval on {images} images: {seconds:.1f} s in this process, {images / seconds:.1f} images/s")
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}
