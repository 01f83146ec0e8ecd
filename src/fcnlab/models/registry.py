"""Model registry: ``name -> builder``, filled by ``@register_model`` in each model family's file."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}  # model name -> builder(backbone, num_classes, ...)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name; returns it unchanged."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`fcnlab.models.create_model`, sorted."""
    return sorted(_MODELS)


def model_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        from fcnlab.errors import FCNLabError

        raise FCNLabError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    return _MODELS[name]
