"""A CSV logger whose ``metrics.csv`` survives a resume: the earlier epochs stay, replayed steps appear once.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when a run starts in the same folder, so a
run resumed after a kill would lose the curves of the epochs before it. ``ResumableCSVLogger`` keeps
the file's rows; at the first write of the new run it drops the old rows at or after the first step the
new run logs (the part of an interrupted epoch that is trained again), then appends as usual.
"""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def _step(row: dict) -> float:
    try:
        return float(row.get("step", ""))
    except (TypeError, ValueError):
        return float("inf")


class _ResumableWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv
        self._kept: list[dict] | None = None
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            self._kept = list(reader)
            self.metrics_keys = sorted(reader.fieldnames or [])

    def save(self) -> None:
        if self._kept is not None and self.metrics:
            first = min(m["step"] for m in self.metrics)
            rows = [r for r in self._kept if _step(r) < first]
            tmp = f"{self.metrics_file_path}.{os.getpid()}.tmp"
            with open(tmp, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, self.metrics_file_path)
            self._kept = None
        super().save()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that continues an existing ``metrics.csv`` instead of deleting it (see module doc)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ResumableWriter(log_dir=self.log_dir)
        return self._experiment
