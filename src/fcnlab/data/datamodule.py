"""``SegmentationDataModule``: VOC/SBD (or the generated stand-in) for Lightning, one protocol each."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from fcnlab.data.check import check_samples
from fcnlab.data.classes import SHAPES_CLASSES, VOC_CLASSES, check_class_colors, check_class_names
from fcnlab.data.input_space import InputSpace, get_input_space
from fcnlab.data.loading import load_sample, unreadable_image
from fcnlab.data.sampling import EpochSampler, ShardSampler, SizeGroupedBatches
from fcnlab.data.transforms import eval_transform, pad_collate, train_transform
from fcnlab.data.voc import SPLIT_NAMES, Sample, protocol_samples
from fcnlab.errors import FCNLabError


class SegmentationDataset(Dataset):
    """Samples read from disk and passed through a paired v2 transform.

    ``cache``: keep each sample as decoded the first time it is read (uint8 image, int64 labels), so
    later epochs only augment; for data that fits in memory (the generated set: ~0.1 GB). With loader
    workers, the datamodule decodes everything in the main process first (:meth:`decode_all`), so
    the forked workers share one copy instead of each filling its own.
    """

    def __init__(self, samples: list[Sample], transform, cache: bool = False) -> None:
        self.samples, self.transform = samples, transform
        self._decoded: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def decode_all(self) -> None:
        """Fill the cache now, in this process (a no-op without ``cache`` or once filled)."""
        if self._decoded is not None:
            for index, sample in enumerate(self.samples):
                if index not in self._decoded:
                    self._decoded[index] = load_sample(sample)

    def __getitem__(self, key: int | tuple[int, int] | list) -> tuple[torch.Tensor, torch.Tensor]:
        """An index, or ``(index, seed)`` from an ``EpochSampler``: the seed fixes the augmentation; a
        list of those (a ``SizeGroupedBatches`` batch): the collated batch."""
        if isinstance(key, list):
            return pad_collate([self[k] for k in key])
        index, seed = key if isinstance(key, tuple) else (key, None)
        if self._decoded is None:
            image, mask = load_sample(self.samples[index])
        elif (pair := self._decoded.get(index)) is not None:
            image, mask = pair  # the transforms return new tensors: the cached ones stay as read
        else:
            image, mask = self._decoded[index] = load_sample(self.samples[index])
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask)
        if seed is None:
            image, mask = self.transform(image, mask)
        else:  # same crop/flip for this sample and epoch whatever the worker, process or restart
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only: what the transforms draw from. torch.manual_seed would also
                # queue a seeding of every lazily initialised accelerator, with a stack trace, per sample.
                torch.default_generator.manual_seed(seed)
                image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def default_num_workers() -> int:
    """Half the cores (the other half trains), at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def worker_start_method(workers: int, cache: bool = False) -> str | None:
    """How loader workers start: torch's default (None), except inside a joblib lane (the table2
    sweep's launcher), whose processes default to joblib's own "loky" method; fork there, as Linux does.
    With ``data.cache``: fork, so the workers share the main process's decoded samples (one line where
    the platform cannot fork: every worker would hold its own copy)."""
    import multiprocessing

    if workers > 0 and cache:
        # macOS offers fork but its system libraries are not fork-safe (hence its default, spawn).
        if "fork" not in multiprocessing.get_all_start_methods() or sys.platform == "darwin":
            raise FCNLabError(
                f"data.cache=true with data.num_workers={workers}: loader workers cannot fork here, so "
                "each would hold its own copy of the decoded data; set data.num_workers=0 or data.cache=false"
            )
        return "fork"
    method = multiprocessing.get_start_method(allow_none=True)
    if workers == 0 or method in (None, "fork", "spawn", "forkserver"):
        return None
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def image_sizes(samples: list[Sample]) -> list[tuple[int, int]]:
    """(H, W) of each sample's image, from its header."""
    sizes = []
    for sample in samples:
        try:
            with Image.open(sample.image) as img:
                sizes.append(img.size[::-1])
        except (OSError, ValueError, SyntaxError) as e:
            raise unreadable_image(sample.image, e) from None
    return sizes


class SegmentationDataModule(L.LightningDataModule):
    """Train/val loaders for a VOC/SBD protocol under ``root``.

    ``generate`` (a dict of :class:`fcnlab.data.synthetic.SyntheticConfig` fields, or None) writes the
    generated dataset to ``root`` on first use. Validation runs on whole images at native size,
    ``val_batch_size`` 1 by default; larger batches are padded with void labels that are never scored.
    ``split_dir``, if set, receives the split lists actually used (e.g. ``seg11valid.txt``).
    ``check`` (``data.check``) is how ``setup`` checks every train and val sample before training, so a
    bad file stops the run at once with the message loading it would give, not epochs later:
    ``headers`` (default: headers, modes, palettes, sizes, SBD's small ``.mat`` files), ``full`` (decode
    everything) or ``none`` (see :func:`fcnlab.data.check.check_sample`).
    ``class_names`` / ``class_colors`` (one ``[R, G, B]`` per class; None: the VOC palette) name and
    colour the classes everywhere downstream: logs, ``results.json``, checkpoints, predicted masks.
    ``input_space`` (``fcnlab.data.input_space``) is the model's: ``fcnlab-train`` resolves it from
    ``input_space`` and the weights, ``fcnlab-eval`` takes it from the checkpoint.
    ``cache`` keeps samples decoded in memory after their first read (see :class:`SegmentationDataset`).
    Whole images (``crop_size`` and ``scale_range`` null) train in batches of one size
    (:class:`fcnlab.data.sampling.SizeGroupedBatches`) when ``batch_size`` > 1, never padded.
    ``images_per_update`` (whole images only): batches of one size that together hold this many
    images make one optimizer step (``FCNModule(images_per_update=...)`` steps on them), each batch
    at most ``batch_size``; None: every batch is a step (or ``trainer.accumulate_grad_batches`` of them).
    """

    def __init__(
        self,
        root: str,
        protocol: str = "seg11valid",
        generate: dict | None = None,
        class_names: list[str] | None = None,
        class_colors: list | None = None,
        crop_size: int | None = 320,
        scale_range: tuple[float, float] | None = None,
        hflip: bool = True,
        batch_size: int = 1,
        val_batch_size: int = 1,
        num_workers: int | None = None,
        input_space: str | dict | InputSpace | None = "torchvision",
        seed: int = 0,
        split_dir: str | None = None,
        limit_train: int | None = None,
        limit_val: int | None = None,
        num_classes: int | None = None,
        check: str = "headers",
        cache: bool = False,
        images_per_update: int | None = None,
    ) -> None:
        super().__init__()
        if images_per_update is not None and (crop_size is not None or scale_range is not None):
            raise FCNLabError(
                f"data.images_per_update={images_per_update} groups whole images by size; "
                "set data.crop_size=null and data.scale_range=null (or data.images_per_update=null)"
            )
        self.images_per_update = images_per_update
        self.cache = bool(cache)
        self.check = check  # checked by setup(): an error raised here would reach the user wrapped by Hydra
        self.root, self.protocol, self.generate = Path(root), protocol, generate
        self.class_names = check_class_names(
            class_names or (SHAPES_CLASSES if generate is not None else VOC_CLASSES)
        )
        self.class_colors = check_class_colors(class_colors, self.class_names)  # None: the VOC palette
        if num_classes is not None and num_classes != len(self.class_names):
            raise FCNLabError(
                f"data.num_classes={num_classes} but data.class_names lists {len(self.class_names)}"
            )
        self.crop_size, self.scale_range, self.hflip = crop_size, scale_range, hflip
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.input_space, self.seed = get_input_space(input_space), seed
        self.split_dir = Path(split_dir) if split_dir else None
        self.limit_train, self.limit_val = limit_train, limit_val
        self.train_set: SegmentationDataset | None = None
        self.val_set: SegmentationDataset | None = None
        self._resume_epoch: int | None = None
        self._sizes: list[tuple[int, int]] | None = None  # the train images' sizes, when grouped

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prepare_data(self) -> None:
        # Runs on one process per node before setup(): the only place that writes the dataset.
        if self.generate is not None:
            from fcnlab.data import synthetic  # imported here: only when generating

            synthetic.generate(self.root, synthetic.SyntheticConfig(**self.generate))

    def split_samples(self) -> tuple[list[Sample], list[Sample]]:
        """(train, val) samples of the whole protocol (before ``limit_train`` / ``limit_val``)."""
        train, val, _ = protocol_samples(self.root, self.protocol)
        return train, val

    def split_names(self) -> dict[str, str]:
        """The file names (without .txt) the train and val id lists get in ``split_dir``."""
        return SPLIT_NAMES[self.protocol]

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        train, val = self.split_samples()
        train, val = train[: self.limit_train], val[: self.limit_val]
        check_samples(val if stage in ("validate", "test") else [*train, *val], self.check)  # eval: val only
        ids = {"train": [s.id for s in train], "val": [s.id for s in val]}  # the lists actually used
        if self.split_dir is not None:
            self.split_dir.mkdir(parents=True, exist_ok=True)
            for key, name in self.split_names().items():
                (self.split_dir / f"{name}.txt").write_text("\n".join(ids[key]) + "\n")
        tf = train_transform(self.crop_size, self.scale_range, self.hflip, self.input_space)
        self.train_set = SegmentationDataset(train, tf, self.cache)
        self.val_set = SegmentationDataset(val, eval_transform(self.input_space), self.cache)

    def _current_epoch(self) -> int:
        if self._resume_epoch is not None:  # the first train iterator after a resume
            epoch, self._resume_epoch = self._resume_epoch, None
            return epoch
        return self.trainer.current_epoch if self.trainer is not None else 0

    def state_dict(self) -> dict:
        """The epoch a run resumed from this checkpoint trains next (stored in every checkpoint).

        Lightning creates a resumed run's first train iterator before it restores the loop's epoch
        (a scheduler sized from ``estimated_stepping_batches`` asks for the loader early), and loader
        workers draw their first indices right then; this tells ``EpochSampler`` the right epoch.
        """
        if self.trainer is None:
            return {}
        fit_loop = self.trainer.fit_loop
        progress = fit_loop.epoch_progress.current
        done = progress.processed > progress.completed or fit_loop.epoch_loop.batch_progress.is_last_batch
        return {"next_epoch": self.trainer.current_epoch + int(done)}

    def load_state_dict(self, state: dict) -> None:
        self._resume_epoch = state.get("next_epoch")

    def grouped(self) -> bool:
        """Whether training batches are cut by image size (whole, unscaled images, batch > 1 or updates)."""
        whole = self.crop_size is None and self.scale_range is None
        # trainer.overfit_batches swaps the train sampler for a sequential one over single images, which
        # a sampler of batches cannot take: overfitting pads its batch instead, as crops do.
        overfit = bool(getattr(self.trainer, "overfit_batches", 0))
        return whole and not overfit and (self.batch_size > 1 or self.images_per_update is not None)

    def _loader(self, dataset: SegmentationDataset, batch_size: int, train: bool) -> DataLoader:
        workers = self.num_workers
        start_method = worker_start_method(workers, self.cache)
        if workers > 0:
            dataset.decode_all()  # with data.cache: once, here, shared by the forked workers
        if train and self.grouped():
            if self._sizes is None:
                self._sizes = image_sizes(dataset.samples)
            sampler = SizeGroupedBatches(
                self._sizes, batch_size, self.seed, self._current_epoch, self.images_per_update
            )
            batch_size = None  # each item of the sampler is a batch
        elif train:
            sampler = EpochSampler(len(dataset), self.seed, shuffle=True, epoch_fn=self._current_epoch)
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = ShardSampler(dataset)  # each val image on exactly one rank
        else:
            sampler = None
        # No worker_init_fn: seed_everything(workers=True) has Lightning seed each worker, and the
        # augmentation draws come from the samplers' per-sample seeds, not from the worker's RNG.
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=batch_size is not None and train and len(dataset) >= batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            multiprocessing_context=start_method,
            pin_memory=torch.cuda.is_available(),
            collate_fn=pad_collate if batch_size is not None else None,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, train=False)
