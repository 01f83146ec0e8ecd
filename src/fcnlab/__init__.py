"""fcnlab: Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015), reproduced."""

from fcnlab.errors import FCNLabError

__version__ = "0.1.0"
__all__ = ["FCNLabError", "__version__"]
