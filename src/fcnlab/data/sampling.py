"""Samplers that make runs reproducible across restarts and exact across processes.

``EpochSampler`` draws the order *and* one augmentation seed per sample from ``(seed, epoch)`` alone,
so epoch k sees the same crops and flips whether the run started fresh, resumed from a checkpoint
after a kill, or used any number of loader workers. ``SizeGroupedBatches`` cuts that order into
batches of same-size whole images (no padding, so a batch computes exactly what its images would one
by one). ``ShardSampler`` splits validation across DDP ranks without the duplicates
``DistributedSampler`` pads in, so every pixel is scored exactly once.
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


class SizeGroupedBatches(DistributedSampler):
    """Yields batches (lists of ``(index, sample_seed)``) of images of one size, for whole-image training.

    The epoch's order and seeds are ``EpochSampler``'s. Walking that order, each image joins the open
    group of its size; a group is yielded once it holds ``images_per_update`` images (default
    ``batch_size``), as batches of at most ``batch_size``: an update of images of one size (as
    torchvision's detection references group by aspect ratio). The images left in unfilled groups
    follow at the epoch's end, sorted by size and cut into updates of ``images_per_update`` images
    again, each one batch per size it holds. So every update but the epoch's last has exactly
    ``images_per_update`` images, every image is seen once an epoch, none is padded, and the number of
    batches depends on the sizes only, never on the order.

    Under DDP, rank r takes batches r, r + world, ... of the same list (updates, with
    ``images_per_update``), padded by repeating the first ones to a multiple of the world size. A
    ``DistributedSampler`` subclass, so Lightning leaves it in place instead of injecting its own; the
    ``DataLoader`` takes it as its ``sampler`` with ``batch_size=None`` (each item is a batch).
    """

    def __init__(
        self,
        sizes: list[tuple[int, int]],
        batch_size: int,
        seed: int,
        epoch_fn: Callable[[], int] | None = None,
        images_per_update: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if num_replicas is None or rank is None:
            dist = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = torch.distributed.get_world_size() if dist else 1
            rank = torch.distributed.get_rank() if dist else 0
        super().__init__(sizes, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.sizes, self.batch_size = [tuple(s) for s in sizes], batch_size
        self.images_per_update, self.per_update = images_per_update, images_per_update or batch_size
        self.order = EpochSampler(len(sizes), seed, shuffle=True, epoch_fn=epoch_fn)
        self.num_samples = len(self._shard(self._updates([(i, 0) for i in range(len(sizes))])))

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def _updates(self, order: list[tuple[int, int]]) -> list[list[list[tuple[int, int]]]]:
        """The epoch's updates in ``order``, each a list of one-size batches."""
        updates, filling = [], {}
        for index, sample_seed in order:
            group = filling.setdefault(self.sizes[index], [])
            group.append((index, sample_seed))
            if len(group) == self.per_update:
                updates.append(filling.pop(self.sizes[index]))
        tail = [item for size in sorted(filling) for item in filling[size]]
        updates += [tail[i : i + self.per_update] for i in range(0, len(tail), self.per_update)]
        return [self._batches(update) for update in updates]

    def _batches(self, update: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """An update's images (grouped by size) as batches of one size and at most ``batch_size``."""
        batches: list[list[tuple[int, int]]] = []
        for item in update:
            last = batches[-1] if batches else None
            if last and self.sizes[last[0][0]] == self.sizes[item[0]] and len(last) < self.batch_size:
                last.append(item)
            else:
                batches.append([item])
        return batches

    def _shard(self, updates: list) -> list[list[tuple[int, int]]]:
        """This rank's batches: units rank, rank + world, ... (padded to a multiple of the world), a unit
        being an update with ``images_per_update``, else a batch (each rank then steps as often)."""
        units = updates if self.images_per_update else [[batch] for update in updates for batch in update]
        total = math.ceil(len(units) / self.num_replicas) * self.num_replicas
        padded = [units[i % len(units)] for i in range(total)] if units else []
        return [batch for unit in padded[self.rank :: self.num_replicas] for batch in unit]

    def batches(self) -> list[list[tuple[int, int]]]:
        """This epoch's batches for this rank."""
        return self._shard(self._updates(list(self.order)))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return self.num_samples


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
