"""Small-temperature methods of Zhang & Ding: SP-DARTS mixed sparsity and the small-temperature softmax.

Two τ sources share one relaxation part (``TemperedMethod``):

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

Deviations, on purpose: the NB201 reference takes the weight step before the arch step (our loop always takes the
arch step first) and uses Nesterov momentum (our SGD has none); the NB201 warmup τ is the code's undefined 10·τ,
read as 10 (spec L §8 item 21); when ``epochs`` differs from the preset's 50, the C_e ramp (and the "-100" freeze
epoch) is stretched to the run's length, so C_e still reaches its final value at the last epoch, while the warmup
length stays the paper's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from ..errors import RobustDartsError, unknown
from ..relax import detached, mixing_weights, per_group, sparse_mixing_weights
from ..schedules import CyclicLogTau, EntropyAdaptiveTau, ExponentialTau, MixedSparsity, sparsity_preset
from ..spaces import Space
from . import register
from .base import Method

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


def exact_order_weights(arch, tau: float) -> dict[str, torch.Tensor]:
    """Derivation weights of an ``ArchParams`` at τ: ``exact_order_softmax`` of every α (and of LHD's β_sum);
    the LHD concat gates σ(β_cat) are never tempered."""
    space = arch.space
    weights = {c: exact_order_softmax(a, tau, space) for c, a in arch.alphas.items()}
    for c, b in arch.betas.items():
        weights[f"{c}_sum"] = exact_order_softmax(b[0], tau)
        weights[f"{c}_cat"] = torch.sigmoid(b[1].detach().to(torch.float64))
    return weights


# ---------------------------------------------------------------------------------------------------------------
# The relaxation part shared by both families

class TemperedMethod(Method):
    """softmax(α/τ) with the small-temperature options of ``relax.sparse_mixing_weights``; τ from ``tau``.

    Options: ``surrogate`` (PCDEDD surrogate gradient in the arch step), ``surrogate_cells`` ("all" or "normal",
    the reference's choice), ``noise_std`` (N(0, σ²) on α/τ in the arch and weight steps, drawn from the method's
    own generator), ``derive_tau`` (τ of the derivation; None = the subclass's).
    """

    relax_options: ClassVar[dict[str, Any]] = {"surrogate": False, "surrogate_cells": "all", "noise_std": 0.0,
                                               "derive_tau": None}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        cells = self.opts["surrogate_cells"]
        if cells not in ("all", "normal"):
            raise unknown("surrogate_cells", cells, ("all", "normal"))
        self.noise_generator = torch.Generator().manual_seed(cfg.seed + 2 * _SEED_OFFSET)

    def _relaxed(self, search, tau: float, surrogate: bool) -> dict:
        cells = None if self.opts["surrogate_cells"] == "all" else ("normal",)
        arch = search.arch
        return sparse_mixing_weights(self.space, dict(arch.alphas), dict(arch.betas), tau, surrogate=surrogate,
                                     surrogate_cells=cells, noise_std=float(self.opts["noise_std"]),
                                     generator=self.noise_generator)

    def arch_weights(self, search, step: int) -> dict:
        return self._relaxed(search, self.tau(search, step), bool(self.opts["surrogate"]))

    def weight_weights(self, search, step: int) -> dict:
        # No graph: ops whose weight underflowed to exactly 0 are skipped by the supernet.
        with torch.no_grad():
            return detached(self._relaxed(search, self.tau(search, step), surrogate=False))

    def default_derive_tau(self) -> float:
        raise NotImplementedError

    def derive_weights(self, search) -> dict:
        tau = self.opts["derive_tau"]
        return exact_order_weights(search.arch, float(tau) if tau is not None else self.default_derive_tau())

    def valid_tau(self, search) -> float:
        raise NotImplementedError

    def eval_weights(self, search) -> dict:
        with torch.no_grad():
            return detached(mixing_weights(self.space, dict(search.arch.alphas), dict(search.arch.betas),
                                           self.valid_tau(search)))

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


@register
class SpDarts(TemperedMethod):
    """SP-DARTS, DARTS-space code (``SP-DARTS/train_search_mf.py``, spec L §4.2): warmup 1 epoch at τ = 10, then
    τ_s = 1e-3 with probability C_e = e/49, else τ_d = 1e-2; batch 80, constant weight lr 0.05, arch Adam 3e-4
    (β1 0.5), arch wd 0, 50 epochs; validation at τ_s/10; the reference searched the 7-op space without ``none``
    (``darts-7``), but the preset is space-agnostic."""

    name = "sp-darts"
    paper = "Zhang & Ding, Robustifying DARTS by Eliminating Information Bypass Leakage (arXiv 2306.06858)"
    summary = "mixed sparsity: per step τ_s with probability C_e else 10·τ_s, same τ for the arch and weight step"
    defaults = dict(epochs=50, batch_size=80, lr=0.05, lr_min=0.05, lr_schedule="constant", arch_lr=3e-4,
                    arch_beta1=0.5, arch_beta2=0.999, arch_weight_decay=0.0)
    options = {"variant": "darts", **TemperedMethod.relax_options}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        self.schedule = fit_to_epochs(sparsity_preset(self.opts["variant"]), cfg.epochs)
        self.generator = torch.Generator().manual_seed(cfg.seed + _SEED_OFFSET)
        self.draws = torch.zeros(0, dtype=torch.bool)  # this epoch's Bernoulli(C_e) per step (True = sparse)
        self.drawn_epoch = -1

    def begin_epoch(self, search) -> None:
        self._draws_for(search)

    def _draws_for(self, search) -> torch.Tensor:
        """The current epoch's draws, drawn once per epoch (so calling this again changes nothing)."""
        if self.drawn_epoch != search.epoch:
            steps = search.train_stream.steps_per_epoch
            self.draws = self.schedule.draw_epoch(search.epoch, steps, self.generator)
            self.drawn_epoch = search.epoch
        return self.draws

    def tau(self, search, step: int) -> float:
        draws = self._draws_for(search)
        sparse, dense, _ = self.schedule.at(search.epoch)
        return sparse if bool(draws[step % len(draws)]) else dense

    def prob_sparse(self, epoch: int) -> float:
        return self.schedule.prob_sparse(epoch)

    def default_derive_tau(self) -> float:
        return self.schedule.derive_tau

    def valid_tau(self, search) -> float:
        epoch = getattr(search, "epoch", self.cfg.epochs - 1)
        return self.schedule.warmup_tau if epoch < self.schedule.warmup else self.schedule.valid_tau

    def end_epoch(self, search, record: dict) -> dict | None:
        record["prob_sparse"] = self.schedule.prob_sparse(search.epoch)
        if self.drawn_epoch == search.epoch and len(self.draws):
            record["sparse_steps"] = float(self.draws.double().mean())
        return None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "draws": self.draws.clone(),
                "drawn_epoch": self.drawn_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.draws = state["draws"].clone().to(torch.bool)
        self.drawn_epoch = int(state["drawn_epoch"])


@register
class SpDartsLhd(SpDarts):
    """SP-DARTS inside LHD (``LHD:search/SP-DARTS``, spec L §4.1): warmup 5 epochs at τ = 10, then τ_s = 1.5e-3
    with C_e = (e − 4)/45, τ_d = 1.5e-2; batch 176, constant weight lr 0.025, arch Adam 3e-4 (β1 0.5), wd 0;
    τ acts on the node-joint α and on β_sum, never on the σ gates; validation at τ_s/10."""

    name = "sp-darts-lhd"
    summary = "SP-DARTS with LHD's constants: warmup 5 at τ=10, τ_s=1.5e-3, C_e=(e−4)/45, batch 176"
    defaults = dict(SpDarts.defaults, batch_size=176, lr=0.025, lr_min=0.025)
    options = {**SpDarts.options, "variant": "lhd"}


@register
class SpDartsS1S4(SpDarts):
    """SP-DARTS on RobustDARTS S1-S4 (``SmoothDARTS/sota/cnnmul/train_search.py``, spec L §4.3): no warmup, τ_s =
    3e-4, C starts at 0.8 and rises by 0.3/50 per epoch (every step sparse near the end); batch 128, constant
    weight lr 0.025, arch Adam 3e-4. The arch weight decay is not in the spec; we keep the SDARTS code's 1e-3."""

    name = "sp-darts-s1s4"
    summary = "SP-DARTS on S1-S4: no warmup, τ_s=3e-4, C from 0.8 (+0.3/50 per epoch), batch 128"
    defaults = dict(SpDarts.defaults, batch_size=128, lr=0.025, lr_min=0.025, arch_weight_decay=1e-3)
    options = {**SpDarts.options, "variant": "s1-s4"}


@register
class SpDartsNb201(SpDarts):
    """SP-DARTS on NAS-Bench-201, "-10" script (``AutoDL-Projects_sp DARTS-V1-10.py``, spec L §4.3): warmup 1 at
    τ = 10, τ_s = 1.1e-3, τ_d = 11·τ_s, C += 1/49 per epoch; SGD 0.05 constant, wd 5e-4, batch 256, arch Adam 3e-4
    wd 0; validation at 1e-4."""

    name = "sp-darts-nb201"
    summary = "SP-DARTS NB201 '-10': τ_s=1.1e-3, τ_d=11·τ_s, C += 1/49, SGD 0.05 constant, batch 256"
    defaults = dict(SpDarts.defaults, batch_size=256, lr=0.05, lr_min=0.05, weight_decay=5e-4)
    options = {**SpDarts.options, "variant": "nb201-10"}


@register
class SpDartsNb201Late(SpDartsNb201):
    """SP-DARTS on NAS-Bench-201, "-100" script (``DARTS-V1-100.py``): τ_s = 1.3e-3 with C += 0.9/49 until epoch
    45, then τ_s = 6e-4 with C frozen; otherwise as ``sp-darts-nb201``."""

    name = "sp-darts-nb201-100"
    summary = "SP-DARTS NB201 '-100': τ_s=1.3e-3, C += 0.9/49 until epoch 45, then τ_s=6e-4 with C frozen"
    options = {**SpDarts.options, "variant": "nb201-100"}


# ---------------------------------------------------------------------------------------------------------------
# Small-temperature softmax

SCHEDULES = ("exp", "cyclic", "entropy")


@register
class SmallTempExp(TemperedMethod):
    """Small-temperature softmax (arXiv 2306.06855) with the exponential schedule τ_e = τ_0·γ^e, γ chosen so τ goes
    from ``tau_start`` (1) to ``tau_end`` (1e-3) at the last epoch (the paper's constants are NOT FOUND, spec L
    §5.3; these are ours). Surrogate gradient on every cell type (PCDEDD: α_normal only, spec L §8 item 22 — set
    ``surrogate_cells: normal`` to replicate). The recipe is PCDEDD's cyclic script (batch 80, constant weight lr
    0.025, arch Adam 3e-4, 50 epochs); the cyclic and entropy schedules follow ``schedules.py``. The derivation is
    at ``derive_tau`` (default 1e-3) with exact ranking."""

    name = "small-temp-exp"
    paper = "Zhang & Ding, Small Temperature is All You Need for Differentiable Architecture Search (arXiv 2306.06855)"
    summary = "small-τ softmax with the surrogate gradient on every cell, exponential τ schedule 1 → 1e-3"
    defaults = dict(epochs=50, batch_size=80, lr=0.025, lr_min=0.025, lr_schedule="constant", arch_lr=3e-4,
                    arch_beta1=0.5, arch_beta2=0.999)
    options = {**TemperedMethod.relax_options, "surrogate": True, "derive_tau": 1e-3, "schedule": "exp",
               "tau_start": 1.0, "tau_end": 1e-3, "decay_strength": 0.11, "gain": 0.06, "late_gain": 0.12,
               "warmup": 5}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        self.schedule_kind = self.opts["schedule"]
        if self.schedule_kind not in SCHEDULES:
            raise unknown("small-temperature schedule", self.schedule_kind, SCHEDULES)
        epochs, o = cfg.epochs, self.opts
        if self.schedule_kind == "exp":
            if not (o["tau_start"] > 0 and o["tau_end"] > 0):
                raise RobustDartsError(f"tau_start and tau_end must be positive, not {o['tau_start']!r} and "
                                       f"{o['tau_end']!r}.")
            gamma = (o["tau_end"] / o["tau_start"]) ** (1.0 / max(epochs - 1, 1))
            self.exp = ExponentialTau(float(o["tau_start"]), gamma)
        elif self.schedule_kind == "cyclic":
            # The last `period` epochs run the decay τ1..τ10 (epochs 40-49 of the reference's 50).
            self.cyclic = CyclicLogTau(strength=float(o["decay_strength"]), final_from=max(0, epochs - 10))
        else:
            self.entropy = EntropyAdaptiveTau(warmup=int(o["warmup"]), late_from=max(int(o["warmup"]), epochs - 10),
                                              gain=float(o["gain"]), late_gain=float(o["late_gain"]))
        self.epoch_tau, self.tau_epoch = 1.0, -1

    def _tau_of_epoch(self, search) -> float:
        if self.tau_epoch != search.epoch:
            epoch = search.epoch
            if self.schedule_kind == "exp":
                self.epoch_tau = self.exp(epoch)
            elif self.schedule_kind == "cyclic":
                self.epoch_tau = self.cyclic(epoch)
            else:
                self.epoch_tau = self.entropy.step(epoch, search.arch.alphas["normal"])
            self.tau_epoch = epoch
        return self.epoch_tau

    def begin_epoch(self, search) -> None:
        self._tau_of_epoch(search)

    def tau(self, search, step: int) -> float:
        return self._tau_of_epoch(search)

    def default_derive_tau(self) -> float:
        return 1e-3

    def valid_tau(self, search) -> float:
        return self._tau_of_epoch(search)

    def end_epoch(self, search, record: dict) -> dict | None:
        record["tau"] = self._tau_of_epoch(search)
        return None

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "epoch_tau": self.epoch_tau, "tau_epoch": self.tau_epoch}
        if self.schedule_kind == "entropy":
            state["entropy"] = self.entropy.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epoch_tau, self.tau_epoch = float(state["epoch_tau"]), int(state["tau_epoch"])
        if self.schedule_kind == "entropy":
            self.entropy.load_state_dict(state["entropy"])


@register
class SmallTempCyclic(SmallTempExp):
    """Small-temperature softmax with PCDEDD's cyclic log-decay τ (``train_search_cyc.py``, spec L §5.3): period 10
    through [1, τ1..τ5..τ1], the last 10 epochs τ1..τ10, τ_i = 3.99e-4/ln(1 + 0.11·i) (``decay_strength``)."""

    name = "small-temp-cyclic"
    summary = "small-τ softmax with the surrogate gradient, PCDEDD cyclic log-decay τ schedule"
    options = {**SmallTempExp.options, "schedule": "cyclic"}


@register
class SmallTempEntropy(SmallTempExp):
    """Small-temperature softmax with PCDEDD's entropy-adaptive τ (``train_search_pl.py``, spec L §5.3): τ = 1 for
    5 epochs, then τ = 3.99e-4/ln(1 + d·k) with d a running mean of 0.06·H(softmax(α_normal/τ)) (0.12 in the last
    10 epochs), updated every 5 epochs and every epoch in the last 10. H is per edge row, also in LHD."""

    name = "small-temp-entropy"
    summary = "small-τ softmax with the surrogate gradient, PCDEDD entropy-adaptive τ schedule"
    options = {**SmallTempExp.options, "schedule": "entropy"}


__all__ = ["TIE_NUDGE", "exact_order_softmax", "exact_order_weights", "TemperedMethod", "fit_to_epochs", "SpDarts",
           "SpDartsLhd", "SpDartsS1S4", "SpDartsNb201", "SpDartsNb201Late", "SmallTempExp", "SmallTempCyclic",
           "SmallTempEntropy", "SCHEDULES"]
