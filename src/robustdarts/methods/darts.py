"""DARTS first and second order, and the random baseline."""

from __future__ import annotations

from . import register
from .base import Method


@register
class Darts(Method):
    """First-order DARTS (Liu et al., ICLR 2019; quark0/darts), defaults of spec D §1.4."""


@register
class Darts2(Method):
    name = "darts-2nd"
    summary = "second-order (unrolled) DARTS with a finite-difference Hessian-vector product"
    defaults = {"arch_order": "second"}


@register
class RandomArch(Method):
    """LHD's random baseline: no training at all; α ~ 0.1·N(0,1) (and β), then the usual discretization."""

    name = "random"
    paper = "Li & Talwalkar, Random Search and Reproducibility for NAS (UAI 2019); LHD random baseline"
    summary = "no training: α, β ~ 0.1·N(0,1) from the seed, discretized like any other method"
    defaults = {"arch_order": "none", "epochs": 1}

    train_weights = False

    def setup(self, search) -> None:
        import torch

        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            for p in search.arch.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
