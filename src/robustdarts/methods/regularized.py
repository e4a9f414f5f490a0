"""DARTS- (auxiliary skip) and β-DARTS (β-decay regularization of the architecture logits).

Both change plain first-order DARTS in one place only: DARTS- adds a decaying, un-weighted skip to every edge of
the supernet; β-DARTS adds a regularizer of α to the validation loss of the arch step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..config import AT_LEAST_0, Range
from ..errors import RobustDartsError
from ..spaces.ops import FactorizedReduce
from .darts import Darts


def auxiliary_skip(C: int, stride: int) -> nn.Module:
    """DARTS-'s auxiliary skip of one edge: Identity, or a non-affine FactorizedReduce on stride-2 edges."""
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=False)


@dataclass(frozen=True)
class DartsMinusOptions:
    RANGES: ClassVar[dict[str, Range]] = {"skip_beta": AT_LEAST_0}

    skip_beta: float = 1.0


class DartsMinus(Darts):
    """DARTS- (Chu et al., "DARTS-: Robustly Stepping out of Performance Collapse Without Indicators", ICLR 2021),
    as implemented in the LHD baselines (spec L §3 row 10).

    Every mixed edge gets an auxiliary skip (``auxiliary_skip``, handed to the supernet as its ``edge_extra``)
    that is **not** weighted by α and is scaled by β_e = skip_beta·(1 − e/E): 1.0 at epoch 0 falling linearly to
    0.02 at the last of 50 epochs (the reference's (50 − e)/50). The skip lets the supernet's gradient flow without
    the parametric-free ops having to win α, which is the paper's explanation of skip collapse. Everything else is
    first-order DARTS. The scale lives in the supernet's training forward only: evaluation and the derived
    genotype never see it (the discrete architecture has no auxiliary skip).

    On ``nb201`` the auxiliary skip sits on every edge of the search cells as well (the DARTS- paper has NB201
    results); the residual reduction blocks are fixed and get none.
    """

    Options = DartsMinusOptions
    edge_extra = staticmethod(auxiliary_skip)

    def extra_scale(self, ctx) -> float:
        return self.opts.skip_beta * (1.0 - ctx.epoch / max(ctx.epochs, 1))


def beta_regularizer(space, alphas, betas) -> torch.Tensor:
    """The β-decay regularizer of the architecture logits (dicts of α and β per cell type), differentiable.

    Per-edge spaces (DARTS kind, S1–S4, NAS-Bench-201): the mean over every edge of every cell type of
    logsumexp(α_edge) — the β-DARTS paper's form (Ye et al., CVPR 2022, reference ``mlc_loss``). Its gradient is
    softmax(α_edge)/#edges: it pushes the logits of the winning op down hardest, which keeps α from saturating.

    LHD (node-joint softmax, spec L §3 row 11): per cell type, the mean over nodes i of
    [log(2/n_i) + logsumexp(α block of node i)] (n_i = the node's number of inputs; the log term is a constant
    that only shifts the value), averaged over cell types, plus the output term: the mean over cell types of
    logsumexp(β_sum) of the sum-output softmax. The LHD reference builds this with ``torch.tensor(list)``, which
    detaches it (the regularizer has no effect at all), and its output term reads the normal cell's row 0 twice
    and never the reduce cell; both are fixed here on purpose.
    """
    if space.kind != "lhd":
        rows = torch.cat([a.reshape(-1, a.shape[-1]) for a in alphas.values()], dim=0)
        return torch.logsumexp(rows, dim=-1).mean()
    node_terms, output_terms = [], []
    for c, a in alphas.items():
        for node in range(space.steps):
            rows = space.node_edges(node)
            n_inputs = rows.stop - rows.start
            node_terms.append(math.log(2.0 / n_inputs) + torch.logsumexp(a[rows.start:rows.stop].reshape(-1), dim=0))
        output_terms.append(torch.logsumexp(betas[c][0], dim=0))
    return torch.stack(node_terms).mean() + torch.stack(output_terms).mean()


@dataclass(frozen=True)
class BetaDartsOptions:
    RANGES: ClassVar[dict[str, Range]] = {"lambda_start": AT_LEAST_0, "lambda_per_epoch": AT_LEAST_0}

    lambda_start: float = 0.0
    lambda_per_epoch: float = 0.5


class BetaDarts(Darts):
    """β-DARTS (Ye et al., "β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search", CVPR 2022).

    First-order DARTS whose arch loss is L_val + λ_e·``beta_regularizer(α)``, with λ_e = lambda_start +
    lambda_per_epoch·e: 0.5·e by default (the reference's 0 + 50·e/100, and LHD's 0.5·e — 0 at epoch 0, 24.5 at
    epoch 49). Fixes on purpose: the regularizer really carries its gradient (the LHD copy detaches it), and the
    LHD output term covers both cell types. Search cutout, when asked for, ramps e/(E − 1) as in its SDARTS-based
    code. Per-space recipes (LHD's batch 128, NB201's 100 epochs) are in the preset table.
    """

    Options = BetaDartsOptions
    cutout_rule = "ramp"

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.arch_grad != "first":
            raise RobustDartsError(f"beta-darts adds its regularizer in the first-order arch step, but arch_order is "
                                   f"{self.arch_grad!r}; use arch_order=first.")

    def reg_weight(self, epoch: int) -> float:
        return self.opts.lambda_start + self.opts.lambda_per_epoch * epoch

    def arch_penalty(self, alphas, betas, ctx) -> torch.Tensor | None:
        lam = self.reg_weight(ctx.epoch)
        if lam == 0.0:
            return None
        return lam * beta_regularizer(self.space, alphas, betas)


__all__ = ["auxiliary_skip", "DartsMinus", "beta_regularizer", "BetaDarts"]
