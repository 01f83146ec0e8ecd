"""Evaluation: the paper's pixel-wise metrics from one confusion matrix."""

from fcnlab.evaluation.metrics import SegmentationScores, segmentation_scores

__all__ = ["SegmentationScores", "segmentation_scores"]
