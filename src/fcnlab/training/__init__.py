"""Training: the FCN LightningModule and the reference optimiser recipe."""

from fcnlab.training.module import FCNModule, load_module

__all__ = ["FCNModule", "load_module"]
