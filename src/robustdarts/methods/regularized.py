"""DARTS- (auxiliary skip) and β-DARTS (β-decay regularization of the architecture logits).

Both change plain first-order DARTS in one place only: DARTS- adds a decaying, un-weighted skip to every edge of
the supernet; β-DARTS adds a regularizer of α to the validation loss of the arch step.
"""

from __future__ import annotations

import math

import torch

from ..errors import RobustDartsError
from . import register
from .base import Method


@register
class DartsMinus(Method):
    """DARTS- (Chu et al., "DARTS-: Robustly Stepping out of Performance Collapse Without Indicators", ICLR 2021),
    as implemented in the LHD baselines (spec L §3 row 10).

    Every mixed edge gets an auxiliary skip — Identity, or a non-affine FactorizedReduce on stride-2 edges — that
    is **not** weighted by α and is scaled by β_e = skip_beta·(1 − e/E): 1.0 at epoch 0 falling linearly to 0.02
    at the last of 50 epochs (the reference's (50 − e)/50). The skip lets the supernet's gradient flow without the
    parametric-free ops having to win α, which is the paper's explanation of skip collapse. Everything else is
    first-order DARTS. The scale reaches exactly 0 only after the last epoch, so evaluation (eval_weights) and the
    derived genotype never see it: it lives in the supernet's forward only, and ``Search.evaluate`` passes no
    scale (the discrete architecture has no auxiliary skip).

    On ``nb201`` the auxiliary skip sits on every edge of the search cells as well (the DARTS- paper has NB201
    results); the residual reduction blocks are fixed and get none.
    """

    name = "darts-minus"
    paper = "Chu et al., DARTS-: Robustly Stepping out of Performance Collapse Without Indicators (ICLR 2021)"
    summary = "DARTS + an un-weighted auxiliary skip on every edge, scaled by β_e = 1 − e/E (linear decay)"
    options = {"skip_beta": 1.0}
    uses_aux_skip = True

    def aux_skip_scale(self, search) -> float:
        return float(self.opts["skip_beta"]) * (1.0 - search.epoch / max(self.cfg.epochs, 1))


def beta_regularizer(arch) -> torch.Tensor:
    """The β-decay regularizer of an ``ArchParams`` module, as a differentiable function of its logits.

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
    space = arch.space
    if space.kind != "lhd":
        rows = torch.cat([a.reshape(-1, a.shape[-1]) for a in arch.alphas.values()], dim=0)
        return torch.logsumexp(rows, dim=-1).mean()
    node_terms, output_terms = [], []
    for c, a in arch.alphas.items():
        for node in range(space.steps):
            rows = space.node_edges(node)
            n_inputs = rows.stop - rows.start
            node_terms.append(math.log(2.0 / n_inputs) + torch.logsumexp(a[rows.start:rows.stop].reshape(-1), dim=0))
        output_terms.append(torch.logsumexp(arch.betas[c][0], dim=0))
    return torch.stack(node_terms).mean() + torch.stack(output_terms).mean()


@register
class BetaDarts(Method):
    """β-DARTS (Ye et al., "β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search", CVPR 2022).

    First-order DARTS whose arch loss is L_val + λ_e·``beta_regularizer(α)``, with λ_e = lambda_start +
    lambda_per_epoch·e: 0.5·e by default (the reference's 0 + 50·e/100, and LHD's 0.5·e — 0 at epoch 0, 24.5 at
    epoch 49). Fixes on purpose: the regularizer really carries its gradient (the LHD copy detaches it), and the
    LHD output term covers both cell types. LHD's own search used batch 128 (spec L §3); the default here is the
    DARTS batch of the paper's DARTS-space runs — set ``batch_size=128`` to replicate LHD.
    """

    name = "beta-darts"
    paper = "Ye et al., β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search (CVPR 2022)"
    summary = "DARTS + λ_e·mean logsumexp(α) on the arch loss (β-decay), λ_e = 0.5·e"
    options = {"lambda_start": 0.0, "lambda_per_epoch": 0.5}

    def setup(self, search) -> None:
        if self.cfg.arch_order != "first":
            raise RobustDartsError(f"beta-darts adds its regularizer in the first-order arch step, but arch_order is "
                                   f"{self.cfg.arch_order!r}; use arch_order=first.")

    def reg_weight(self, epoch: int) -> float:
        return float(self.opts["lambda_start"]) + float(self.opts["lambda_per_epoch"]) * epoch

    def arch_loss_extra(self, search) -> torch.Tensor | None:
        lam = self.reg_weight(search.epoch)
        if lam == 0.0:
            return None
        return lam * beta_regularizer(search.arch)
