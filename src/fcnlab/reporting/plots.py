"""PNG figures of a finished sweep: metrics beside the paper's, per-class IU, training curves and a
Figure-4-style grid (input, ground truth, FCN-32s, FCN-16s, FCN-8s) on a few validation images.

Reads files only: results.json, csv/metrics.csv and the panels each job wrote into figure4/."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from fcnlab.atomic import atomic_path
from fcnlab.reporting.table import METRIC_NAMES, METRICS, PAPER, record_class_names


def save_figure(fig, path: Path, dpi: int) -> None:
    """Write the PNG atomically: a kill never leaves half a figure under its name."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


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
    """IU per class (columns, under the runs' own class names) and variant (rows), mean over seeds.

    The figure widens with the number of classes up to 40 inches; past about 130 classes the numbers in
    the cells are left out (the colour still tells), past about 330 the labels shrink."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("per_class_iu")]
    if not ok:
        return
    variants = list(dict.fromkeys(r["variant"] for r in ok))
    names = record_class_names(ok[0])
    grid = np.full((len(variants), len(names)), np.nan)
    for i, v in enumerate(variants):
        runs = [r for r in ok if r["variant"] == v]
        for j, n in enumerate(names):
            values = [iu for r in runs if not math.isnan(iu := r["per_class_iu"].get(n, math.nan))]
            grid[i, j] = 100 * np.mean(values) if values else np.nan  # nan: the class never appeared
    width = min(40.0, max(8.0, 0.45 * len(names)))
    per_class = width / len(names)  # inches per column
    fontsize = max(2.0, min(7.0, 0.8 * 72 * per_class))
    fig, ax = plt.subplots(figsize=(width, 0.5 * len(variants) + 2))
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=fontsize)
    ax.set_yticks(range(len(variants)), variants, fontsize=8)
    for i in range(len(variants)):
        for j in range(len(names)):
            if per_class >= 0.3 and not np.isnan(grid[i, j]):
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
    if ax_iu.get_legend_handles_labels()[0]:  # no job logged a val score: no legend to draw
        ax_iu.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


FIGURE4_VARIANTS = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s"}


def _panel_index(record: dict) -> dict | None:
    """A job's ``figure4/index.json`` (written by fcnlab-train); None: it has none, or unreadable.

    Adds ``rgb``: the palette as a (256, 3) uint8 array.
    """
    try:
        index = json.loads((Path(record["job_dir"]) / "figure4" / "index.json").read_text())
        rgb = [[int(c[k : k + 2], 16) for k in (1, 3, 5)] for c in index["palette"]]
        files = {k: str(index["files"][k]) for k in ("image", "truth", "prediction")}
        ids = [str(i) for i in index["ids"]]
        return {**index, "ids": ids, "files": files, "rgb": np.asarray(rgb, dtype=np.uint8)}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB") if img.mode != "P" else img)


def figure4(records: list[dict], path: Path, variants: dict[str, str] = FIGURE4_VARIANTS) -> str | None:
    """Input | ground truth | FCN-32s | FCN-16s | FCN-8s on the jobs' panel images (first seed of each).

    ``variants`` (variant -> column title) picks the prediction columns (Table 1: one per backbone).
    Reads the panels each job wrote into ``<job dir>/figure4/``; returns None once drawn, else why not.
    """
    chosen: dict[str, tuple[dict, dict]] = {}
    for variant in variants:
        ok = [r for r in records if r.get("status") == "ok" and r["variant"] == variant]
        if not ok:
            return f"the sweep has no finished {variant} job"
        found = next(((r, ix) for r in ok if (ix := _panel_index(r)) is not None), None)
        if found is None:
            return (
                f"{Path(ok[0]['job_dir']) / 'figure4'} is missing or unreadable (a run from before "
                "fcnlab-train wrote prediction panels; retrain it to get the grid)"
            )
        chosen[variant] = found
    last = list(variants)[-1]
    ref_dir, ref = Path(chosen[last][0]["job_dir"]) / "figure4", chosen[last][1]
    if any(ix["ids"] != ref["ids"] for _, ix in chosen.values()):
        return f"the {', '.join(variants)} jobs drew their panels on different images (not the same data?)"
    palette, files = ref["rgb"], ref["files"]
    grid = []  # per image: input, ground truth, then each net's prediction as its job drew it
    try:
        for image_id in ref["ids"]:
            row = [
                _read_png(ref_dir / files["image"].format(id=image_id)),
                palette[_read_png(ref_dir / files["truth"].format(id=image_id))],
            ]
            for record, index in chosen.values():
                pred = Path(record["job_dir"]) / "figure4" / index["files"]["prediction"].format(id=image_id)
                row.append(palette[_read_png(pred)])
            grid.append(row)
    except OSError as e:  # a panel deleted or damaged after its job wrote it
        return f"{e.filename or 'a panel'}: unreadable ({e.strerror or e}); retrain that job to rewrite it"
    columns = 2 + len(variants)
    fig, axes = plt.subplots(len(grid), columns, figsize=(2.2 * columns, 2.3 * len(grid)), squeeze=False)
    titles = ["image", "ground truth", *variants.values()]
    for i, panels in enumerate(grid):
        for ax, panel, title in zip(axes[i], panels, titles, strict=True):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return None
