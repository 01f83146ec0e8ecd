"""PNG figures of a finished sweep: metrics beside the paper's, per-class IU, training curves and a
Figure-4-style grid (input, ground truth, FCN-32s, FCN-16s, FCN-8s) on a few validation images."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from fcnlab.reporting.table import METRIC_NAMES, METRICS, PAPER


def save_figure(fig, path: Path, dpi: int) -> None:
    """Write the PNG beside its target, then rename: a kill never leaves half a figure under its name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, format="png")
    tmp.replace(path)


def metrics_vs_paper(rows: list[dict], path: Path) -> None:
    variants = [r for r in rows if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), sharey=True)
    x = np.arange(len(variants))
    for ax, m in zip(axes, METRICS, strict=True):
        ours = [r[m] for r in variants]
        err = [r[f"{m}_std"] for r in variants]
        paper = [
            PAPER[r["variant"]][METRICS.index(m)] if r["variant"] in PAPER else math.nan for r in variants
        ]
        ax.bar(x - 0.2, ours, 0.4, yerr=err, label="fcnlab (this run)", color="#3b75af")
        ax.bar(x + 0.2, paper, 0.4, label="paper (VOC2011)", color="#aaaaaa")
        ax.set_xticks(x, [r["variant"] for r in variants], rotation=40, ha="right", fontsize=8)
        ax.set_title(METRIC_NAMES[m])
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def per_class_heatmap(records: list[dict], path: Path) -> None:
    ok = [r for r in records if r.get("status") == "ok" and r.get("per_class_iu")]
    if not ok:
        return
    variants = list(dict.fromkeys(r["variant"] for r in ok))
    names = list(ok[0]["per_class_iu"])
    grid = np.full((len(variants), len(names)), np.nan)
    for i, v in enumerate(variants):
        runs = [r for r in ok if r["variant"] == v]
        for j, n in enumerate(names):
            grid[i, j] = 100 * np.nanmean([r["per_class_iu"].get(n, np.nan) for r in runs])
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names)), 0.5 * len(variants) + 2))
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(variants)), variants, fontsize=8)
    for i in range(len(variants)):
        for j in range(len(names)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if grid[i, j] < 60 else "black",
                )
    fig.colorbar(im, ax=ax, label="IU %")
    ax.set_title("per-class IU (mean over seeds)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def training_curves(records: list[dict], path: Path) -> None:
    fig, (ax_loss, ax_iu) = plt.subplots(1, 2, figsize=(11, 3.6))
    for r in records:
        log = Path(r["job_dir"]) / "csv" / "metrics.csv"
        if not log.is_file():
            continue
        with log.open() as f:
            rows = list(csv.DictReader(f))
        label = f"{r['variant']} s{r.get('seed')}"
        loss = [(int(x["epoch"]), float(x["train/loss_epoch"])) for x in rows if x.get("train/loss_epoch")]
        iu = [(int(x["epoch"]), 100 * float(x["val/mean_iu"])) for x in rows if x.get("val/mean_iu")]
        if loss:
            ax_loss.plot(*zip(*loss, strict=False), label=label)
        if iu:
            ax_iu.plot(*zip(*iu, strict=False), marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax_iu.set(xlabel="epoch", ylabel="val mean IU %", title="validation mean IU")
    ax_iu.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def figure4(records: list[dict], path: Path, num_images: int = 4) -> bool:
    """Input | ground truth | FCN-32s | FCN-16s | FCN-8s on a few validation images (first seed)."""
    import torch
    from torchvision import tv_tensors

    from fcnlab.data.classes import voc_palette
    from fcnlab.data.transforms import eval_transform
    from fcnlab.data.voc import load_sample, protocol_samples
    from fcnlab.training.module import load_module

    chosen = {}
    for r in records:
        if (
            (
                r.get("status") == "ok"
                and r["variant"] in ("fcn32s", "fcn16s", "fcn8s")
                and r["variant"] not in chosen
            )
            and r.get("best_checkpoint")
            and Path(r["best_checkpoint"]).is_file()
        ):
            chosen[r["variant"]] = r
    if len(chosen) < 3:
        return False
    ref = chosen["fcn8s"]
    _, val, _ = protocol_samples(ref["data_root"], ref["protocol"])
    # Prefer images with several classes: the differences between strides show on small objects.
    samples = sorted(val[:40], key=lambda s: -len(load_sample(s)[1].unique()))[:num_images]
    modules = {v: load_module(chosen[v]["best_checkpoint"]).eval() for v in ("fcn32s", "fcn16s", "fcn8s")}
    palette = voc_palette()
    fig, axes = plt.subplots(len(samples), 5, figsize=(11, 2.3 * len(samples)), squeeze=False)
    for i, sample in enumerate(samples):
        image, mask = load_sample(sample)
        panels = [image.permute(1, 2, 0).numpy(), palette[mask.numpy()]]
        with torch.inference_mode():
            for module in modules.values():  # each net in its own checkpoint's input space
                x = eval_transform(module.input_space)(tv_tensors.Image(image))
                panels.append(palette[module(x.as_subclass(torch.Tensor)[None]).argmax(1)[0].numpy()])
        for ax, panel, title in zip(
            axes[i], panels, ["image", "ground truth", "FCN-32s", "FCN-16s", "FCN-8s"], strict=True
        ):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return True
