"""Small-temperature methods of Zhang & Ding: SP-DARTS mixed sparsity and the small-temperature softmax.

Two τ sources share one relaxation part (``Tempered``):

- **SP-DARTS** (arXiv 2306.06858, "Robustifying DARTS by Eliminating Information Bypass Leakage via Explicit Sparse
  Regularization"; code chaoji90/SP-DARTS and LHD ``search/SP-DARTS``; spec L §4, §5.2): after a dense warmup at
  τ = 10, every step uses the sparse τ_s with probability C_e and the dense τ_d = 10·τ_s otherwise, the same τ for
  that step's arch and weight updates. The epoch's Bernoulli vector is drawn at ``begin_epoch`` from the method's
  own seeded generator, whose state is part of ``state_dict`` so a resumed run draws exactly the same τ's.
  Presets: ``sp-darts`` (DARTS-space code), ``sp-darts-lhd`` (LHD), ``sp-darts-s1s4``, ``sp-darts-nb201`` ("-10"),
  ``sp-darts-nb201-100``; ``method.variant`` picks any ``schedules.SPARSITY_PRESETS`` schedule under any preset.
- **Small temperature** (arXiv 2306.06855, "Small Temperature is All You Need"; closest code chaoji90/PCDEDD, spec
  L §5.3): a per-epoch τ from the exponential, cyclic log-decay or entropy-adaptive schedule, with the PCDEDD
  surrogate gradient (on every cell type; the reference only on α_normal, spec L §8 item 22) and optional logit
  noise. Presets: ``small-temp-exp``, ``small-temp-cyclic``, ``small-temp-entropy`` (``method.schedule`` switches).

The math lives in ``relax.py`` (``sparse_mixing_weights``) and ``schedules.py`` (``MixedSparsity``, the τ
schedules); this module only composes it. Every option of the relaxation part (``surrogate``, ``surrogate_cells``,
``noise_std``, ``derive_tau``) is available under every preset here.

Derivation (spec L §4.2 step 4, §8 item 14): the genotype is read from softmax(α/τ_s). At τ ≈ 1e-3 most entries
underflow to exact zeros and most per-edge maxima round to exactly 1.0, so the reference's ranking (values rounded
to 4 decimals, ties to the higher-index input) is decided by tie-breaking. ``exact_order_softmax`` instead ranks by
the logit of each probability, z_o − logsumexp_{j≠o} z_j with z = α/τ, which is finite and exact at any τ, and
nudges the float values by less than 1e-9 so that any policy's comparisons follow that exact order. Remaining ties
(exactly equal logits) go to the lower index, as every policy here does.

The NB201 presets take the weight step before the arch step and use Nesterov momentum, as their AutoDL code does
(``step_order: weight-first``, ``nesterov: true`` in the preset table). Deviations, on purpose: the NB201 warmup τ
is the code's undefined 10·τ, read as 10 (spec L §8 item 21); when ``epochs`` differs from the preset's 50, the C_e ramp (and the "-100" freeze
epoch) is stretched to the run's length, so C_e still reaches its final value at the last epoch, while the warmup
length stays the paper's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import AT_LEAST_0, POSITIVE, Range
from ..devices import make_generator
from ..errors import RobustDartsError, unknown
from ..relax import mixing_weights, per_group, sparse_mixing_weights
from ..schedules import CyclicLogTau, EntropyAdaptiveTau, ExponentialTau, MixedSparsity, sparsity_preset
from ..spaces import Space
from .recipe import EpochAction, Recipe

# Largest change exact_order_softmax makes to a softmax value; far below any difference that matters, far above
# float64 rounding (2e-16), so it orders ties without ever reordering values that differ.
TIE_NUDGE = 1e-9

# Offset of the method's generators from the run seed, so they never replay a data stream's draws.
_SEED_OFFSET = 1_000_003


# ---------------------------------------------------------------------------------------------------------------
# Derivation at small τ without underflow ties

def _probability_logits(z: torch.Tensor) -> torch.Tensor:
    """logit(softmax(z)) per row: z_o − logsumexp_{j≠o} z_j, exact where softmax(z) underflows to 0 or 1."""
    n = z.shape[-1]
    others = torch.eye(n, dtype=torch.bool, device=z.device)
    masked = torch.where(others, torch.tensor(-math.inf, dtype=z.dtype, device=z.device), z.unsqueeze(-2))
    return z - torch.logsumexp(masked, dim=-1)


def exact_order_softmax(logits: torch.Tensor, tau: float, space: Space | None = None) -> torch.Tensor:
    """softmax(logits/τ) per group (float64), nudged by < ``TIE_NUDGE`` so that its order is the exact order.

    The groups are those of ``relax.per_group`` (edge rows; LHD node blocks). Entries are ranked over the whole
    tensor by the logit of their probability — comparable across groups, since logit is monotone in the
    probability — and entry of dense rank r gets + TIE_NUDGE·(r+1)/(ranks). Underflow ties (two exact zeros, two
    maxima of exactly 1.0) are thereby broken by what softmax(logits/τ) would be in exact arithmetic.
    """
    z = logits.detach().to(torch.float64) / tau
    probs = per_group(space, lambda rows: torch.softmax(rows, dim=-1), z)
    keys = per_group(space, _probability_logits, z)
    _, rank = torch.unique(keys, return_inverse=True)  # dense rank, ascending
    return probs + TIE_NUDGE * (rank + 1).to(torch.float64) / (int(rank.max()) + 1)


def exact_order_weights(space: Space, alphas, betas, tau: float) -> dict[str, torch.Tensor]:
    """Derivation weights at τ: ``exact_order_softmax`` of every α (and of LHD's β_sum); the LHD concat gates
    σ(β_cat) are never tempered."""
    weights = {c: exact_order_softmax(a, tau, space) for c, a in alphas.items()}
    for c, b in betas.items():
        weights[f"{c}_sum"] = exact_order_softmax(b[0], tau)
        weights[f"{c}_cat"] = torch.sigmoid(b[1].detach().to(torch.float64))
    return weights


# ---------------------------------------------------------------------------------------------------------------
# The relaxation part shared by both families

@dataclass(frozen=True)
class TemperedOptions:
    """``surrogate``: PCDEDD surrogate gradient in the arch step; ``surrogate_cells``: "all" or "normal" (the
    reference's choice); ``noise_std``: N(0, σ²) on α/τ in the arch and weight steps, drawn from the method's own
    generator; ``derive_tau``: τ of the derivation (None = the family's)."""

    RANGES: ClassVar[dict[str, Range]] = {"noise_std": AT_LEAST_0, "derive_tau": POSITIVE}

    surrogate: bool = False
    surrogate_cells: str = "all"
    noise_std: float = 0.0
    derive_tau: float | None = None


class Tempered(Recipe):
    """softmax(α/τ) with the small-temperature options of ``relax.sparse_mixing_weights``; τ from ``tau``.
    The eval weights are softmax at ``valid_tau``; the derivation is exact-order softmax at ``derive_tau``."""

    Options = TemperedOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts.surrogate_cells not in ("all", "normal"):
            raise unknown("surrogate_cells", self.opts.surrogate_cells, ("all", "normal"))
        self.noise_generator = make_generator(cfg.seed + 2 * _SEED_OFFSET, cfg.device)  # noise made where α lives

    def relax(self, alphas, betas, ctx, purpose):
        if purpose == "derive":
            tau = self.opts.derive_tau if self.opts.derive_tau is not None else self.default_derive_tau()
            return exact_order_weights(self.space, alphas, betas, tau)
        if purpose == "eval":
            return mixing_weights(self.space, alphas, betas, self.valid_tau(ctx))
        # The weight step needs no surrogate: its weights carry no graph, so ops whose weight underflowed to
        # exactly 0 are skipped by the supernet.
        surrogate = self.opts.surrogate and purpose == "arch"
        cells = None if self.opts.surrogate_cells == "all" else ("normal",)
        return sparse_mixing_weights(self.space, alphas, betas, self.tau(ctx), surrogate=surrogate,
                                     surrogate_cells=cells, noise_std=self.opts.noise_std,
                                     generator=self.noise_generator)

    def default_derive_tau(self) -> float:
        raise NotImplementedError

    def valid_tau(self, ctx) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"noise_generator": self.noise_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.noise_generator.set_state(state["noise_generator"])


# ---------------------------------------------------------------------------------------------------------------
# SP-DARTS

def fit_to_epochs(schedule: MixedSparsity, epochs: int) -> MixedSparsity:
    """The schedule with its C_e ramp (and freeze epoch) stretched from the preset's length to ``epochs``.

    The warmup keeps its length; the post-warmup part scales by (epochs − W)/(E − W). Unchanged when ``epochs``
    is the preset's own.
    """
    if epochs == schedule.epochs:
        return schedule
    scale = max(1, epochs - schedule.warmup) / max(1, schedule.epochs - schedule.warmup)
    freeze = schedule.freeze_from
    if freeze is not None:
        freeze = schedule.warmup + max(1, round((freeze - schedule.warmup) * scale))
    return dataclasses.replace(schedule, epochs=epochs, c_span_epochs=max(1, round(schedule.c_span_epochs * scale)),
                               freeze_from=freeze)


@dataclass(frozen=True)
class SpDartsOptions(TemperedOptions):
    variant: str = "darts"  # a schedules.SPARSITY_PRESETS schedule


class SpDarts(Tempered):
    """SP-DARTS mixed sparsity (spec L §4): after a dense warmup at τ = 10, every step uses the sparse τ_s with
    probability C_e and the dense τ_d otherwise, the same τ for that step's arch and weight updates; validation at
    the schedule's valid τ, derivation at τ_s with exact ranking. The constants are the ``variant``'s
    (``schedules.SPARSITY_PRESETS``: darts, lhd, s1-s4, nb201-10, nb201-100); the preset table picks the variant and
    the search recipe of each space from the code that ran there."""

    Options = SpDartsOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        self.schedule = fit_to_epochs(sparsity_preset(self.opts.variant), cfg.epochs)
        self.generator = torch.Generator().manual_seed(cfg.seed + _SEED_OFFSET)
        self.draws = torch.zeros(0, dtype=torch.bool)  # this epoch's Bernoulli(C_e) per step (True = sparse)
        self.drawn_epoch = -1

    def begin_epoch(self, ctx, alphas) -> None:
        self._draws_for(ctx)

    def _draws_for(self, ctx) -> torch.Tensor:
        """The current epoch's draws, drawn once per epoch (so calling this again changes nothing)."""
        if self.drawn_epoch != ctx.epoch:
            self.draws = self.schedule.draw_epoch(ctx.epoch, ctx.steps_per_epoch, self.generator)
            self.drawn_epoch = ctx.epoch
        return self.draws

    def tau(self, ctx) -> float:
        draws = self._draws_for(ctx)
        sparse, dense, _ = self.schedule.at(ctx.epoch)
        return sparse if bool(draws[ctx.step % len(draws)]) else dense

    def prob_sparse(self, epoch: int) -> float:
        return self.schedule.prob_sparse(epoch)

    def default_derive_tau(self) -> float:
        return self.schedule.derive_tau

    def valid_tau(self, ctx) -> float:
        return self.schedule.warmup_tau if ctx.epoch < self.schedule.warmup else self.schedule.valid_tau

    def end_epoch(self, ctx, end) -> EpochAction:
        end.record["prob_sparse"] = self.schedule.prob_sparse(ctx.epoch)
        if self.drawn_epoch == ctx.epoch and len(self.draws):
            end.record["sparse_steps"] = float(self.draws.double().mean())
        return EpochAction()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "draws": self.draws.clone(),
                "drawn_epoch": self.drawn_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.draws = state["draws"].clone().to(torch.bool)
        self.drawn_epoch = int(state["drawn_epoch"])


# ---------------------------------------------------------------------------------------------------------------
# Small-temperature softmax

SCHEDULES = ("exp", "cyclic", "entropy")


@dataclass(frozen=True)
class SmallTempOptions(TemperedOptions):
    RANGES: ClassVar[dict[str, Range]] = {**TemperedOptions.RANGES, "tau_start": POSITIVE, "tau_end": POSITIVE,
                                          "decay_strength": POSITIVE, "gain": POSITIVE, "late_gain": POSITIVE,
                                          "warmup": AT_LEAST_0}

    surrogate: bool = True
    derive_tau: float | None = 1e-3
    schedule: str = "exp"  # exp | cyclic | entropy
    tau_start: float = 1.0
    tau_end: float = 1e-3
    decay_strength: float = 0.11
    gain: float = 0.06
    late_gain: float = 0.12
    warmup: int = 5


class SmallTemp(Tempered):
    """Small-temperature softmax (arXiv 2306.06855) with a per-epoch τ: ``schedule`` "exp" τ_e = τ_0·γ^e, γ chosen
    so τ goes from ``tau_start`` (1) to ``tau_end`` (1e-3) at the last epoch (the paper's constants are NOT FOUND,
    spec L §5.3; these are ours); "cyclic", PCDEDD's cyclic log-decay (``train_search_cyc.py``: period 10 through
    [1, τ1..τ5..τ1], the last 10 epochs τ1..τ10, τ_i = 3.99e-4/ln(1 + 0.11·i), ``decay_strength``); "entropy",
    PCDEDD's entropy-adaptive τ (``train_search_pl.py``: τ = 1 for 5 epochs, then 3.99e-4/ln(1 + d·k) with d a
    running mean of 0.06·H(softmax(α_normal/τ)), 0.12 in the last 10 epochs, updated every 5 epochs and every
    epoch in the last 10; H per edge row, also in LHD). Surrogate gradient on every cell type (PCDEDD: α_normal
    only, spec L §8 item 22 — set ``surrogate_cells: normal`` to replicate). Validation at the epoch's τ; the
    derivation at ``derive_tau`` (default 1e-3) with exact ranking."""

    Options = SmallTempOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        o, epochs = self.opts, cfg.epochs
        if o.schedule not in SCHEDULES:
            raise unknown("small-temperature schedule", o.schedule, SCHEDULES)
        if o.schedule == "exp":
            if not (o.tau_start > 0 and o.tau_end > 0):
                raise RobustDartsError(f"tau_start and tau_end must be positive, not {o.tau_start!r} and "
                                       f"{o.tau_end!r}.")
            self.exp = ExponentialTau(o.tau_start, (o.tau_end / o.tau_start) ** (1.0 / max(epochs - 1, 1)))
        elif o.schedule == "cyclic":
            # The last `period` epochs run the decay τ1..τ10 (epochs 40-49 of the reference's 50).
            self.cyclic = CyclicLogTau(strength=o.decay_strength, final_from=max(0, epochs - 10))
        else:
            self.entropy = EntropyAdaptiveTau(warmup=o.warmup, late_from=max(o.warmup, epochs - 10), gain=o.gain,
                                              late_gain=o.late_gain)
        self.epoch_tau, self.tau_epoch = 1.0, -1

    def _tau_of_epoch(self, epoch: int, alphas=None) -> float:
        if self.tau_epoch != epoch:
            if self.opts.schedule == "exp":
                self.epoch_tau = self.exp(epoch)
            elif self.opts.schedule == "cyclic":
                self.epoch_tau = self.cyclic(epoch)
            else:
                if alphas is None:
                    raise RuntimeError("the entropy-adaptive τ is set at begin_epoch, from α")
                self.epoch_tau = self.entropy.step(epoch, alphas["normal"])
            self.tau_epoch = epoch
        return self.epoch_tau

    def begin_epoch(self, ctx, alphas) -> None:
        self._tau_of_epoch(ctx.epoch, alphas)

    def tau(self, ctx) -> float:
        return self._tau_of_epoch(ctx.epoch)

    def default_derive_tau(self) -> float:
        return 1e-3

    def valid_tau(self, ctx) -> float:
        # The entropy-adaptive τ of an epoch is known once its begin_epoch has read α.
        return self.epoch_tau if self.opts.schedule == "entropy" else self._tau_of_epoch(ctx.epoch)

    def end_epoch(self, ctx, end) -> EpochAction:
        end.record["tau"] = self._tau_of_epoch(ctx.epoch)
        return EpochAction()

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "epoch_tau": self.epoch_tau, "tau_epoch": self.tau_epoch}
        if self.opts.schedule == "entropy":
            state["entropy"] = self.entropy.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epoch_tau, self.tau_epoch = float(state["epoch_tau"]), int(state["tau_epoch"])
        if self.opts.schedule == "entropy":
            self.entropy.load_state_dict(state["entropy"])


__all__ = ["TIE_NUDGE", "exact_order_softmax", "exact_order_weights", "TemperedOptions", "Tempered", "fit_to_epochs",
           "SpDartsOptions", "SpDarts", "SmallTempOptions", "SmallTemp", "SCHEDULES"]
