"""DARTS (first and second order, mixed level, RobustDARTS' L2 / DP presets) and the random baseline.

DARTS itself is the base ``Recipe``: softmax(α) mixing weights, an Adam arch step on a validation batch, an SGD
weight step on a training batch. Its variants differ only in config fields (arch_order, weight_decay, drop_path,
cutout), which the preset table sets per space; the two families here differ in which cutout rule their code
follows.
"""

from __future__ import annotations

import torch

from .recipe import Recipe


class Darts(Recipe):
    """DARTS (Liu et al., ICLR 2019; quark0/darts). Search cutout, when asked for, applies to every batch, as the
    DARTS code's ``--cutout`` does. MiLeNAS (He et al., CVPR 2020) is this family with ``arch_order: mixed``
    (λ = ``mixed_lambda``)."""


class RobustDarts(Darts):
    """RobustDARTS' DARTS (Zela et al., ICLR 2020; automl/RobustDARTS ``src/search/train_search.py``): cutout is
    switched on with search-time drop path only, and its probability ramps like the drop path, e/(E − 1)."""

    cutout_rule = "with-drop-path"


class RandomArch(Recipe):
    """LHD's random baseline: no training at all; α ~ 0.1·N(0,1) (and β) from the run seed, then the usual
    discretization."""

    trains_weights = False

    def init_arch(self, alphas, betas) -> None:
        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            for p in [*alphas.values(), *betas.values()]:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen).to(p))


__all__ = ["Darts", "RobustDarts", "RandomArch"]
