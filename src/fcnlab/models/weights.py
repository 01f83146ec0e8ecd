"""Reading weights: torchvision's VGG16 (from a local file or torch's hub cache, never downloaded),
a pretrained tiny classifier, and an FCN checkpoint for staged init (32s → 16s → 8s)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fcnlab.errors import FCNLabError

# torchvision's VGG16_Weights.IMAGENET1K_V1 file name, as it lands in torch's hub cache.
VGG16_IMAGENET_FILE = "vgg16-397923af.pth"


def imagenet_weights_path() -> Path:
    """Where torchvision caches VGG16 ImageNet weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_IMAGENET_FILE


def read_state_dict(path: str | os.PathLike, option: str) -> dict[str, torch.Tensor]:
    """Tensors of a saved state dict or Lightning checkpoint; ``option`` names the setting in errors."""
    path = Path(path)
    if not path.is_file():
        raise FCNLabError(f"{option}={path}: no such file; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise FCNLabError(
            f"{option}={path}: not a readable PyTorch checkpoint ({type(e).__name__}); "
            "the file is truncated or of another format"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a Lightning checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FCNLabError(f"{option}={path}: holds no state dict of tensors")
    prefix = "model."  # FCNModule keeps the network as ``self.model``
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def resolve_pretrained(pretrained: str | os.PathLike | None, backbone: str) -> dict | None:
    """The classifier state dict named by ``pretrained``: None, "imagenet" (VGG16 only) or a path."""
    if pretrained is None:
        return None
    if str(pretrained) == "imagenet":
        if backbone != "vgg16":
            raise FCNLabError(
                f"model.pretrained=imagenet exists for backbone vgg16 only, not {backbone}; "
                "give a path to a pretrained classifier instead"
            )
        path = imagenet_weights_path()
        if not path.is_file():
            raise FCNLabError(
                f"model.pretrained=imagenet: {path} is missing and nothing is downloaded at run time; "
                "copy torchvision's vgg16-397923af.pth there or pass model.pretrained=/path/to/file.pth"
            )
        return read_state_dict(path, "model.pretrained")
    return read_state_dict(pretrained, "model.pretrained")


def load_classifier(classifier: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a torchvision-layout classifier state, naming the first mismatch in one line."""
    own = classifier.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("classifier.6.")]
    if missing:
        raise FCNLabError(
            f"model.pretrained={source}: missing {missing[0]} (and {len(missing) - 1} more); "
            "not a VGG16-layout classifier"
        )
    for key, value in own.items():
        if key in state and not key.startswith("classifier.6.") and state[key].shape != value.shape:
            raise FCNLabError(
                f"model.pretrained={source}: {key} has shape {tuple(state[key].shape)}, the backbone "
                f"expects {tuple(value.shape)}; weights of another backbone size?"
            )
    state = {k: v for k, v in state.items() if k in own and not k.startswith("classifier.6.")}
    classifier.load_state_dict(state, strict=False)


@torch.no_grad()
def load_staged(model: nn.Module, source: str | os.PathLike | dict, option: str = "init_from") -> list[str]:
    """Initialise ``model`` from a coarser FCN (32s → 16s → 8s), as the paper's staged training.

    Every tensor the two nets share is copied and must match in shape; the finer net's new layers
    (skip scoring at zero, 2× upsampling at bilinear) keep their initialisation, so the new net starts
    out computing exactly its parent's function. Returns the names of the layers left new.
    """
    state = source if isinstance(source, dict) else read_state_dict(source, option)
    own = model.state_dict()
    if "score_fr.weight" not in state or not any(k.startswith("backbone.") for k in state):
        raise FCNLabError(f"{option}={source}: not an FCN checkpoint (no backbone/score_fr weights)")
    extra = sorted(k for k in state if k not in own)
    if extra:
        raise FCNLabError(
            f"{option}={source}: has layers {getattr(model, 'name', 'the model')} lacks ({extra[0]}, …); "
            "staged init goes from a coarser net to a finer one (32s → 16s → 8s)"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise FCNLabError(
                f"{option}={source}: {key} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(own[key].shape)}; a different backbone or num_classes?"
            )
    model.load_state_dict(state, strict=False)
    return sorted(k for k in own if k not in state)
