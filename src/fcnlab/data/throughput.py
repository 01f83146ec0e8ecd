"""Images/s of a train loader (``fcnlab-data throughput``, ``make bench``)."""

from __future__ import annotations

import time


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
