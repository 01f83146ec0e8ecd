"""``FCNModule``: any registered FCN trained with per-pixel cross-entropy and scored like the paper."""

from __future__ import annotations

import functools
import logging
import math
import random

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from fcnlab.data.class_weights import MEDIAN_FREQUENCY, check_weight_list, resolve_class_weights
from fcnlab.data.classes import VOC_CLASSES, VOID, check_class_colors, metric_keys
from fcnlab.data.input_space import get_input_space
from fcnlab.data.sampling import EPOCH_STRIDE
from fcnlab.errors import FCNLabError
from fcnlab.evaluation import SegmentationScores, segmentation_scores
from fcnlab.models import create_model
from fcnlab.models.tta import infer_logits, infer_settings
from fcnlab.training.optim import build_optimizer, build_scheduler

# loss.normalize: mean over the batch's labelled pixels, each image's mean (weighing 1/batch_size), sum.
LOSS_NORMALIZATIONS = (True, "image", False)

log = logging.getLogger(__name__)


class FCNModule(L.LightningModule):
    """Wraps ``create_model(**model)``; validation accumulates one confusion matrix per epoch.

    ``loss_normalize``: ``True`` averages the loss over the batch's labelled pixels; ``"image"``
    averages each image's loss over its own labelled pixels and weighs every image 1/``images_per_update``
    (1/the batch's images without it); ``False`` sums over pixels, as the reference release does with
    batch 1 and momentum 0.99 (and tiny learning rates). The scores reach the loss and the argmax in
    float32 whatever the trainer's precision.
    ``images_per_update``: one optimizer step per that many training images, whatever the batches
    holding them (``SizeGroupedBatches`` cuts whole images of one size into batches): their gradients
    are summed, so with ``"image"`` an update is exactly the paper's minibatch of single images
    accumulated. Lightning's ``accumulate_grad_batches`` counts batches, not images, so this steps
    itself (manual optimization); None: Lightning's automatic optimization.
    ``input_space`` (a name or ``InputSpace.as_dict()``; None: torchvision) is the input the weights
    expect; it is saved with the hyperparameters, so every checkpoint says how to feed its net.
    ``class_names`` and ``class_colors`` (one ``[R, G, B]`` per class; None: the VOC palette) are saved
    too: a checkpoint alone names and colours its classes.
    ``infer`` (an ``infer:`` config block; None: single-scale whole images) is how validation runs the
    net (:func:`fcnlab.models.tta.infer_logits`); it is a setting of the run, not of the weights,
    so it is not saved with them (``fcnlab-eval`` brings its own).
    """

    def __init__(
        self,
        model: dict,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        loss_normalize: bool | str = True,
        bias_lr_mult: float = 2.0,
        class_names: list[str] | None = None,
        class_colors: list | None = None,
        seed: int = 0,
        input_space: str | dict | None = None,
        class_weights: list[float] | str | None = None,
        infer: dict | None = None,
        images_per_update: int | None = None,
    ) -> None:
        super().__init__()
        if loss_normalize not in LOSS_NORMALIZATIONS:
            raise FCNLabError(
                f"loss.normalize={loss_normalize}: use true (mean over the batch's labelled pixels), image "
                "(each image's mean, weighing 1/images_per_update) or false (sum over pixels)"
            )
        self.input_space = get_input_space(input_space)
        self.infer = infer_settings(infer)
        # The run's settings (its config, in every checkpoint, has them) stay out; input_space goes in below.
        self.save_hyperparameters(
            ignore=["optimizer", "scheduler", "input_space", "infer", "images_per_update"]
        )
        self.hparams["input_space"] = self.input_space.as_dict()
        self.model = create_model(**model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_normalize = loss_normalize if isinstance(loss_normalize, str) else bool(loss_normalize)
        self.bias_lr_mult, self.seed = bias_lr_mult, seed
        num_classes = model.get("num_classes", 21)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.class_colors = check_class_colors(class_colors, self.class_names, "class_colors")
        self.hparams["class_colors"] = self.class_colors  # plain lists: readable in hparams.yaml
        # loss.class_weights: a list now, or median_frequency resolved in setup() from the train masks
        self.register_buffer("loss_weight", None, persistent=False)
        if class_weights is not None and not isinstance(class_weights, str):
            self.loss_weight = torch.tensor(check_weight_list(class_weights, num_classes))
        elif class_weights not in (None, MEDIAN_FREQUENCY):
            resolve_class_weights(class_weights, num_classes)  # the one-line error
        self.val_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=VOID, validate_args=False)
        self.last_scores: SegmentationScores | None = None
        self.last_confusion: torch.Tensor | None = None
        if images_per_update is not None and scheduler is not None:
            raise FCNLabError(
                "images_per_update with a learning-rate schedule: the schedules are sized in batches, not "
                "updates; use scheduler=none (the paper's fixed rate) or data.images_per_update=null"
            )
        self.images_per_update = images_per_update
        self.automatic_optimization = images_per_update is None
        self._images_pending = 0  # images_per_update: this update's images so far
        # The loss's finiteness, watched on the device and read every few steps (see _watch_loss).
        self._loss_ok: torch.Tensor | None = None
        self._bad_value: torch.Tensor | None = None
        self._bad_at: torch.Tensor | None = None
        self._unchecked: list[tuple[int, int]] = []  # (global step, epoch) of each step since the last read

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled pixels, in float32, normalised by ``loss_normalize``.

        No branch depends on the data, so a training step never waits for the device: a batch with no
        labelled pixel (a crop of void) or only classes of weight 0 gives a loss of exactly 0 through
        its zero sums, divided by 1 where the normaliser is 0.
        """
        logits = logits.float()
        weight = self.loss_weight
        if self.loss_normalize is False:
            return F.cross_entropy(logits, masks, weight=weight, ignore_index=VOID, reduction="sum")
        per_pixel = F.cross_entropy(logits, masks, weight=weight, ignore_index=VOID, reduction="none")
        labelled = masks != VOID
        if weight is None:
            weights = labelled.to(per_pixel.dtype)
        else:
            weights = weight[masks.masked_fill(~labelled, 0)] * labelled
        if self.loss_normalize == "image":
            sums, totals = per_pixel.flatten(1).sum(1), weights.flatten(1).sum(1)
            per_image = sums / totals.masked_fill(totals == 0, 1)
            images = self.images_per_update if self.training and self.images_per_update else len(masks)
            return per_image.sum() / images
        total = weights.sum()
        return per_pixel.sum() / total.masked_fill(total == 0, 1)

    def setup(self, stage: str) -> None:
        """``loss.class_weights=median_frequency``: computed (or read from the cache) once data is set up."""
        if self.hparams.get("class_weights") != MEDIAN_FREQUENCY or self.loss_weight is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage != "fit" or datamodule is None or datamodule.train_set is None:
            return  # validation alone: the loss is not what is scored
        weights = resolve_class_weights(
            MEDIAN_FREQUENCY,
            self.model.num_classes,
            datamodule.train_set.samples,
            self.class_names,
            cache_dir=datamodule.root,
            verbose=self.trainer.is_global_zero,
        )
        self.loss_weight = torch.tensor(weights, device=self.device)
        self.hparams["class_weights"] = weights  # checkpoints hold the weights trained with

    def on_fit_start(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        log.info("%s: %s of %s parameters trainable", self.model.name, f"{trainable:,}", f"{total:,}")
        for logger in self.loggers:
            logger.log_hyperparams({"trainable_params": trainable, "total_params": total})

    def on_train_epoch_start(self) -> None:
        # Dropout & co. draw from the global RNG: key it to (seed, epoch) so a run resumed from the
        # end of epoch k-1 replays epoch k exactly as an uninterrupted run would (data is keyed too).
        epoch_seed = (self.seed * EPOCH_STRIDE + self.current_epoch) % 2**32
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)
        random.seed(epoch_seed)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        loss = self.loss(self(images), masks)
        self._watch_loss(loss)
        # Nothing here reads a value back to the host: the step value reaches the loggers every
        # trainer.log_every_n_steps, the epoch mean (the progress bar's) at the epoch's end.
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(images))
        self.log(
            "train/loss_epoch",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(images),
            sync_dist=True,
        )
        if not self.automatic_optimization:
            self._accumulate(loss, len(images), batch_idx)
        return loss

    def _accumulate(self, loss: torch.Tensor, images: int, batch_idx: int) -> None:
        """``images_per_update``: this batch's gradients join its update's; the update's last batch (or
        the epoch's) steps. Counted on the host from batch sizes: nothing waits for the device."""
        optimizer = self.optimizers()
        if self._images_pending == 0:
            optimizer.zero_grad()
        self.manual_backward(loss)
        self._images_pending += images
        last = batch_idx + 1 >= self.trainer.num_training_batches
        if self._images_pending >= self.images_per_update or last:
            optimizer.step()
            self._images_pending = 0

    def _watch_loss(self, loss: torch.Tensor) -> None:
        """Note (on the device, without waiting for it) the first non-finite loss since the last check."""
        loss = loss.detach().float()
        if self._loss_ok is None or self._loss_ok.device != loss.device:
            self._loss_ok = torch.ones((), dtype=torch.bool, device=loss.device)
            self._bad_value = torch.zeros_like(loss)
            self._bad_at = torch.zeros((), dtype=torch.long, device=loss.device)
        bad = self._loss_ok & ~torch.isfinite(loss)
        self._bad_value = torch.where(bad, loss, self._bad_value)
        self._bad_at = torch.where(bad, len(self._unchecked), self._bad_at)
        self._loss_ok = self._loss_ok & ~bad
        self._unchecked.append((self.global_step, self.current_epoch))

    def check_loss(self) -> None:
        """Stop on a non-finite loss seen since the last check (one host read): every
        ``trainer.log_every_n_steps`` steps, before validating and before any checkpoint is written, so
        no checkpoint holds weights a NaN loss has touched."""
        unchecked, self._unchecked = self._unchecked, []
        if not unchecked or bool(self._loss_ok):
            return
        step, epoch = unchecked[int(self._bad_at)]
        self._loss_ok = None
        raise FCNLabError(self._non_finite_message(float(self._bad_value), step, epoch))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        every = self.trainer.log_every_n_steps * self.trainer.accumulate_grad_batches
        if every and len(self._unchecked) >= every:
            self.check_loss()

    def on_train_epoch_end(self) -> None:
        self.check_loss()

    def _non_finite_message(self, value: float, step: int, epoch: int) -> str:
        # ModelCheckpoint's private state, pinned to lightning >=2.5,<2.7 (tests/test_lightning_pins.py).
        saved = [
            (c._last_global_step_saved, c._last_checkpoint_saved)
            for c in (self.trainer.checkpoint_callbacks if self._trainer is not None else [])
            if getattr(c, "_last_checkpoint_saved", None)
        ]
        kept = f"last good checkpoint {max(saved)[1]} (kept)" if saved else "no checkpoint written yet"
        return (
            f"loss is {value} at step {step} (epoch {epoch}); training stopped, "
            f"{kept}; lower optimizer.lr or check the data"
        )

    def on_validation_epoch_start(self) -> None:
        self.check_loss()  # validating weights a NaN loss has touched would waste the pass
        self.val_confusion.reset()  # the sanity check must not leak into the first epoch

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        logits = infer_logits(self.model, images, self.infer).float()
        self.log("val/loss", self.loss(logits, masks), on_epoch=True, batch_size=len(images), sync_dist=True)
        self.val_confusion.update(logits.argmax(1), masks)

    def on_validation_epoch_end(self) -> None:
        confusion = self.val_confusion.compute()  # summed over processes: exact under DDP
        self.val_confusion.reset()
        if confusion.sum() == 0:
            return
        scores = segmentation_scores(confusion)
        self.last_scores, self.last_confusion = scores, confusion.cpu()
        # Every rank holds the same summed matrix, so syncing these is a no-op that keeps DDP quiet.
        self.log_dict(scores.as_dict("val/"), prog_bar=True, sync_dist=True)
        # Keys safe for every logger (no spaces or slashes); results.json keeps the names as given.
        for key, iu in zip(metric_keys(self.class_names), scores.per_class_iu, strict=False):
            if not math.isnan(iu):
                self.log(f"val_iu/{key}", iu, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_loss()  # raised before the file is written: the last good checkpoint stays
        # The resolved config and git sha travel with every checkpoint (set by fcnlab.training.run).
        checkpoint["fcnlab"] = getattr(self, "run_info", {})

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("FCNModule needs an optimizer to train")
        optimizer = build_optimizer(self.optimizer_factory, self.model, self.bias_lr_mult)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(
            self.scheduler_factory, optimizer, self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_module(checkpoint: str, name: str | None = None) -> FCNModule:
    """An ``FCNModule`` on the CPU from a checkpoint, for evaluation, prediction or export (one read).

    An fcnlab training checkpoint: its stored model options are reused with ``pretrained=None`` (the
    checkpoint holds every weight, so the backbone's original weights file need not exist any more),
    with its stored input space.
    A torchfcn FCN state dict (the reference release's nets): the variant its layers hold (``name``
    picks fcn8s_atonce for FCN-8s keys), VGG16 faithful geometry, the Caffe input space.
    """
    from fcnlab.models.weights import read_checkpoint

    ckpt = read_checkpoint(checkpoint, "ckpt")
    if ckpt.format == "torchfcn":
        return _torchfcn_module(ckpt, name)
    if ckpt.format != "fcnlab":
        raise FCNLabError(
            f"ckpt={checkpoint}: neither an fcnlab training checkpoint (no model options stored) nor a "
            "torchfcn FCN state dict (conv1_1 … fc7, score_fr)"
        )
    hparams = dict(ckpt.hparams)
    stored = hparams["model"].get("name")
    if name not in (None, "", "null") and name != stored:
        raise FCNLabError(
            f"ckpt={checkpoint} holds an fcnlab {stored}; model.name={name} only names the net of a "
            "torchfcn file, drop it"
        )
    module = FCNModule(**{**hparams, "model": {**hparams["model"], "pretrained": None}})
    state = ckpt.state
    if not any(k.startswith("model.") for k in state):  # the reader strips FCNModule's prefix
        state = {f"model.{k}": v for k, v in state.items()}
    module.load_state_dict(state)
    module.train_git_sha = ckpt.info.get("git_sha", "unknown")
    return module


def _torchfcn_module(ckpt, name: str | None) -> FCNModule:
    from fcnlab.models.upsample import BilinearUpsample
    from fcnlab.models.weights import fit_upsampling, is_bilinear

    variant = ckpt.variant
    name = variant if name in (None, "", "null") else str(name)
    if name != variant and (variant, name) != ("fcn8s", "fcn8s_atonce"):
        raise FCNLabError(
            f"ckpt={ckpt.path}: its layers hold a torchfcn {variant}, not {name}; drop model.name "
            "(model.name=fcn8s_atonce applies to FCN-8s weights only)"
        )
    state = ckpt.state
    num_classes = int(state["score_fr.weight"].shape[0])
    skips = [k for k in state if k.startswith("fusions.") and k.endswith("deconv.weight")]
    options = {
        "name": name,
        "num_classes": num_classes,
        "backbone": "vgg16",
        "geometry": "faithful",
        "pretrained": None,
        "learn_upsampling": not all(is_bilinear(state[k]) for k in skips),
    }
    classes = VOC_CLASSES if num_classes == len(VOC_CLASSES) else None
    module = FCNModule(model=options, class_names=classes, input_space="caffe")
    net = module.model
    final = state.get("upscore.deconv.weight")
    if final is not None and not is_bilinear(final):  # a learned final upsampling: hold it as such
        net.upscore = BilinearUpsample(num_classes, net.output_stride, learnable=True)
    own = net.state_dict()
    state = fit_upsampling(state, own, name, str(ckpt.path), "ckpt")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[-1].strip()
        raise FCNLabError(
            f"ckpt={ckpt.path}: torchfcn {variant} weights do not fit VGG16 ({detail[:160]})"
        ) from None
    module.train_git_sha = "torchfcn"
    return module
