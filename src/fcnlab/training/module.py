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
from fcnlab.models.inference import infer_logits, infer_settings
from fcnlab.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


class FCNModule(L.LightningModule):
    """Wraps ``create_model(**model)``; validation accumulates one confusion matrix per epoch.

    ``loss_normalize=False`` sums the loss over pixels, as the reference release does with batch 1
    and momentum 0.99 (and tiny learning rates); ``True`` averages over labelled pixels.
    ``input_space`` (a name or ``InputSpace.as_dict()``; None: torchvision) is the input the weights
    expect; it is saved with the hyperparameters, so every checkpoint says how to feed its net.
    ``class_names`` and ``class_colors`` (one ``[R, G, B]`` per class; None: the VOC palette) are saved
    too: a checkpoint alone names and colours its classes (older ones without colours read as VOC's).
    ``infer`` (an ``infer:`` config block; None: single-scale whole images) is how validation runs the
    net (:func:`fcnlab.models.inference.infer_logits`); it is a setting of the run, not of the weights,
    so it is not saved with them (``fcnlab-eval`` brings its own).
    """

    def __init__(
        self,
        model: dict,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        loss_normalize: bool = True,
        bias_lr_mult: float = 2.0,
        class_names: list[str] | None = None,
        class_colors: list | None = None,
        seed: int = 0,
        input_space: str | dict | None = None,
        class_weights: list[float] | str | None = None,
        infer: dict | None = None,
    ) -> None:
        super().__init__()
        self.input_space = get_input_space(input_space)
        self.infer = infer_settings(infer)
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "input_space", "infer"])
        self.hparams["input_space"] = self.input_space.as_dict()
        self.model = create_model(**model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_normalize, self.bias_lr_mult, self.seed = loss_normalize, bias_lr_mult, seed
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        reduction = "mean" if self.loss_normalize else "sum"
        labelled = masks != VOID
        if not labelled.any():  # a crop of void only: no signal, and "mean" would be nan
            return logits.sum() * 0.0
        weight = self.loss_weight
        if weight is not None and reduction == "mean" and not weight[masks[labelled]].sum() > 0:
            return logits.sum() * 0.0  # only classes of weight 0 in this batch
        return F.cross_entropy(logits, masks, weight=weight, ignore_index=VOID, reduction=reduction)

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
        if not torch.isfinite(loss):
            raise FCNLabError(self._non_finite_message(loss.item()))
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(images),
            sync_dist=True,
        )
        return loss

    def _non_finite_message(self, value: float) -> str:
        # ModelCheckpoint's private state, pinned to lightning >=2.5,<2.7 (tests/test_lightning_pins.py).
        saved = [
            (c._last_global_step_saved, c._last_checkpoint_saved)
            for c in (self.trainer.checkpoint_callbacks if self._trainer is not None else [])
            if getattr(c, "_last_checkpoint_saved", None)
        ]
        kept = f"last good checkpoint {max(saved)[1]} (kept)" if saved else "no checkpoint written yet"
        return (
            f"loss is {value} at step {self.global_step} (epoch {self.current_epoch}); training stopped, "
            f"{kept}; lower optimizer.lr or check the data"
        )

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()  # the sanity check must not leak into the first epoch

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        logits = infer_logits(self.model, images, self.infer)
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


# Keys a ``model`` config group once held beside create_model's keywords (sweep bookkeeping, the input
# space): a checkpoint that stored them still loads.
CONFIG_ONLY_KEYS = ("variant", "parent", "stages", "input_space")


def load_module(checkpoint: str, name: str | None = None) -> FCNModule:
    """An ``FCNModule`` on the CPU from a checkpoint, for evaluation, prediction or export (one read).

    An fcnlab training checkpoint: its stored model options are reused with ``pretrained=None`` (the
    checkpoint holds every weight, so the backbone's original weights file need not exist any more),
    with its stored input space (torchvision for checkpoints from before input spaces were stored).
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
    if "input_space" not in hparams:
        data = (ckpt.info.get("config") or {}).get("data") or {}
        if data.get("mean") and data.get("std"):  # a run that overrode the torchvision statistics
            hparams["input_space"] = {
                **get_input_space("torchvision").as_dict(),
                "mean": list(data["mean"]),
                "std": list(data["std"]),
            }
    stored = hparams["model"].get("name")
    if name not in (None, "", "null") and name != stored:
        raise FCNLabError(
            f"ckpt={checkpoint} holds an fcnlab {stored}; model.name={name} only names the net of a "
            "torchfcn file, drop it"
        )
    model = {k: v for k, v in hparams["model"].items() if k not in CONFIG_ONLY_KEYS}
    module = FCNModule(**{**hparams, "model": {**model, "pretrained": None}})
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
