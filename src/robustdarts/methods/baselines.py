"""The LHD benchmark's baselines (Zhang & Ding, ICML 2023; code chaoji90/LHD ``search/*``; spec L §3 rows 2-6).

Each family here is a relaxation (and, for GAEA, an arch update) from ``relax.py``; the recipes around them (LHD's
shared search recipe on the LHD space, DARTS' or AutoDL's elsewhere) are in the preset table. Reference bugs fixed
on purpose are named in each class.

PC-DARTS (row 7) is a relaxation (edge normalization) here plus a supernet option (``partial_channels``, which
any method may use); SurgeNAS (row 12) is DARTS-'s auxiliary skip weighted by α, single level. Random (row 8) and
DARTS (row 1) are in ``darts.py``; SP-DARTS (row 9) in ``sparse.py``; DARTS- and β-DARTS in ``regularized.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..config import AT_LEAST_0, POSITIVE, Range
from ..devices import make_generator
from ..errors import unknown
from ..relax import drnas_weights, gdas_weights, per_group
from ..schedules import GdasTau
from .darts import Darts
from .recipe import Recipe
from .regularized import DartsMinus

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
        self.generator = make_generator(cfg.seed + _SEED_OFFSET, cfg.device)  # samples made where α lives

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass(frozen=True)
class GdasOptions:
    RANGES: ClassVar[dict[str, Range]] = {"tau_start": POSITIVE, "tau_end": POSITIVE}

    tau_start: float = 10.0
    tau_end: float = 0.1
    straight_through: str = "sampled"  # sampled | all


class Gdas(_Sampling):
    """GDAS (Dong & Yang, CVPR 2019; as in LHD ``search/GDAS``, spec L §3 row 6): a hard Gumbel-softmax sample per
    edge (node-joint, one (input, op) pair per node, in LHD; the LHD sum output too), straight-through, τ linear
    from 10 to 0.1 over the run.

    Unsampled ops get weight exactly 0.0 with no gradient path, and are never computed (``computes_zero_ops``
    False): as in the reference, which runs the sampled op only, their BN statistics stay where they were and S4's
    unsampled ``noise`` ops draw nothing — whether or not the supernet's zero-weight skip is on (for the other
    methods a skipped op runs a forward without autograd that moves its statistics, as their references compute
    0·op(x)). Those statistics are read only by the eval-mode supernet validation (``val_loss``/``val_acc``),
    never by α or the genotype. Fixed on purpose:
    the reference adds the zero-valued weights of unsampled edges as scalars to the node sum, which injects a
    spurious arch gradient (spec L §8 item 8; ``relax.gumbel_hard``). The supernet is validated with the argmax
    one-hot of α (the mode of the sampler); the genotype reads softmax(α) at τ = 1, as LHD's dump.
    """

    Options = GdasOptions
    computes_zero_ops = False

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
    RANGES: ClassVar[dict[str, Range]] = {"kl_weight": AT_LEAST_0, "kl_prior": POSITIVE}

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


PC_DARTS_EPOCHS = 50  # the run the paper's warmup of 15 epochs belongs to


def node_softmax(space, logits: torch.Tensor) -> torch.Tensor:
    """Softmax of per-edge logits over each node's incoming edges (PC-DARTS' edge normalization β̃)."""
    return torch.cat([torch.softmax(logits[r.start:r.stop], dim=0) for r in map(space.node_edges, range(space.steps))])


@dataclass(frozen=True)
class PcDartsOptions:
    RANGES: ClassVar[dict[str, Range]] = {"arch_warmup": AT_LEAST_0}
    # Options counted in epochs of the paper's run: a sizes preset that shortens the run scales them with it
    # (methods.search_config), unless the user set them.
    EPOCH_COUNTS: ClassVar[tuple[str, ...]] = ("arch_warmup",)

    edge_norm: bool = True  # per-edge β, softmaxed over each node's inputs, scaling the whole edge
    arch_warmup: int = 15  # epochs of weight training before the first arch step


class PcDarts(Darts):
    """PC-DARTS (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search", ICLR
    2020; yuhuixu1993/PC-DARTS ``train_search.py``, ``model_search.py``; LHD ``search/PC-DARTS``, spec L §3 row 7).

    Partial channels are the supernet option ``partial_channels`` (K = 4 in the preset: ops on C/4 channels, the
    rest bypassed, channel shuffle; see ``supernet.MixedEdge``). This family adds the edge normalization: a logit
    β per edge (``edge_betas``), softmaxed over each node's incoming edges, scales the edge's whole output, bypass
    included, and multiplies softmax(α) in the derivation (``genotype()`` of the reference); and the warmup — no arch
    step (and no validation batch drawn) before epoch ``arch_warmup``. LHD's copy has no edge normalization (its
    node-joint softmax stands in for it) and leaves the bypass unweighted (spec L §8 item 9): the LHD recipe sets
    ``edge_norm: false`` to replicate it.

    The warmup: the paper and both codes train the weights alone for the first 15 of 50 epochs (``train_search.py``:
    ``if epoch >= 15: architect.step(...)``, a constant; LHD's copy the same, spec L §3 row 7). A sizes preset that
    shortens the run (``--preset tiny``: 6 epochs) scales it with the run, round(15·E/50) (2 at tiny), where the
    user did not set ``arch_warmup``, so that α is trained at every size as in the paper's proportion; a run no
    longer than its warmup never trains α, and says so once, as a warning, when the recipe is made.
    """

    Options = PcDartsOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        warmup, epochs = self.opts.arch_warmup, cfg.epochs
        if warmup >= epochs:
            scaled = min(epochs - 1, round(warmup * epochs / PC_DARTS_EPOCHS))
            warnings.warn(f"{cfg.method} never trains α in this run: its arch_warmup is {warmup} epochs and the run "
                          f"has {epochs}; set method.arch_warmup below {epochs} (e.g. --set method.arch_warmup="
                          f"{scaled}, the paper's 15 of {PC_DARTS_EPOCHS} epochs scaled to this run).", stacklevel=2)

    @property
    def edge_betas(self) -> bool:
        return self.opts.edge_norm

    def updates_arch(self, ctx) -> bool:
        return ctx.epoch >= self.opts.arch_warmup

    def relax(self, alphas, betas, ctx, purpose):
        edges = {k[:-len("_edge")]: v for k, v in betas.items() if k.endswith("_edge")}
        outputs = {k: v for k, v in betas.items() if not k.endswith("_edge")}
        weights = super().relax(alphas, outputs, ctx, purpose)
        for c, logits in edges.items():
            norm = node_softmax(self.space, logits)
            if purpose == "derive":
                weights[c] = weights[c] * norm.unsqueeze(-1)
            else:
                weights[f"{c}_edge"] = norm
        return weights


class SurgeNas(DartsMinus):
    """SurgeNAS as in LHD (``search/SurgeNAS``, spec L §3 row 12): every candidate op becomes w_k·(op_k(x) +
    β_e·skip(x)), i.e. DARTS-'s auxiliary skip inside every op, weighted by α: the edge's skip is scaled by β_e
    times the edge's total op weight Σ_k w_k (with a graph to α in the arch pass), β_e linear 1 → 0.02. Single
    level (``arch_order: single``): one training-batch backward fills the weight and α gradients and both
    optimizers step on it, α's gradient unclipped; weights on the whole training set (``weights_on_all_data``)."""

    def relax(self, alphas, betas, ctx, purpose):
        weights = super().relax(alphas, betas, ctx, purpose)
        if purpose in ("arch", "weight"):
            for c in self.space.cell_types:
                weights[f"{c}_extra"] = weights[c].sum(-1)
        return weights


__all__ = ["argmax_onehot", "GdasOptions", "Gdas", "DrNasOptions", "DrNas", "Gaea", "node_softmax",
           "PcDartsOptions", "PcDarts", "SurgeNas"]
