"""``fcnlab-data check``: every check of a dataset over its whole train and val splits, all problems listed.

What training checks one problem at a time (the layout, ``classes.txt``, image/mask pairs, headers,
sizes, mask modes and values), here over every file, with a progress bar, each problem one line;
plus what training only counts: RGB colours ``classes.txt`` does not list (void in training), and
each class's share of the pixels. Works on any ``data=`` config (folder, shapes, VOC).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnlab.data.check import check_sample
from fcnlab.data.classes import VOID
from fcnlab.data.labels import CLASSES_FILE, classes_problems, describe_unknown
from fcnlab.data.loading import load_image, load_mask, read_folder_mask
from fcnlab.data.voc import Sample
from fcnlab.errors import FCNLabError


@dataclass
class Survey:
    class_names: list[str]
    problems: list[str] = field(default_factory=list)
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> pixels per class
    images: dict[str, np.ndarray] = field(default_factory=dict)  # split -> images holding each class
    counts: dict[str, int] = field(default_factory=dict)  # split -> samples
    notes: list[str] = field(default_factory=list)  # not wrong, worth a word: files not read, settings


def _labels(sample: Sample) -> tuple[np.ndarray, dict]:
    if sample.coding is None:
        return load_mask(sample.mask).numpy(), {}
    return read_folder_mask(sample.mask, sample.coding)


def survey_samples(splits: dict[str, Sequence[Sample]], report: Survey, bar: bool = True) -> Survey:
    """Decode every sample of ``splits``, adding each one's problem (if any) and its class pixels."""
    from tqdm import tqdm

    k = len(report.class_names)
    for split, samples in splits.items():
        pixels, images = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
        for sample in tqdm(samples, desc=f"check {split}", unit="image", disable=not bar, file=sys.stderr):
            try:
                check_sample(sample, "headers")
                load_image(sample.image)
                labels, unknown = _labels(sample)
            except FCNLabError as e:
                report.problems.append(str(e))
                continue
            if unknown:
                report.problems.append(describe_unknown(sample.mask, unknown, sample.coding.classes_file))
            counts = np.bincount(labels[labels != VOID], minlength=k)[:k]
            pixels += counts
            images += counts > 0
        report.pixels[split], report.images[split], report.counts[split] = pixels, images, len(samples)
    return report


def survey_config(data_cfg, bar: bool = True) -> Survey:
    """The survey of the dataset a composed ``data`` config describes."""
    if str(data_cfg.get("_target_", "")).endswith("FolderDataModule"):
        from fcnlab.data.folder import folder_samples

        root = data_cfg.get("root")
        if root in (None, ""):
            raise FCNLabError("fcnlab-data check data=folder needs data.root=DIR (or --root DIR)")
        notes: list[str] = []
        allow_overlap = data_cfg.get("allow_overlap", False)
        train, val, problems, _ = folder_samples(
            root, data_cfg.void_index, data_cfg.reduce_zero_label, allow_overlap, notes
        )
        classes, _ = classes_problems(Path(root) / CLASSES_FILE)
        names = list(classes.names) if classes is not None else []
        report = Survey(names, list(problems), notes=notes)
        if classes is None:
            return report
    else:
        from fcnlab.data.datamodule import SegmentationDataModule
        from fcnlab.data.voc import protocol_samples

        names = SegmentationDataModule(
            data_cfg.root, data_cfg.protocol, data_cfg.get("generate"), data_cfg.get("class_names")
        ).class_names
        train, val, _ = protocol_samples(data_cfg.root, data_cfg.protocol)
        report = Survey(list(names))
    return survey_samples({"train": train, "val": val}, report, bar)


def format_survey(report: Survey) -> str:
    splits = list(report.pixels)
    width = max([12, *(len(n) for n in report.class_names)])
    head = f"{'class':<{width}}" + "".join(f" {s + ' pixels %':>16} {s + ' images':>12}" for s in splits)
    lines = [head, "-" * len(head)]
    totals = {s: max(int(report.pixels[s].sum()), 1) for s in splits}
    for c, name in enumerate(report.class_names):
        row = f"{name:<{width}}"
        for s in splits:
            row += f" {100 * report.pixels[s][c] / totals[s]:16.3f} {int(report.images[s][c]):12d}"
        lines.append(row)
    lines.append(", ".join(f"{s}: {report.counts[s]} images" for s in splits))
    return "\n".join(lines)


def run_check(overrides: list[str], bar: bool = True) -> int:
    """Compose the train config with ``overrides``, survey its data, print; 2 if problems were found."""
    from fcnlab.config import compose_train_config

    cfg = compose_train_config(overrides, job="check")
    report = survey_config(cfg.data, bar)
    if report.pixels:
        print(format_survey(report))
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(
            f"error: {len(report.problems)} problem(s) in data.root={cfg.data.root}; "
            "fix them and run the check again",
            file=sys.stderr,
        )
        return 2
    print(f"data.root={cfg.data.root}: no problems found")
    return 0
