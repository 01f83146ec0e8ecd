"""Reading weights: torchvision's VGG16, AlexNet or GoogLeNet, or the Caffe-converted VGG16 (from a
local file or torch's hub cache, never downloaded), a pretrained tiny classifier, an FCN checkpoint
for staged init (32s → 16s → 8s), and torchfcn's FCN state dicts (how the reference release's trained nets are
distributed for PyTorch), all through one reader (:func:`read_checkpoint`)."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fcnlab.errors import FCNLabError

# torchvision's VGG16_Weights.IMAGENET1K_V1 file name, as it lands in torch's hub cache.
VGG16_IMAGENET_FILE = "vgg16-397923af.pth"
# torchfcn's Caffe-converted VGG16 (Caffe's VGG_ILSVRC_16_layers in torchvision's key layout).
VGG16_CAFFE_FILE = "vgg16_from_caffe.pth"
# backbone -> model.pretrained name -> its file in torch's hub cache (torchvision's IMAGENET1K_V1 files)
PRETRAINED_FILES = {
    "vgg16": {"imagenet": VGG16_IMAGENET_FILE, "imagenet_caffe": VGG16_CAFFE_FILE},
    "alexnet": {"imagenet": "alexnet-owt-7be5be79.pth"},
    "googlenet": {"imagenet": "googlenet-1378be20.pth"},
}
PRETRAINED_KINDS = ("imagenet", "imagenet_caffe")  # the names model.pretrained takes besides a path

# torchfcn's layer names → fcnlab's (VGG16 convs at torchvision's ``features`` indices).
_TORCHFCN_CONVS = (
    ("conv1_1", 0), ("conv1_2", 2), ("conv2_1", 5), ("conv2_2", 7), ("conv3_1", 10), ("conv3_2", 12),
    ("conv3_3", 14), ("conv4_1", 17), ("conv4_2", 19), ("conv4_3", 21), ("conv5_1", 24), ("conv5_2", 26),
    ("conv5_3", 28),
)  # fmt: skip
TORCHFCN_LAYERS = {
    **{name: f"backbone.features.{i}" for name, i in _TORCHFCN_CONVS},
    "fc6": "backbone.fc.fc6",
    "fc7": "backbone.fc.fc7",
    "score_fr": "score_fr",
    "score_pool4": "fusions.pool4.score",
    "score_pool3": "fusions.pool3.score",
    "upscore2": "fusions.pool4.upsample.deconv",  # 2x, fc7 scores → pool4's stride
    "upscore_pool4": "fusions.pool3.upsample.deconv",  # 2x, fused 16s scores → pool3's stride
    "upscore": "upscore.deconv",  # FCN32s: 32x to pixels
    "upscore16": "upscore.deconv",  # FCN16s: 16x
    "upscore8": "upscore.deconv",  # FCN8s: 8x
}
TORCHFCN_FILES = {  # torchfcn's release files (the reference nets converted from Caffe)
    "fcn32s": "fcn32s_from_caffe.pth",
    "fcn16s": "fcn16s_from_caffe.pth",
    "fcn8s": "fcn8s_from_caffe.pth",
    "fcn8s_atonce": "fcn8s-atonce_from_caffe.pth",
}


def hub_checkpoints_dir() -> Path:
    """torch's hub cache of weight files, ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_path(kind: str = "imagenet", backbone: str = "vgg16") -> Path:
    """Where the ImageNet weights of ``model.pretrained=<kind>`` for ``backbone`` are looked for."""
    return hub_checkpoints_dir() / PRETRAINED_FILES[backbone][kind]


@dataclass
class Checkpoint:
    """A weights file as read: tensors under fcnlab's names, and what else it says about the net."""

    path: Path
    state: dict[str, torch.Tensor]
    format: str  # "fcnlab" (a training checkpoint), "torchfcn" (converted keys) or "state_dict"
    hparams: dict = field(default_factory=dict)  # FCNModule's, for an fcnlab training checkpoint
    info: dict = field(default_factory=dict)  # the run's stored config and git sha
    variant: str | None = None  # torchfcn: the net the keys describe (fcn32s | fcn16s | fcn8s)


def load_file(path: str | os.PathLike, mmap: bool = False) -> object:
    """fcnlab's one ``torch.load``: on the CPU, tensors only where the file allows it (fcnlab's training
    checkpoints also pickle their hyperparameters); ``mmap`` maps the tensors instead of reading them."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def is_torchfcn(state: dict) -> bool:
    """torchfcn's FCN32s/16s/8s/8sAtOnce key layout (conv1_1 … fc7, score_fr)."""
    return all(f"{k}.weight" in state for k in ("conv1_1", "conv5_3", "fc6", "fc7", "score_fr"))


def torchfcn_variant(state: dict) -> str:
    """The net a torchfcn state dict holds: its skip layers decide (at-once has fcn8s's keys)."""
    if "score_pool3.weight" in state:
        return "fcn8s"
    return "fcn16s" if "score_pool4.weight" in state else "fcn32s"


def from_torchfcn(state: dict[str, torch.Tensor], source: str, option: str) -> dict[str, torch.Tensor]:
    """torchfcn keys → fcnlab keys (same tensors); the final upsampling lands on ``upscore.deconv``."""
    out = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        if layer not in TORCHFCN_LAYERS:
            raise FCNLabError(f"{option}={source}: torchfcn-style file with an unknown layer {key}")
        out[f"{TORCHFCN_LAYERS[layer]}.{param}"] = value
    return out


def read_checkpoint(path: str | os.PathLike, option: str) -> Checkpoint:
    """Read any weights file fcnlab takes: an fcnlab/Lightning checkpoint, a plain state dict, or a
    torchfcn FCN state dict (keys converted to fcnlab's); ``option`` names the setting in errors."""
    path = Path(path)
    if not path.is_file():
        raise FCNLabError(f"{option}={path}: no such file; check the path")
    try:
        obj = load_file(path)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise FCNLabError(
            f"{option}={path}: not a readable checkpoint ({type(e).__name__}); truncated?"
        ) from None
    hparams, info = {}, {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a Lightning checkpoint
        hparams = dict(obj.get("hyper_parameters") or {})
        info = obj.get("fcnlab") if isinstance(obj.get("fcnlab"), dict) else {}
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):  # torchfcn's trainer
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FCNLabError(f"{option}={path}: holds no state dict of tensors")
    prefix = "model."  # FCNModule keeps the network as ``self.model``
    if all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    if is_torchfcn(obj):
        return Checkpoint(
            path, from_torchfcn(obj, str(path), option), "torchfcn", variant=torchfcn_variant(obj)
        )
    return Checkpoint(path, obj, "fcnlab" if "model" in hparams else "state_dict", hparams, info)


def read_state_dict(path: str | os.PathLike, option: str) -> dict[str, torch.Tensor]:
    """Tensors of a saved state dict or checkpoint under fcnlab's names (see :func:`read_checkpoint`)."""
    return read_checkpoint(path, option).state


def stored_input_space(ckpt: Checkpoint) -> dict | None:
    """The input space a checkpoint's net was trained in: stored (fcnlab), caffe (torchfcn), else None."""
    if ckpt.format == "torchfcn":
        from fcnlab.data.input_space import INPUT_SPACES

        return INPUT_SPACES["caffe"].as_dict()
    return ckpt.hparams.get("input_space") if ckpt.format == "fcnlab" else None


def is_bilinear(weight: torch.Tensor) -> bool:
    """A (C, C, k, k) transposed-conv weight that is per-channel bilinear upsampling, no mixing."""
    from fcnlab.models.upsample import bilinear_kernel

    c, c2, k, k2 = weight.shape
    if c != c2 or k != k2 or k < 2:
        return False
    expected = torch.zeros_like(weight, dtype=torch.float32)
    expected[range(c), range(c)] = bilinear_kernel((k + 1) // 2, k)  # k = 2f or 2f - 1
    return torch.allclose(weight.float(), expected, atol=1e-6)


def fit_upsampling(
    state: dict[str, torch.Tensor], own: dict, model_name: str, source: str, option: str
) -> dict[str, torch.Tensor]:
    """Drop the upsampling weights ``own`` keeps as fixed bilinear where they are bilinear anyway;
    refuse learned ones it cannot hold (a silently different net otherwise)."""
    kept = {}
    for key, value in state.items():
        if key.endswith("deconv.weight") and key not in own:
            if not is_bilinear(value):
                hint = (
                    "fcnlab trains that one fixed; evaluate the file with fcnlab-eval ckpt= instead"
                    if key.startswith("upscore.")
                    else "set model.learn_upsampling=true"
                )
                raise FCNLabError(
                    f"{option}={source}: {key} holds learned upsampling weights (not bilinear) but "
                    f"{model_name} keeps it fixed; {hint}"
                )
            continue
        kept[key] = value
    return kept


def resolve_pretrained(pretrained: str | os.PathLike | None, backbone: str) -> dict | None:
    """The classifier state dict named by ``pretrained``: None, "imagenet" (torchvision's file of a
    full-size backbone), "imagenet_caffe" (torchfcn's Caffe-converted VGG16) or a path."""
    if pretrained is None:
        return None
    if str(pretrained) in PRETRAINED_KINDS:
        kind = str(pretrained)
        if kind not in PRETRAINED_FILES.get(backbone, {}):
            having = [b for b, files in PRETRAINED_FILES.items() if kind in files]
            raise FCNLabError(
                f"model.pretrained={kind} exists for backbone {' | '.join(having)} only, not {backbone}; "
                "give a path to a pretrained classifier instead"
            )
        path = imagenet_weights_path(kind, backbone)
        if not path.is_file():
            if kind == "imagenet":
                hint = f"copy torchvision's {path.name} there or pass model.pretrained=/path/to/file.pth"
            else:
                hint = (
                    "copy torchfcn's vgg16_from_caffe.pth there (Caffe's VGG_ILSVRC_16_layers converted "
                    "by torchfcn, github.com/wkentaro/pytorch-fcn) or pass "
                    "model.pretrained=/path/to/file.pth input_space=caffe"
                )
            raise FCNLabError(
                f"model.pretrained={kind}: {path} is missing and nothing is downloaded at run time; {hint}"
            )
        return read_state_dict(path, "model.pretrained")
    return read_state_dict(pretrained, "model.pretrained")


def load_classifier(classifier: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a torchvision-layout classifier state, naming the first mismatch in one line.

    The head FCN replaces (``classifier.spec.head``: fc8, GoogLeNet's fc and auxiliary classifiers)
    is neither required nor loaded; a file without BatchNorm batch counters loads all the same.
    """
    spec = classifier.spec
    dropped = spec.head

    def used(key: str) -> bool:
        return not key.startswith(dropped)

    own = {k: v for k, v in classifier.state_dict().items() if used(k)}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise FCNLabError(
            f"model.pretrained={source}: missing {missing[0]} (and {len(missing) - 1} more); "
            f"not a {spec.family}-layout classifier"
        )
    for key, value in own.items():
        if key in state and state[key].shape != value.shape:
            raise FCNLabError(
                f"model.pretrained={source}: {key} has shape {tuple(state[key].shape)}, the backbone "
                f"expects {tuple(value.shape)}; weights of another backbone size?"
            )
    classifier.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


@torch.no_grad()
def load_staged(
    model: nn.Module, source: str | os.PathLike | dict | Checkpoint, option: str = "init_from"
) -> list[str]:
    """Initialise ``model`` from a coarser FCN (32s → 16s → 8s), as the paper's staged training.

    Every tensor the two nets share is copied and must match in shape; the finer net's new layers
    (skip scoring at zero, 2× upsampling at bilinear) keep their initialisation, so the new net starts
    out computing exactly its parent's function. Returns the names of the layers left new. A torchfcn
    FCN file works as a parent too (its keys are converted on reading).
    """
    if isinstance(source, Checkpoint):
        state, source = source.state, source.path
    else:
        state = source if isinstance(source, dict) else read_state_dict(source, option)
    own = model.state_dict()
    state = fit_upsampling(state, own, getattr(model, "name", "the model"), str(source), option)
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
