"""Data: VOC/SBD layouts and protocols, the generated stand-in, transforms and the DataModule."""

from fcnlab.data.datamodule import SegmentationDataModule, SegmentationDataset
from fcnlab.data.voc import protocol_samples, seg11valid_ids

__all__ = ["SegmentationDataModule", "SegmentationDataset", "protocol_samples", "seg11valid_ids"]
