"""``fcnlab-predict ckpt=<checkpoint> input=<image or folder> output=<folder>``: palette masks + overlays.

Each image goes through the net at its own size, in the checkpoint's input space; a file that cannot
be read is reported in one line and skipped, and the run exits 2 at the end
(:mod:`fcnlab.inference.predict`).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fcnlab.config import CONF_DIR
from fcnlab.errors import exit_on_user_error
from fcnlab.inference.predict import predict, summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.output):
        record = predict(cfg)
    print(summary(record))
    if record["errors"]:
        sys.exit(2)


if __name__ == "__main__":
    main()
