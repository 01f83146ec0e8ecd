"""``fcnlab-eval ckpt=<checkpoint> [data=...]``: evaluate a trained FCN on a protocol's val split.

Prints pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and per-class IU as a table and
writes ``eval.json`` in the run folder (:mod:`fcnlab.inference.evaluate`). A torchfcn FCN state dict
(``fcn8s_from_caffe.pth`` …) is evaluated as it is; ``model.name=fcn8s_atonce`` names the at-once
net, whose keys are FCN-8s's.
"""

from __future__ import annotations

import hydra
import lightning.pytorch  # noqa: F401  before Hydra's logging: Lightning's info lines print once, as in fcnlab-train
from omegaconf import DictConfig

from fcnlab.config import CONF_DIR
from fcnlab.errors import exit_on_user_error
from fcnlab.inference.evaluate import evaluate, format_table


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.paths.output_dir):
        result = evaluate(cfg)
    print(format_table(result))


if __name__ == "__main__":
    main()
