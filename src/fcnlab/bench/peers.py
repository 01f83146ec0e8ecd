"""The peer implementation, torchfcn 1.9.7 (wkentaro/pytorch-fcn), built for a side-by-side run.

torchfcn is never a dependency of fcnlab: ``make bench`` installs it with ``--no-deps``. Its modules
``import fcn`` only for the pretrained-weight download, so a stub module stands in for that package.
"""

from __future__ import annotations

import sys
import types

from torch import nn

# fcnlab model name -> torchfcn class name (torchfcn has no at-once variant under our name).
PEERS = {"fcn32s": "FCN32s", "fcn16s": "FCN16s", "fcn8s": "FCN8s"}
VERSION = "1.9.7"


def import_torchfcn() -> tuple[types.ModuleType | None, str]:
    """(torchfcn, "") or (None, why not): never raises, so the bench runs without the peer."""
    stubbed = "fcn" not in sys.modules
    if stubbed:  # the real `fcn` package only downloads weights; models never call it here
        stub = types.ModuleType("fcn")
        stub.__doc__ = "fcnlab.bench stub: torchfcn imports fcn for weight downloads only"
        sys.modules["fcn"] = stub
    try:
        import torchfcn
    except Exception as e:  # ImportError, or a broken dependency raising anything else on import
        if stubbed:
            sys.modules.pop("fcn", None)
        return None, f"{type(e).__name__}: {e}"
    return torchfcn, ""


def build_peer(torchfcn: types.ModuleType, model: str, num_classes: int = 21) -> nn.Module:
    """torchfcn's net for an fcnlab model name, with random weights initialised like fcnlab's.

    torchfcn zero-initialises every conv (it expects copied VGG16 weights); the bench gives its
    convs the same He init fcnlab's random VGG16 gets and keeps the scoring layers at zero, as
    fcnlab does, so both sides compute on comparable numbers. Its bilinear deconvs stay as built.
    """
    net = getattr(torchfcn.models, PEERS[model])(n_class=num_classes)
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d) and not name.startswith("score"):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
