"""Convolutionalization (FCN Section 3.1): a classifier's fully connected layers become convolutions.

fc6 sees the whole pool5 map of the classifier's native input, so it is exactly a k×k convolution
with k the pool5 size (7 for VGG16 at 224 px); fc7 and fc8 see one vector each, so they are 1×1
convolutions. The weights are the same numbers, reshaped; on a larger input the net then slides the
classifier over the image and returns a heatmap instead of one vector.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed on CPU as unfold + one matrix product when the output has few pixels (fc6).

    fc6 is a 7×7 kernel over a small pool5 map. unfold + matmul runs VGG16's fc6 forward + backward
    faster than the oneDNN convolution and skips oneDNN's weight-sized copy of the weight gradient
    (figures in docs/performance.md). Same parameters and state dict as ``nn.Conv2d``; on other
    devices, under ``torch.compile``, export or tracing, or once batch × output pixels exceed the
    output channels, it is the plain convolution.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layout = (self.stride, self.dilation, self.groups, self.padding_mode, isinstance(self.padding, str))
        traced = torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()
        if traced or layout != ((1, 1), (1, 1), 1, "zeros", False):  # traced: no checks on sizes
            return super()._conv_forward(x, weight, bias)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        h, w = x.shape[-2] + 2 * ph - kh + 1, x.shape[-1] + 2 * pw - kw + 1
        if (
            x.device.type != "cpu"
            or x.dim() != 4
            or not weight.is_contiguous()  # e.g. channels_last: a flat view would need a copy
            or min(h, w) < 1
            or x.shape[0] * h * w > weight.shape[0]  # the unfolded input would outgrow the weight
        ):
            return super()._conv_forward(x, weight, bias)
        cols = F.unfold(x, (kh, kw), padding=(ph, pw))  # (N, Cin·kh·kw, h·w)
        out = torch.matmul(weight.view(weight.shape[0], -1), cols)
        if bias is not None:
            out = out + bias[:, None]
        return out.view(x.shape[0], -1, h, w)


@torch.no_grad()
def convolutionalize(
    classifier: nn.Sequential,
    in_channels: int,
    kernel_size: int,
    *,
    padding: int = 0,
    keep_head: bool = False,
) -> nn.Sequential:
    """Convert ``classifier`` (Linear/ReLU/Dropout, as in torchvision's VGG) into fc6, fc7, … convs.

    ``in_channels`` × ``kernel_size``² must equal the first Linear's input (the flattened pool5 map).
    The last Linear (the classification head, fc8) is dropped unless ``keep_head``: FCN replaces it
    by a freshly initialised scoring layer. Layers are named ``fc6, relu6, drop6, fc7, …``.
    """
    linears = [m for m in classifier if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("classifier has no nn.Linear layer to convolutionalize")
    expected = in_channels * kernel_size * kernel_size
    if linears[0].in_features != expected:
        raise ValueError(
            f"first Linear takes {linears[0].in_features} inputs, but a {kernel_size}x{kernel_size} "
            f"conv over {in_channels} channels has {expected}: wrong kernel_size or in_channels"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    index = 5
    for module in classifier:
        if isinstance(module, nn.Linear):
            if module is linears[-1] and not keep_head:
                break
            index += 1
            first = module is linears[0]
            cin, k = (in_channels, kernel_size) if first else (module.in_features, 1)
            kind = GemmConv2d if k > 1 else nn.Conv2d  # see GemmConv2d for why fc6 differs
            conv = kind(cin, module.out_features, k, padding=padding if first else 0)
            # Linear weights are (out, C*k*k) over a row-major (C, k, k) flatten: a plain view.
            conv.weight.copy_(module.weight.view(module.out_features, cin, k, k))
            conv.bias.copy_(module.bias)
            layers[f"fc{index}"] = conv
        elif isinstance(module, nn.ReLU):
            layers[f"relu{index}"] = nn.ReLU(inplace=True)
        elif isinstance(module, nn.Dropout):
            layers[f"drop{index}"] = nn.Dropout(module.p)
        else:
            raise ValueError(f"cannot convolutionalize a {type(module).__name__} layer")
    return nn.Sequential(layers)
