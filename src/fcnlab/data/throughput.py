"""``python -m fcnlab.data.throughput [overrides]``: images/s of the train loader, default settings.

Composes the same Hydra config as ``fcnlab-train`` (``data=shapes`` unless overridden), so the
number is for exactly the loader a training run gets.
"""

from __future__ import annotations

import os
import sys
import time

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict


def main(argv: list[str] | None = None) -> None:
    from fcnlab.train import CONF_DIR

    overrides = list(sys.argv[1:] if argv is None else argv)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.output_dir = os.path.join(os.getcwd(), "outputs", "throughput")
    HydraConfig.instance().set_config(cfg)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for _ in range(2):  # the first epoch includes starting the workers
        start, seen = time.perf_counter(), 0
        for images, _ in loader:
            seen += len(images)
        rate = seen / (time.perf_counter() - start)
    print(
        f"train loader: {rate:.0f} images/s ({seen} images, batch {cfg.data.batch_size}, "
        f"crop {cfg.data.crop_size}, {datamodule.num_workers} workers, {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
