"""The LHD benchmark's baselines (Zhang & Ding, ICML 2023; code chaoji90/LHD ``search/*``; spec L §3 rows 2-6).

Each preset uses LHD's shared search recipe (spec L §2.4: 50 epochs, batch 176, SGD 0.025 cosine to 3e-4, arch Adam
3e-4 with β1 0.5 and no arch weight decay, first order) plus the row's own changes, in any space; the relaxations
come from ``relax.py``. Reference bugs fixed on purpose are named in each class.

Not here: PC-DARTS (row 7) needs partial channels inside every mixed edge (ops on C/4 channels, a bypass for the
rest, channel shuffle), i.e. a supernet change, so it is left out. Random (row 8) and DARTS (row 1) are in
``darts.py``; SP-DARTS (row 9) in ``sparse.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..errors import unknown
from ..relax import detached, drnas_weights, gaea_eg_update, gdas_weights, per_group
from ..schedules import GdasTau
from . import register
from .base import Method

LHD_RECIPE: dict[str, Any] = dict(epochs=50, batch_size=176, lr=0.025, lr_min=3e-4, lr_schedule="cosine",
                                  arch_lr=3e-4, arch_beta1=0.5, arch_beta2=0.999, arch_weight_decay=0.0)

_SEED_OFFSET = 3_000_017  # the method's sampling generator is seeded apart from the data streams


def argmax_onehot(logits: torch.Tensor, space=None) -> torch.Tensor:
    """One-hot of the argmax per group (edge rows; LHD node blocks), first maximum on ties."""
    def rows(z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z).scatter_(-1, z.argmax(dim=-1, keepdim=True), 1.0)

    return per_group(space, rows, logits.detach())


@register
class Gdas(Method):
    """GDAS as in LHD (``search/GDAS``, spec L §3 row 6; Dong & Yang, CVPR 2019): a hard Gumbel-softmax sample per
    edge (node-joint, one (input, op) pair per node, in LHD; the LHD sum output too), straight-through, τ linear
    from 10 to 0.1 over the run; batch 256, weight lr 0.05.

    Unsampled ops get weight exactly 0.0 with no gradient path, so the weight step skips them. Fixed on purpose:
    the reference adds the zero-valued weights of unsampled edges as scalars to the node sum, which injects a
    spurious arch gradient (spec L §8 item 8; ``relax.gumbel_hard``). The supernet is validated with the argmax
    one-hot of α (the mode of the sampler); the genotype reads softmax(α) at τ = 1, as LHD's dump.
    """

    name = "gdas"
    paper = "Dong & Yang, Searching for a Robust Neural Architecture in Four GPU Hours (CVPR 2019); LHD code"
    summary = "hard Gumbel sample per edge (LHD: per node), straight-through, τ 10 → 0.1; unsampled ops skipped"
    defaults = dict(LHD_RECIPE, batch_size=256, lr=0.05)
    options = {"tau_start": 10.0, "tau_end": 0.1, "straight_through": "sampled"}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts["straight_through"] not in ("sampled", "all"):
            raise unknown("straight_through", self.opts["straight_through"], ("sampled", "all"))
        self.schedule = GdasTau(float(self.opts["tau_start"]), float(self.opts["tau_end"]), cfg.epochs)
        self.generator = torch.Generator().manual_seed(cfg.seed + _SEED_OFFSET)

    def tau(self, search, step: int) -> float:
        return self.schedule(search.epoch)

    def _sample(self, search, step: int) -> dict:
        arch = search.arch
        return gdas_weights(self.space, dict(arch.alphas), dict(arch.betas), self.tau(search, step),
                            generator=self.generator, straight_through=self.opts["straight_through"])

    def arch_weights(self, search, step: int) -> dict:
        return self._sample(search, step)

    def weight_weights(self, search, step: int) -> dict:
        with torch.no_grad():
            return detached(self._sample(search, step))

    def eval_weights(self, search) -> dict:
        arch = search.arch
        weights = {c: argmax_onehot(a, self.space) for c, a in arch.alphas.items()}
        for c, b in arch.betas.items():
            weights[f"{c}_sum"] = argmax_onehot(b[0])
            weights[f"{c}_cat"] = torch.sigmoid(b[1].detach())
        return weights

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@register
class DrNas(Method):
    """DrNAS as in LHD (``search/DrNAS``, spec L §3 row 3; Chen et al., ICLR 2021): mixing weights are
    reparameterized Dirichlet(elu(α) + 1) samples, one per edge row (LHD too, and each LHD output row, the concat
    row included unless ``sigmoid_cat``), a fresh sample for every arch and weight step.

    As in LHD, and unlike the DrNAS paper, there is no progressive partial-channel pruning; the paper's KL anchor
    is an option: ``kl_weight`` > 0 adds kl_weight·mean_rows KL(Dir(elu(α)+1) ‖ Dir(kl_prior·1)) to the arch loss
    (first order only). The genotype reads softmax(α) (node-joint in LHD) and σ(β_cat), as LHD's dump does (its
    train/derive mismatch, spec L §8 item 6, kept for fidelity); the supernet is validated with the Dirichlet mean.
    """

    name = "drnas"
    paper = "Chen et al., DrNAS: Dirichlet Neural Architecture Search (ICLR 2021); LHD code"
    summary = "Dirichlet(elu(α)+1) samples per edge row as mixing weights; optional KL anchor"
    defaults = dict(LHD_RECIPE)
    options = {"kl_weight": 0.0, "kl_prior": 1.0, "sigmoid_cat": False}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        self.generator = torch.Generator().manual_seed(cfg.seed + _SEED_OFFSET)

    def _sample(self, search) -> dict:
        arch = search.arch
        return drnas_weights(self.space, dict(arch.alphas), dict(arch.betas), generator=self.generator,
                             sigmoid_cat=bool(self.opts["sigmoid_cat"]))

    def arch_weights(self, search, step: int) -> dict:
        return self._sample(search)

    def weight_weights(self, search, step: int) -> dict:
        with torch.no_grad():
            return detached(self._sample(search))

    def eval_weights(self, search) -> dict:
        def mean(logits: torch.Tensor) -> torch.Tensor:
            concentration = F.elu(logits.detach()) + 1.0
            return concentration / concentration.sum(dim=-1, keepdim=True)

        arch = search.arch
        weights = {c: mean(a) for c, a in arch.alphas.items()}
        for c, b in arch.betas.items():
            weights[f"{c}_sum"] = mean(b[0])
            weights[f"{c}_cat"] = torch.sigmoid(b[1].detach()) if self.opts["sigmoid_cat"] else mean(b[1])
        return weights

    def arch_loss_extra(self, search) -> torch.Tensor | None:
        weight = float(self.opts["kl_weight"])
        if weight <= 0:
            return None
        terms = []
        for a in search.arch.alphas.values():
            concentration = F.elu(a) + 1.0
            prior = torch.full_like(concentration, float(self.opts["kl_prior"]))
            terms.append(kl_divergence(Dirichlet(concentration), Dirichlet(prior)))
        return weight * torch.cat(terms).mean()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@register
class Milenas(Method):
    """MiLeNAS as in LHD (``search/MiLeNAS``, spec L §3 row 2; He et al., CVPR 2020): mixed-level arch gradient
    ∇α L_val + λ·∇α L_train (λ = ``mixed_lambda``, 1), no weight gradient from the val pass; LHD recipe."""

    name = "milenas"
    paper = "He et al., MiLeNAS: Efficient NAS via Mixed-Level Reformulation (CVPR 2020); LHD code"
    summary = "mixed-level: arch gradient ∇α L_val + λ·∇α L_train"
    defaults = dict(LHD_RECIPE, arch_order="mixed")
    options = {"mixed_lambda": 1.0}


class ExponentiatedGradient:
    """GAEA's arch "optimizer": α ← α·exp(−η∇α), clamped at ``floor``, renormalized per group.

    Groups are the space's distributions (edge rows; LHD node blocks) for α, the rows for LHD's β. Implements what
    the search loop calls on an optimizer: ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``.
    """

    def __init__(self, params: list[tuple[torch.nn.Parameter, Any]], lr: float = 0.1, floor: float = 1e-5):
        self.params, self.lr, self.floor = params, lr, floor
        self.param_groups = [{"params": [p for p, _ in params], "lr": lr}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p, _ in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for p, space in self.params:
            if p.grad is None:
                continue
            update = lambda a, g: gaea_eg_update(a, g, lr, self.floor)  # noqa: E731
            p.copy_(per_group(space, update, p.detach(), p.grad))

    def state_dict(self) -> dict:
        return {"lr": self.param_groups[0]["lr"], "floor": self.floor}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
        self.floor = float(state["floor"])


@register
class Gaea(Method):
    """GAEA bilevel (Li et al., ICLR 2021; LHD ``search/GAEA/*_bilevel.py``, spec L §3 row 4): α lives on the simplex
    (uniform init) and takes exponentiated-gradient steps with η = ``arch_lr`` = 0.1 on the val batch.

    Fixed on purpose: LHD applies its node-joint softmax on top of the simplex-projected α, so the mixing weights
    stay nearly uniform (spec L §3 note, §8 item 7). Here α *is* the mixing weight, as in the original GAEA: one
    simplex per edge row (DARTS/NB201) or per node block of (input, op) pairs (LHD, matching its node-joint
    relaxation; LHD normalizes per edge row). LHD's β rows are simplexes too, fed directly as the sum weights and
    the concat gates. The genotype reads α itself.
    """

    name = "gaea"
    paper = "Li et al., Geometry-Aware Gradient Algorithms for NAS (ICLR 2021); LHD code"
    summary = "exponentiated-gradient α on the simplex (η 0.1), α fed directly as mixing weights"
    defaults = dict(LHD_RECIPE, arch_lr=0.1)

    def setup(self, search) -> None:
        with torch.no_grad():
            for a in search.arch.alphas.values():
                a.copy_(per_group(self.space, lambda z: torch.full_like(z, 1.0 / z.shape[-1]), a.detach()))
            for b in search.arch.betas.values():
                b.fill_(1.0 / b.shape[-1])

    def make_arch_optimizer(self, search) -> ExponentiatedGradient:
        params = [(a, self.space) for a in search.arch.alphas.values()]
        params += [(b, None) for b in search.arch.betas.values()]
        return ExponentiatedGradient(params, lr=self.cfg.arch_lr)

    def _weights(self, search) -> dict:
        arch = search.arch
        weights = {c: a for c, a in arch.alphas.items()}
        for c, b in arch.betas.items():
            weights[f"{c}_sum"], weights[f"{c}_cat"] = b[0], b[1]
        return weights

    def arch_weights(self, search, step: int) -> dict:
        return self._weights(search)

    def weight_weights(self, search, step: int) -> dict:
        return detached(self._weights(search))

    def derive_weights(self, search) -> dict:
        return detached(self._weights(search))


@register
class GaeaErm(Gaea):
    """GAEA ERM, single level (LHD ``search/GAEA/*_erm.py``, results ``gaea_silevel``; spec L §3 row 5): one
    forward/backward on the training batch per step fills both the weight and the α gradients; SGD steps the
    weights and EG (η 0.1) steps α. LHD trains on the whole training set (twice the steps per epoch); we keep the
    train/val split so that the supernet validation and leakage metrics have held-out data."""

    name = "gaea-erm"
    summary = "single-level GAEA: one train-batch backward updates weights (SGD) and α (EG)"
    defaults = dict(Gaea.defaults, arch_order="none")

    def weight_backward(self, search, x, y, weights) -> tuple[torch.Tensor, torch.Tensor]:
        search.a_opt.zero_grad(set_to_none=True)
        logits = search.forward(x, self.arch_weights(search, search.step))
        loss = F.cross_entropy(logits, y)
        loss.backward()
        search.a_opt.step()  # α's gradient came from this very pass; the loop then steps the weights
        return loss.detach(), logits.detach()


__all__ = ["LHD_RECIPE", "argmax_onehot", "Gdas", "DrNas", "Milenas", "ExponentiatedGradient", "Gaea", "GaeaErm"]
