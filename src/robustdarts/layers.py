"""Network pieces that the supernet (search) and the evaluation network (training from scratch) share.

Kept apart from both so that evalnet.py does not depend on the supernet: drop path, the NAS-Bench-201 residual
block, where the DARTS macro puts its reductions, and the DARTS parameter count.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .spaces.ops import relu_conv_bn


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Per-sample drop path, out of place (the reference's in-place version can corrupt saved activations)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * (mask / keep)


class ResBlock(nn.Module):
    """NAS-Bench-201 residual reduction block (fixed, not searched)."""

    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.conv_a = relu_conv_bn(C_in, C_out, 3, 2, 1, affine)
        self.conv_b = relu_conv_bn(C_out, C_out, 3, 1, 1, affine)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def reduction_layers(layers: int) -> tuple[int, ...]:
    """The cells that halve the resolution in the DARTS macro: at one and two thirds of the depth."""
    return (layers // 3, 2 * layers // 3)


def count_parameters(module: nn.Module, exclude: str = "auxiliary") -> int:
    """DARTS convention: parameters whose name does not contain ``exclude`` (the auxiliary head); buffers excluded."""
    return sum(p.numel() for n, p in module.named_parameters() if exclude not in n)
