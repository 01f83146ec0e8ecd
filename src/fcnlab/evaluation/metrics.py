"""The four FCN metrics (Section 5) from one confusion matrix accumulated over the whole set.

With n_ij the pixels of class i predicted as j, t_i = Σ_j n_ij and n_cl the classes present:
pixel accuracy Σ n_ii / Σ t_i; mean accuracy (1/n_cl) Σ n_ii / t_i; mean IU (1/n_cl) Σ n_ii /
(t_i + Σ_j n_ji − n_ii); frequency-weighted IU (Σ t_k)^-1 Σ t_i n_ii / (t_i + Σ_j n_ji − n_ii).
A class absent from both ground truth and prediction has an undefined IU and is left out of the
means (nan-mean), as in the reference ``score.py``; one predicted but absent counts with IU 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SegmentationScores:
    pixel_acc: float
    mean_acc: float
    mean_iu: float
    fw_iu: float
    per_class_iu: list[float]  # nan where the class is absent from ground truth and prediction

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        keys = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")
        return {f"{prefix}{k}": getattr(self, k) for k in keys}


def segmentation_scores(confusion: torch.Tensor | np.ndarray) -> SegmentationScores:
    """Scores of a (C, C) confusion matrix, rows = ground truth, columns = prediction."""
    hist = (
        confusion.detach().cpu().double().numpy()
        if isinstance(confusion, torch.Tensor)
        else np.asarray(confusion, dtype=np.float64)
    )
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {hist.shape}")
    total = hist.sum()
    if total == 0:
        raise ValueError("confusion matrix is empty: no labelled pixel was evaluated")
    diag, truth, predicted = np.diag(hist), hist.sum(1), hist.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / truth
        iu = diag / (truth + predicted - diag)
    freq = truth / total
    present = freq > 0
    return SegmentationScores(
        pixel_acc=float(diag.sum() / total),
        mean_acc=float(np.nanmean(acc)),
        mean_iu=float(np.nanmean(iu)),
        fw_iu=float((freq[present] * iu[present]).sum()),
        per_class_iu=[float(x) for x in iu],
    )
