"""``python -m fcnlab.data.throughput [overrides]``: images/s of the train loader, default settings.

Composes the same Hydra config as ``fcnlab-train`` (``data=shapes`` unless overridden), so the
number is for exactly the loader a training run gets. ``make bench`` reuses both helpers.
"""

from __future__ import annotations

import os
import sys
import time

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict


def compose_train_config(overrides: list[str], job: str = "throughput") -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, resolved as ``fcnlab-train`` would (no job is started)."""
    from fcnlab.train import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        # split_dir=null: measuring needs no split lists written into outputs/
        cfg = compose("train", overrides=["data.split_dir=null", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.output_dir = os.path.join(os.getcwd(), "outputs", job)
    HydraConfig.instance().set_config(cfg)
    return cfg


def loader_images_per_s(datamodule, epochs: int = 2) -> tuple[float, int]:
    """Images/s over the last of ``epochs`` epochs (the first starts the workers), and the images seen."""
    loader = datamodule.train_dataloader()
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, _ in loader:
            seen += len(images)
        seconds = time.perf_counter() - start
    del loader  # stops its persistent workers before anything else runs
    return seen / seconds, seen


def main(argv: list[str] | None = None) -> None:
    cfg = compose_train_config(list(sys.argv[1:] if argv is None else argv))
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    rate, seen = loader_images_per_s(datamodule)
    print(
        f"train loader: {rate:.0f} images/s ({seen} images, batch {cfg.data.batch_size}, "
        f"crop {cfg.data.crop_size}, {datamodule.num_workers} workers, {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
