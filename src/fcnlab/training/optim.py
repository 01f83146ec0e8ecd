"""The reference recipe's parameter groups: biases learn at 2× the rate and are not decayed."""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float, bias_lr_mult: float = 2.0) -> list[dict]:
    """Trainable weights at (lr, weight_decay); trainable biases at (bias_lr_mult·lr, no decay)."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith(".bias") else weights).append(p)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay}]
    if biases:
        groups.append({"params": biases, "lr": lr * bias_lr_mult, "weight_decay": 0.0})
    return groups


def build_optimizer(
    factory: functools.partial, model: nn.Module, bias_lr_mult: float
) -> torch.optim.Optimizer:
    """Call a Hydra ``_partial_`` optimizer on the reference parameter groups."""
    lr = factory.keywords.get("lr")
    if lr is None or lr <= 0:
        raise ValueError(f"optimizer.lr must be positive, got {lr}")
    groups = param_groups(model, lr, factory.keywords.get("weight_decay", 0.0), bias_lr_mult)
    return factory(groups)


def build_scheduler(factory: functools.partial, optimizer: torch.optim.Optimizer, total_steps: int):
    """Call a ``_partial_`` scheduler, filling its length argument from the trainer's step count."""
    params = inspect.signature(factory.func).parameters
    for name in ("total_iters", "T_max", "total_steps"):
        if name in params and name not in factory.keywords:
            return factory(optimizer, **{name: total_steps})
    return factory(optimizer)
