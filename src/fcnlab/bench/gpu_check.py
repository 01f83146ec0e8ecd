"""``fcnlab-gpu-check`` (``make gpu-check``): the real-data presets on a GPU, measured.

On a CUDA machine, on a generated VOC2011 + SBD tree of VOC-size images (333-500 px a side) and a
random VGG16 saved under the ImageNet weights' file names (speed and memory do not depend on the
weights' values), each through the real ``fcnlab-train`` / ``fcnlab-eval`` entry points:

1. the heavy preset (``table2_voc_heavy``, FCN-32s, batch 1) for 200 iterations;
2. the paper preset (``table2_voc``, FCN-32s, 20 images an update) for 20 updates;
   both: images/s, ms/iteration (after a warm-up), peak ``torch.cuda.max_memory_allocated``;
3. fp32 against ``bf16-mixed`` on the heavy preset's first 10 iterations (its loss is summed, ~1e5-1e6):
   the per-iteration losses and the update of the zero-initialised scoring layer must agree within
   ``BF16_TOLERANCE`` (relative); it says whether bf16 is safe for that loss;
4. ``fcnlab-eval`` on 736 images (seg11valid's size): seconds and images/s.

Prints one line per figure and writes them to ``--out`` (``results/gpu_check.json``). Without CUDA
it prints one line and exits 0. ``--smoke`` runs every step on the CPU with the tiny backbone and
tiny images (the test suite does, so the plumbing is checked where no GPU is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

BF16_TOLERANCE = 2e-2  # bf16-mixed vs fp32: relative difference of the losses and of the score_fr update
# File names model.pretrained reads in $TORCH_HOME/hub/checkpoints: torchvision's VGG16, torchfcn's Caffe one.
WEIGHT_FILES = ("vgg16-397923af.pth", "vgg16_from_caffe.pth")


@dataclass(frozen=True)
class Plan:
    """What one gpu-check runs; ``gpu()`` is the real check, ``smoke()`` its CPU miniature."""

    trainer: str
    heavy_steps: int
    paper_updates: int
    paper_accumulate: int
    compare_steps: int
    warmup: int
    val_batches: int  # validation batches during the training runs (eval is timed on its own)
    data: dict
    extra: tuple[str, ...] = field(default=())

    @staticmethod
    def gpu() -> Plan:
        data = {"sbd_train": 400, "voc_val": 737, "voc_val_in_sbd_train": 1, "min_size": 333, "max_size": 500}
        return Plan("gpu", 200, 20, 20, 10, 10, 8, data)

    @staticmethod
    def smoke() -> Plan:
        data = {"sbd_train": 4, "voc_val": 3, "voc_val_in_sbd_train": 1, "min_size": 64, "max_size": 96}
        tiny = ("model.backbone=vgg16_tiny", "model.pretrained=null")
        return Plan("cpu", 3, 2, 2, 2, 1, 1, data, tiny)


def generate_data(root: Path, plan: Plan) -> Path:
    from fcnlab.data.synthetic import SyntheticConfig, generate

    config = SyntheticConfig(
        seed=0,
        sbd_val=1,
        voc_train=1,
        classification_train=20,
        classification_val=20,
        classification_size=32,
        **plan.data,
    )
    return generate(root, config, workers=min(16, os.cpu_count() or 1))


def write_weights(torch_home: Path) -> None:
    """A random VGG16 (torchvision layout) under every file name model.pretrained reads."""
    import torchvision

    hub = torch_home / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    first, *others = (hub / name for name in WEIGHT_FILES)
    torch.save(torchvision.models.vgg16().state_dict(), first)
    for path in others:
        os.link(first, path)


class CheckFailed(RuntimeError):
    pass


def run_entry(module: str, args: list[str], work: Path, name: str) -> float:
    """``python -m <module> <args>`` with its output in ``work/<name>.log``; returns its wall seconds."""
    log = work / f"{name}.log"
    env = {**os.environ, "TORCH_HOME": str(work / "torch_home")}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise CheckFailed(f"{name}: python -m {module} exited {proc.returncode}; its log ends:\n{tail}")
    return seconds


def train_run(
    plan: Plan, work: Path, data: Path, name: str, experiment: str, steps: int, *extra: str
) -> dict:
    """One fcnlab-train job of ``experiment`` (FCN-32s) for ``steps`` iterations; the StepTimer's record."""
    out = work / f"{name}.json"
    args = [
        "--config-name",
        "table2",
        f"experiment={experiment}",
        "model=fcn32s",
        f"trainer={plan.trainer}",
        f"hydra.run.dir={work / name}",
        f"paths.root_dir={work}",
        f"data.root={data}",
        f"data.num_workers={min(8, os.cpu_count() or 1)}",
        "trainer.max_epochs=-1",
        f"trainer.max_steps={steps}",
        f"trainer.limit_val_batches={plan.val_batches}",
        "trainer.enable_progress_bar=false",
        "+callbacks.gpu_timer._target_=fcnlab.bench.step_timer.StepTimer",
        f"+callbacks.gpu_timer.out={out}",
        f"+callbacks.gpu_timer.warmup={min(plan.warmup, steps - 1)}",
        *plan.extra,
        *extra,
    ]
    run_entry("fcnlab.cli.train", args, work, name)
    return json.loads(out.read_text())


def scoring_layer(work: Path, name: str) -> torch.Tensor:
    """``score_fr.weight`` of run ``name``'s last checkpoint: zero-initialised, so it is the update made."""
    path = work / name / "checkpoints" / "last.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["state_dict"]
    return state["model.score_fr.weight"].float().clone()


def compare_precisions(
    fp32_losses: list[float],
    bf16_losses: list[float],
    fp32_update: torch.Tensor,
    bf16_update: torch.Tensor,
    tolerance: float = BF16_TOLERANCE,
) -> dict:
    """fp32 vs bf16-mixed: the largest relative difference of the per-step losses, and the relative
    difference of the scoring layer's update. The scoring layer starts at zero, so in the first
    iterations the loss is nearly N ln 21 in both precisions and the update (features x loss
    gradient, summed over ~200k pixels) is where bf16 would show; safe when both are within
    ``tolerance``.
    """
    pairs = list(zip(fp32_losses, bf16_losses, strict=False))
    if not pairs:
        raise CheckFailed("fp32 vs bf16-mixed: no losses were recorded")
    loss_diff = max(abs(b - f) / max(abs(f), 1e-12) for f, b in pairs)
    scale = float(fp32_update.norm())
    if scale == 0:
        raise CheckFailed("fp32 vs bf16-mixed: the scoring layer did not move; nothing to compare")
    update_diff = float((bf16_update - fp32_update).norm()) / scale
    return {
        "steps": len(pairs),
        "loss_max_rel_diff": loss_diff,
        "update_rel_diff": update_diff,
        "tolerance": tolerance,
        "bf16_safe": loss_diff <= tolerance and update_diff <= tolerance,
    }


def describe(name: str, record: dict) -> str:
    peak = record.get("peak_memory_bytes")
    memory = f", peak memory {peak / 2**30:.2f} GiB" if peak is not None else ""
    return (
        f"{name}: {record['images_per_s']:.1f} images/s, {record['ms_per_iteration']:.1f} ms/iteration "
        f"over {record['iterations_timed']} iterations ({record['precision']}){memory}"
    )


def _compare_precisions_run(plan: Plan, work: Path, data: Path) -> dict:
    """Step 3: the heavy preset's first iterations in fp32 and in bf16-mixed, compared (one line)."""
    runs = {}
    for precision in ("32-true", "bf16-mixed"):
        runs[precision] = train_run(
            plan,
            work,
            data,
            f"heavy_{precision}",
            "table2_voc_heavy",
            plan.compare_steps,
            f"trainer.precision={precision}",
            "seed=0",
        )
    comparison = compare_precisions(
        runs["32-true"]["losses"],
        runs["bf16-mixed"]["losses"],
        scoring_layer(work, "heavy_32-true"),
        scoring_layer(work, "heavy_bf16-mixed"),
    )
    verdict = (
        "bf16-mixed is safe for it"
        if comparison["bf16_safe"]
        else "bf16-mixed is NOT safe for it: keep trainer.precision=32-true"
    )
    print(
        f"heavy preset, fp32 vs bf16-mixed over {comparison['steps']} iterations (summed loss "
        f"~{abs(runs['32-true']['losses'][0]):.2e}): losses differ by at most "
        f"{comparison['loss_max_rel_diff']:.2e}, score_fr updates by {comparison['update_rel_diff']:.2e} "
        f"(relative; tolerance {BF16_TOLERANCE:.0e}); {verdict}"
    )
    return comparison


def _eval_run(plan: Plan, work: Path, data: Path) -> dict:
    """Step 4: ``fcnlab-eval`` of the heavy run's best checkpoint on seg11valid (one line)."""
    n_val = plan.data["voc_val"] - plan.data["voc_val_in_sbd_train"]
    eval_args = [
        f"ckpt={work / 'heavy' / 'checkpoints' / 'best.ckpt'}",
        "data=voc_sbd",
        f"data.root={data}",
        f"data.num_workers={min(8, os.cpu_count() or 1)}",
        f"trainer={plan.trainer}",
        f"hydra.run.dir={work / 'eval'}",
        f"paths.root_dir={work}",
    ]
    seconds = run_entry("fcnlab.cli.eval", eval_args, work, "eval")
    print(
        f"fcnlab-eval on {n_val} images: {seconds:.1f} s wall (process start included), "
        f"{n_val / seconds:.1f} images/s"
    )
    return {"images": n_val, "seconds": seconds, "images_per_s": n_val / seconds}


def check(plan: Plan, work: Path) -> dict:
    """The four steps of the module doc on a tree generated under ``work``; their figures."""
    data = generate_data(work / "voc", plan)
    write_weights(work / "torch_home")
    results: dict = {"plan": asdict(plan)}

    heavy = train_run(plan, work, data, "heavy", "table2_voc_heavy", plan.heavy_steps)
    print(describe("heavy preset (table2_voc_heavy, FCN-32s, batch 1)", heavy), flush=True)
    paper = train_run(
        plan,
        work,
        data,
        "paper",
        "table2_voc",
        plan.paper_updates,
        f"trainer.accumulate_grad_batches={plan.paper_accumulate}",
    )
    print(describe(f"paper preset (table2_voc, FCN-32s, {plan.paper_accumulate} images an update)", paper))
    comparison = _compare_precisions_run(plan, work, data)
    results.update(heavy=heavy, paper=paper, bf16_vs_fp32=comparison, eval=_eval_run(plan, work, data))
    return results
