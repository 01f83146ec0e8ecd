"""Training: the FCN LightningModule and the reference optimiser recipe."""

from fcnlab.training.module import FCNModule

__all__ = ["FCNModule"]
