"""The LHD benchmark's baselines (Zhang & Ding, ICML 2023; code chaoji90/LHD ``search/*``; spec L §3 rows 2-6).

Each family here is a relaxation (and, for GAEA, an arch update) from ``relax.py``; the recipes around them (LHD's
shared search recipe on the LHD space, DARTS' or AutoDL's elsewhere) are in the preset table. Reference bugs fixed
on purpose are named in each class.

Not here: PC-DARTS (row 7) needs partial channels inside every mixed edge (ops on C/4 channels, a bypass for the
rest, channel shuffle), i.e. a supernet change, so it is left out. Random (row 8) and DARTS (row 1) are in
``darts.py``; SP-DARTS (row 9) in ``sparse.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..errors import unknown
from ..relax import drnas_weights, gdas_weights, per_group
from ..schedules import GdasTau
from .darts import Darts
from .recipe import Recipe

_SEED_OFFSET = 3_000_017  # the method's sampling generator is seeded apart from the data streams


def argmax_onehot(logits: torch.Tensor, space=None) -> torch.Tensor:
    """One-hot of the argmax per group (edge rows; LHD node blocks), first maximum on ties."""
    def rows(z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z).scatter_(-1, z.argmax(dim=-1, keepdim=True), 1.0)

    return per_group(space, rows, logits.detach())


class _Sampling(Darts):
    """A relaxation that draws from the method's own seeded generator (its state is the recipe's state)."""

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        self.generator = torch.Generator().manual_seed(cfg.seed + _SEED_OFFSET)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass(frozen=True)
class GdasOptions:
    tau_start: float = 10.0
    tau_end: float = 0.1
    straight_through: str = "sampled"  # sampled | all


class Gdas(_Sampling):
    """GDAS (Dong & Yang, CVPR 2019; as in LHD ``search/GDAS``, spec L §3 row 6): a hard Gumbel-softmax sample per
    edge (node-joint, one (input, op) pair per node, in LHD; the LHD sum output too), straight-through, τ linear
    from 10 to 0.1 over the run.

    Unsampled ops get weight exactly 0.0 with no gradient path, so the weight step skips them. Fixed on purpose:
    the reference adds the zero-valued weights of unsampled edges as scalars to the node sum, which injects a
    spurious arch gradient (spec L §8 item 8; ``relax.gumbel_hard``). The supernet is validated with the argmax
    one-hot of α (the mode of the sampler); the genotype reads softmax(α) at τ = 1, as LHD's dump.
    """

    Options = GdasOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts.straight_through not in ("sampled", "all"):
            raise unknown("straight_through", self.opts.straight_through, ("sampled", "all"))
        self.schedule = GdasTau(self.opts.tau_start, self.opts.tau_end, cfg.epochs)

    def tau(self, ctx) -> float:
        return self.schedule(ctx.epoch)

    def relax(self, alphas, betas, ctx, purpose):
        if purpose in ("arch", "weight"):
            return gdas_weights(self.space, alphas, betas, self.tau(ctx), generator=self.generator,
                                straight_through=self.opts.straight_through)
        if purpose == "derive":
            return super().relax(alphas, betas, ctx, purpose)
        weights = {c: argmax_onehot(a, self.space) for c, a in alphas.items()}
        for c, b in betas.items():
            weights[f"{c}_sum"] = argmax_onehot(b[0])
            weights[f"{c}_cat"] = torch.sigmoid(b[1])
        return weights


@dataclass(frozen=True)
class DrNasOptions:
    kl_weight: float = 0.0
    kl_prior: float = 1.0
    sigmoid_cat: bool = False


class DrNas(_Sampling):
    """DrNAS (Chen et al., ICLR 2021; as in LHD ``search/DrNAS``, spec L §3 row 3): mixing weights are
    reparameterized Dirichlet(elu(α) + 1) samples, one per edge row (LHD too, and each LHD output row, the concat
    row included unless ``sigmoid_cat``), a fresh sample for every arch and weight step.

    As in LHD, and unlike the DrNAS paper, there is no progressive partial-channel pruning; the paper's KL anchor
    is an option: ``kl_weight`` > 0 adds kl_weight·mean_rows KL(Dir(elu(α)+1) ‖ Dir(kl_prior·1)) to the arch loss
    (first order only). The genotype reads softmax(α) (node-joint in LHD) and σ(β_cat), as LHD's dump does (its
    train/derive mismatch, spec L §8 item 6, kept for fidelity); the supernet is validated with the Dirichlet mean.
    """

    Options = DrNasOptions

    def relax(self, alphas, betas, ctx, purpose):
        if purpose in ("arch", "weight"):
            return drnas_weights(self.space, alphas, betas, generator=self.generator,
                                 sigmoid_cat=self.opts.sigmoid_cat)
        if purpose == "derive":
            return super().relax(alphas, betas, ctx, purpose)

        def mean(logits: torch.Tensor) -> torch.Tensor:
            concentration = F.elu(logits) + 1.0
            return concentration / concentration.sum(dim=-1, keepdim=True)

        weights = {c: mean(a) for c, a in alphas.items()}
        for c, b in betas.items():
            weights[f"{c}_sum"] = mean(b[0])
            weights[f"{c}_cat"] = torch.sigmoid(b[1]) if self.opts.sigmoid_cat else mean(b[1])
        return weights

    def arch_penalty(self, alphas, betas, ctx) -> torch.Tensor | None:
        if self.opts.kl_weight <= 0:
            return None
        terms = []
        for a in alphas.values():
            concentration = F.elu(a) + 1.0
            prior = torch.full_like(concentration, self.opts.kl_prior)
            terms.append(kl_divergence(Dirichlet(concentration), Dirichlet(prior)))
        return self.opts.kl_weight * torch.cat(terms).mean()


class Gaea(Recipe):
    """GAEA (Li et al., ICLR 2021; LHD ``search/GAEA/*_bilevel.py``, spec L §3 row 4): α lives on the simplex
    (uniform init) and takes exponentiated-gradient steps (``arch_update = "eg"``, η = ``arch_lr`` = 0.1) on the
    val batch.

    Fixed on purpose: LHD applies its node-joint softmax on top of the simplex-projected α, so the mixing weights
    stay nearly uniform (spec L §3 note, §8 item 7). Here α *is* the mixing weight, as in the original GAEA: one
    simplex per edge row (DARTS/NB201) or per node block of (input, op) pairs (LHD, matching its node-joint
    relaxation; LHD normalizes per edge row). LHD's β rows are simplexes too, fed directly as the sum weights and
    the concat gates. The genotype reads α itself. With ``arch_order: single`` (GAEA ERM, LHD
    ``*_erm.py``, results ``gaea_silevel``, row 5) one training-batch backward per step fills both the weight and
    the α gradients; LHD trains that on the whole training set (twice the steps per epoch), we keep the split so
    that the supernet validation and leakage metrics have held-out data.
    """

    arch_update = "eg"

    def init_arch(self, alphas, betas) -> None:
        with torch.no_grad():
            for a in alphas.values():
                a.copy_(per_group(self.space, lambda z: torch.full_like(z, 1.0 / z.shape[-1]), a.detach()))
            for b in betas.values():
                b.fill_(1.0 / b.shape[-1])

    def relax(self, alphas, betas, ctx, purpose):
        weights = dict(alphas)
        for c, b in betas.items():
            weights[f"{c}_sum"], weights[f"{c}_cat"] = b[0], b[1]
        return weights


__all__ = ["argmax_onehot", "GdasOptions", "Gdas", "DrNasOptions", "DrNas", "Gaea"]
