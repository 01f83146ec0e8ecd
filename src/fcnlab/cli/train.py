"""``fcnlab-train``: train and evaluate one FCN variant, configured by Hydra (``conf/train.yaml``).

    fcnlab-train                                   # tiny FCN-8s on the generated data, CPU
    fcnlab-train model=fcn16s init_from=<fcn32s best.ckpt>
    fcnlab-train data=voc_sbd data.root=/data/voc experiment=table2_voc trainer=gpu
    fcnlab-train -m model=fcn32s,fcn16s seed=0,1   # a multirun sweep

Returns ``optimized_metric`` to a sweeper (Optuna).
"""

from __future__ import annotations

import logging
import math
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fcnlab.config import CONF_DIR
from fcnlab.errors import INTERRUPTED, FCNLabError, by_ctrl_c, interrupted_line, one_line
from fcnlab.training.distributed import ddp_job_scope
from fcnlab.training.run import fail_record, train

log = logging.getLogger("fcnlab.train")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        with ddp_job_scope():  # a multirun's next job starts its own DDP ranks
            results = train(cfg)
    except FCNLabError as e:
        fail_record(cfg, one_line(e))
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # This job fails; the sweep goes on, ends non-zero with this line (fcnlab.hydra_callbacks.
            # OneLineJobErrors), and the report marks the row.
            raise
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C (Lightning's fit turns it into sys.exit(1))
        if not by_ctrl_c(e):
            raise
        where = f"{cfg.paths.output_dir}; the same command resumes the run"
        print(interrupted_line(where), file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)
    finally:
        if "wandb" in sys.modules:
            from fcnlab.wandb_runs import finish_wandb

            finish_wandb()  # a failed job must not leave its run open for the next one; prints `wandb sync`
    if results["metrics"]:  # pretrain_only has none: the pretrain step logged its own line
        log.info(
            "%s seed %s: %s",
            results["variant"],
            results["seed"],
            ", ".join(f"{k} {100 * v:.1f}" for k, v in results["metrics"].items()),
        )
    return results["metrics"].get(cfg.optimized_metric.removeprefix("val/"), math.nan)


if __name__ == "__main__":
    main()
