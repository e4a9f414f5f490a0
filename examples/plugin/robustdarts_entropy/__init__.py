"""An example robustdarts plugin: a method (a recipe family and its preset) and a candidate op.

Installed (``pip install -e examples/plugin``), its entry points add ``entropy-darts`` to ``robustdarts methods``
and op ``conv_3x3`` to every space; unpackaged, ``--method robustdarts_entropy:ENTROPY_DARTS`` imports the preset
from the Python path. Nothing here edits robustdarts: a preset is a row, an op a factory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from robustdarts.methods import Preset
from robustdarts.methods.darts import Darts


@dataclass(frozen=True)
class EntropyOptions:
    weight: float = 0.1  # λ of the entropy penalty


class EntropyDarts(Darts):
    """DARTS + weight·mean_edges H(softmax(α_edge)) on the arch loss (cite the paper and its code here).

    Pushing each edge's op distribution towards one op narrows the gap between the supernet and the derived
    architecture; everything else is first-order DARTS."""

    Options = EntropyOptions

    def arch_penalty(self, alphas, betas, ctx):
        p = torch.cat([torch.softmax(a, -1).reshape(-1, a.shape[-1]) for a in alphas.values()])
        return self.opts.weight * -(p * p.clamp_min(1e-12).log()).sum(-1).mean()


# The preset: a family, a paper, a summary and settings per kind of space (here: 100 epochs on NAS-Bench-201).
ENTROPY_DARTS = Preset("entropy-darts", EntropyDarts, "Author et al., Title (Venue Year)",
                       "DARTS + an entropy penalty on the mixing weights", {"nb201": dict(epochs=100)})


def conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    """A plain ReLU-conv-BN 3x3 candidate op: C channels to C channels, stride 1 or 2 (affine BN only in the
    evaluation network, as robustdarts' own ops)."""
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(C, affine=affine))
