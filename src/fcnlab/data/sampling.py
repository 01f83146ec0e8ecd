"""Samplers that make runs reproducible across restarts and exact across processes.

``EpochSampler`` draws the order *and* one augmentation seed per sample from ``(seed, epoch)`` alone,
so epoch k sees the same crops and flips whether the run started fresh, resumed from a checkpoint
after a kill, or used any number of loader workers. ``ShardSampler`` splits validation across DDP
ranks without the duplicates ``DistributedSampler`` pads in, so every pixel is scored exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler, Sampler

# Large odd multiplier: (seed, epoch) pairs never collide for any realistic seed or epoch count.
EPOCH_STRIDE = 1_000_003


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)``: a permutation and per-sample seeds that depend on (seed, epoch) only.

    ``epoch`` is read from ``epoch_fn`` when the iteration starts (the trainer's current epoch), since
    Lightning may create the first iterator of a resumed run before it calls ``set_epoch``.
    """

    def __init__(
        self, size: int, seed: int, shuffle: bool = True, epoch_fn: Callable[[], int] | None = None
    ) -> None:
        self.size, self.seed, self.shuffle, self.epoch_fn = size, seed, shuffle, epoch_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        generator = torch.Generator().manual_seed(self.seed * EPOCH_STRIDE + epoch)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator)
        yield from zip(order.tolist(), seeds.tolist(), strict=True)


class ShardSampler(DistributedSampler):
    """Rank r takes items r, r + world, r + 2·world, …: no padding, no repeats, order kept.

    A ``DistributedSampler`` subclass, so Lightning leaves it in place instead of injecting its own
    (which repeats samples to even out the ranks and would count their pixels twice). Not Lightning's
    ``UnrepeatedDistributedSampler``: that one asserts every rank gets an item, so a val set smaller
    than the world size (one image on two ranks) would fail, and it shuffles unless told not to.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = max(0, math.ceil((len(dataset) - self.rank) / self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
