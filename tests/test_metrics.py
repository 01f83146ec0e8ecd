"""The four FCN metrics against hand-computed confusion matrices, and their accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from fcnlab.evaluation import segmentation_scores


def test_two_classes_by_hand():
    # rows: truth, cols: prediction. class 0: 8 px, 6 right; class 1: 4 px, 3 right.
    s = segmentation_scores(np.array([[6, 2], [1, 3]]))
    assert s.pixel_acc == pytest.approx(9 / 12)
    assert s.mean_acc == pytest.approx((6 / 8 + 3 / 4) / 2)
    iu0, iu1 = 6 / (8 + 7 - 6), 3 / (4 + 5 - 3)
    assert s.per_class_iu == pytest.approx([iu0, iu1])
    assert s.mean_iu == pytest.approx((iu0 + iu1) / 2)
    assert s.fw_iu == pytest.approx(8 / 12 * iu0 + 4 / 12 * iu1)


def test_absent_class_is_left_out_of_the_means():
    hist = np.array([[5, 1, 0], [2, 4, 0], [0, 0, 0]])  # class 2 neither in truth nor predicted
    s = segmentation_scores(hist)
    assert math.isnan(s.per_class_iu[2])
    assert s.mean_iu == pytest.approx((5 / 8 + 4 / 7) / 2)
    assert s.mean_acc == pytest.approx((5 / 6 + 4 / 6) / 2)


def test_class_predicted_but_not_in_truth_counts_zero_iu():
    hist = np.array([[5, 1, 2], [2, 4, 0], [0, 0, 0]])  # class 2 predicted twice, never true
    s = segmentation_scores(hist)
    assert s.per_class_iu[2] == 0.0
    assert s.mean_iu == pytest.approx((5 / 10 + 4 / 7 + 0) / 3)
    assert s.mean_acc == pytest.approx((5 / 8 + 4 / 6) / 2)  # accuracy is over true classes only
    assert s.fw_iu == pytest.approx(8 / 14 * 5 / 10 + 6 / 14 * 4 / 7)


def test_single_class_perfect():
    s = segmentation_scores(np.diag([10, 0, 0]))
    assert (s.pixel_acc, s.mean_acc, s.mean_iu, s.fw_iu) == (1.0, 1.0, 1.0, 1.0)


def test_empty_matrix_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        segmentation_scores(np.zeros((3, 3)))


def test_ignored_pixels_never_count():
    cm = MulticlassConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 1, 255, 2]])
    pred = torch.tensor([[0, 1, 2, 2]])
    cm.update(pred, target)
    assert cm.compute().sum() == 3
    assert segmentation_scores(cm.compute()).pixel_acc == 1.0


def test_two_batches_equal_their_concatenation():
    """One matrix over the set, never an average of per-image scores."""
    g = torch.Generator().manual_seed(0)
    a_pred, b_pred = torch.randint(0, 4, (2, 9, 9), generator=g), torch.randint(0, 4, (3, 9, 9), generator=g)
    a_true, b_true = torch.randint(0, 4, (2, 9, 9), generator=g), torch.randint(0, 4, (3, 9, 9), generator=g)
    a_true[0, :3] = 255
    split = MulticlassConfusionMatrix(4, ignore_index=255)
    split.update(a_pred, a_true)
    split.update(b_pred, b_true)
    whole = MulticlassConfusionMatrix(4, ignore_index=255)
    whole.update(torch.cat([a_pred, b_pred]), torch.cat([a_true, b_true]))
    assert torch.equal(split.compute(), whole.compute())
    per_image = np.mean(
        [
            segmentation_scores(MulticlassConfusionMatrix(4, ignore_index=255)(p[None], t[None])).mean_iu
            for p, t in zip(torch.cat([a_pred, b_pred]), torch.cat([a_true, b_true]), strict=True)
        ]
    )
    assert segmentation_scores(whole.compute()).mean_iu != pytest.approx(per_image, abs=1e-9)
