"""Per-epoch schedules: learning rate, linear ramps, temperatures, SP-DARTS mixed sparsity.

Each schedule is a small frozen dataclass called with the epoch (``schedule(epoch) -> value``) and holding its
paper's defaults, computed in closed form so that a resumed run gets the same value as an uninterrupted one.
The one stateful schedule (``EntropyAdaptiveTau``) reads α and has ``state_dict``/``load_state_dict`` of plain
data. Epochs count from 0.

Spec references: "D" = specs/darts-rdarts-lambda-pt-sdarts.md, "L" = specs/lhd-and-sparsity.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import unknown

# ---------------------------------------------------------------------------------------------------------------
# Learning rates and linear ramps


def cosine_lr(epoch: int, lr_max: float = 0.025, eta_min: float = 0.001, epochs: int = 50) -> float:
    """lr_e = eta_min + (lr_max − eta_min)(1 + cos(π e / T))/2, the closed form of CosineAnnealingLR (D §1.4).

    The reference repos step the scheduler at the start of the epoch or read ``get_lr()`` outside ``step()``,
    which shifts or perturbs the value on PyTorch ≥ 1.1; the closed form is what their logs show.
    """
    return eta_min + (lr_max - eta_min) * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0


@dataclass(frozen=True)
class LinearRamp:
    """value(e) = max_value · e/(E − 1): 0 at the first epoch, max_value at the last.

    RobustDARTS drop-path probability and cutout probability (D §2.6), Λ-DARTS λ, DARTS-PT cutout.
    """

    max_value: float
    epochs: int = 50

    def __call__(self, epoch: int) -> float:
        if self.epochs <= 1:
            return self.max_value
        return self.max_value * epoch / (self.epochs - 1)


@dataclass(frozen=True)
class SdartsEpsilon:
    """SDARTS perturbation radius ε_e = eps_min + (eps_max − eps_min)·e/E (D §5).

    The reference divides by E, not E − 1, so eps_max is never quite reached; kept on purpose.
    """

    eps_min: float = 0.03
    eps_max: float = 0.3
    epochs: int = 50

    def __call__(self, epoch: int) -> float:
        return self.eps_min + (self.eps_max - self.eps_min) * epoch / self.epochs


# ---------------------------------------------------------------------------------------------------------------
# Temperatures


@dataclass(frozen=True)
class ExponentialTau:
    """τ_e = tau0 · gamma^e ("exponential temperature schedule" of arXiv 2306.06855).

    The paper's constants could not be read (L §5.3); the defaults are ours: τ from 1 down to 1e-3 at epoch 49.
    """

    tau0: float = 1.0
    gamma: float = 1e-3 ** (1.0 / 49)

    def __call__(self, epoch: int) -> float:
        return self.tau0 * self.gamma ** epoch


def log_decay_tau(i: int, scale: float = 3.99e-4, strength: float = 0.11) -> float:
    """τ_i = scale / ln(1 + strength·i), i ≥ 1: the PCDEDD log-decay levels (L §5.3)."""
    return scale / math.log(1.0 + strength * i)


@dataclass(frozen=True)
class CyclicLogTau:
    """PCDEDD's cyclic log-decay temperature (``PCDEDD-DARTS/train_search_cyc.py``, L §5.3).

    Epochs before ``final_from`` cycle with period 10 through [1, τ1, τ2, τ3, τ4, τ5, τ4, τ3, τ2, τ1]; epochs from
    ``final_from`` on use τ_{(e mod 10)+1}, i.e. τ1..τ10. ``strength`` is the README's --decay_strength
    (0.1, 0.11, 0.12, 0.13).
    """

    scale: float = 3.99e-4
    strength: float = 0.11
    period: int = 10
    final_from: int = 40

    def level(self, i: int) -> float:
        return log_decay_tau(i, self.scale, self.strength)

    def __call__(self, epoch: int) -> float:
        position = epoch % self.period
        if epoch >= self.final_from:
            return self.level(position + 1)
        if position == 0:
            return 1.0
        return self.level(min(position, self.period - position))


@dataclass(frozen=True)
class GdasTau:
    """GDAS temperature, linear from ``start`` at epoch 0 to ``end`` at the last epoch: τ_e = 10 − 9.9·e/49."""

    start: float = 10.0
    end: float = 0.1
    epochs: int = 50

    def __call__(self, epoch: int) -> float:
        if self.epochs <= 1:
            return self.end
        return self.start - (self.start - self.end) * epoch / (self.epochs - 1)


def mean_edge_entropy(alpha: torch.Tensor, tau: float = 1.0) -> float:
    """Mean over edge rows of the entropy (nats) of softmax(α/τ); exact zeros count 0·log 0 = 0."""
    probs = torch.softmax(alpha.detach().double() / tau, dim=-1)
    return float(torch.special.entr(probs).sum(dim=-1).mean())


class EntropyAdaptiveTau:
    """PCDEDD's entropy-adaptive temperature (``PCDEDD-DARTS/train_search_pl.py``, L §5.3).

    τ = 1 during the ``warmup`` epochs. At epoch ``warmup``, then every ``interval`` epochs, and every epoch from
    ``late_from`` on, before that epoch trains:
        H = mean edge entropy (nats) of softmax(α_normal/τ_current)
        d ← momentum·(gain·H) + (1 − momentum)·d        (gain → late_gain from ``late_from``)
        τ ← scale / ln(1 + d·k),  k = 1, 2, 3, ... counting updates
    with d = 0 at the start, as in the reference. ``strength``-style variants of the README ({0.12, …, 0.96})
    set ``gain``.

    Call ``step(epoch, alpha_normal)`` at the start of every epoch; it returns the τ for that epoch. Calling it
    again for an epoch it has already handled (e.g. after resuming mid-epoch) changes nothing.
    """

    def __init__(self, warmup: int = 5, interval: int = 5, late_from: int = 40, gain: float = 0.06,
                 late_gain: float = 0.12, momentum: float = 0.5, scale: float = 3.99e-4):
        self.warmup, self.interval, self.late_from = warmup, interval, late_from
        self.gain, self.late_gain, self.momentum, self.scale = gain, late_gain, momentum, scale
        self.tau = 1.0
        self.decay = 0.0
        self.updates = 0
        self.last_epoch = -1

    def is_update_epoch(self, epoch: int) -> bool:
        if epoch < self.warmup:
            return False
        return epoch == self.warmup or epoch >= self.late_from or epoch % self.interval == 0

    def step(self, epoch: int, alpha_normal: torch.Tensor) -> float:
        if epoch <= self.last_epoch:
            return self.tau
        self.last_epoch = epoch
        if self.is_update_epoch(epoch):
            entropy = mean_edge_entropy(alpha_normal, self.tau)
            gain = self.late_gain if epoch >= self.late_from else self.gain
            self.decay = self.momentum * gain * entropy + (1.0 - self.momentum) * self.decay
            self.updates += 1
            self.tau = self.scale / math.log(1.0 + self.decay * self.updates)
        return self.tau

    def state_dict(self) -> dict:
        return {"tau": self.tau, "decay": self.decay, "updates": self.updates, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.tau = float(state["tau"])
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.last_epoch = int(state["last_epoch"])


# ---------------------------------------------------------------------------------------------------------------
# SP-DARTS mixed sparsity


@dataclass(frozen=True)
class MixedSparsity:
    """SP-DARTS mixed-sparsity schedule: per epoch a sparse τ_s, a dense τ_d and the probability C_e of sparse.

    Follows the SP-DARTS/LHD code (L §4.1-§4.3, §5.2). Epochs before ``warmup`` use ``warmup_tau`` for every step
    (C = 0). From epoch ``warmup`` on, C is raised by c_span/c_span_epochs at the start of each epoch, before it
    trains (as every reference does), so C_e = min(1, c_start + c_span·(e − warmup + 1)/c_span_epochs) (written
    as one division so that e.g. e/49 is exact at e = 49); from ``freeze_from`` on C stops
    rising and τ_s switches to ``late_sparse_tau`` (the NB201 "-100" variant). τ_d = ``dense_ratio``·τ_s.
    Every step of an epoch uses τ_s with probability C_e, else τ_d, for both its arch and its weight step; the
    references draw the whole epoch's Bernoulli vector at the start of the epoch (``draw_epoch``).
    ``valid_tau`` is the τ of the end-of-epoch supernet validation; genotypes are derived at τ_s.
    """

    name: str
    sparse_tau: float
    dense_ratio: float = 10.0
    warmup: int = 0
    warmup_tau: float = 10.0
    c_start: float = 0.0
    c_span: float = 1.0
    c_span_epochs: int = 49
    freeze_from: int | None = None
    late_sparse_tau: float | None = None
    epochs: int = 50
    valid_tau: float = 1e-4
    source: str = ""

    def prob_sparse(self, epoch: int) -> float:
        """C_e, clipped to [0, 1] (a C above 1 just means every step is sparse, as in the S1-S4 code)."""
        if epoch < self.warmup:
            return 0.0
        increments = epoch - self.warmup + 1
        if self.freeze_from is not None:
            increments = min(increments, self.freeze_from - self.warmup)
        return min(1.0, max(0.0, self.c_start + self.c_span * increments / self.c_span_epochs))

    def sparse_tau_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.warmup_tau
        if self.freeze_from is not None and epoch >= self.freeze_from and self.late_sparse_tau is not None:
            return self.late_sparse_tau
        return self.sparse_tau

    def dense_tau_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.warmup_tau
        return self.dense_ratio * self.sparse_tau_at(epoch)

    def at(self, epoch: int) -> tuple[float, float, float]:
        """(τ_s, τ_d, C_e) of an epoch."""
        return self.sparse_tau_at(epoch), self.dense_tau_at(epoch), self.prob_sparse(epoch)

    def draw_epoch(self, epoch: int, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The epoch's Bernoulli(C_e) draws, one per step (True = sparse), from ``generator``.

        One uniform per step is consumed in every epoch (warmup included), so the stream stays aligned across
        epochs and a run that stores the generator state resumes with the same draws.
        """
        device = generator.device if generator is not None else "cpu"  # host decisions: never the default device
        return torch.rand(steps, generator=generator, dtype=torch.float64, device=device) < self.prob_sparse(epoch)

    def step_taus(self, epoch: int, steps: int, generator: torch.Generator | None = None) -> list[float]:
        """The τ of every step of an epoch: τ_s where the draw is sparse, else τ_d."""
        sparse, dense, _ = self.at(epoch)
        return [sparse if s else dense for s in self.draw_epoch(epoch, steps, generator).tolist()]

    def sample_tau(self, epoch: int, generator: torch.Generator | None = None) -> float:
        """A single step's τ (for loops that draw per step rather than per epoch)."""
        return self.step_taus(epoch, 1, generator)[0]

    @property
    def derive_tau(self) -> float:
        """τ at which the final architecture is read: the last epoch's τ_s."""
        return self.sparse_tau_at(self.epochs - 1)


SPARSITY_PRESETS: dict[str, MixedSparsity] = {
    s.name: s
    for s in [
        # SP-DARTS/train_search_mf.py: warmup 1 epoch at τ = 10·1, then τ_s = 1e-3, C_e = e/49; valid at τ_s/10.
        MixedSparsity("darts", sparse_tau=0.001, warmup=1, c_span=1.0, c_span_epochs=49, valid_tau=1e-4,
                      source="SP-DARTS (arXiv 2306.06858) DARTS-space code, L §4.2"),
        # LHD search/SP-DARTS: warmup 5 at τ = 10, τ_s = 1.5e-3, C_e = (e − 4)/45; valid at τ_s/10.
        MixedSparsity("lhd", sparse_tau=0.0015, warmup=5, c_span=1.0, c_span_epochs=45, valid_tau=1.5e-4,
                      source="LHD search/SP-DARTS, L §4.1"),
        # SmoothDARTS/sota/cnnmul/train_search.py: no warmup, C starts at 0.8 and gets += 0.3/50 before each epoch
        # trains, so epoch 0 already uses 0.806 (the code's order; the spec's "C_0 = 0.8" is the initial value);
        # τ_d = 10·τ_s; valid at τ_s/10.
        MixedSparsity("s1-s4", sparse_tau=0.0003, warmup=0, c_start=0.8, c_span=0.3, c_span_epochs=50,
                      valid_tau=3e-5,
                      source="SP-DARTS SmoothDARTS/sota/cnnmul code, L §4.3"),
        # AutoDL-Projects_sp DARTS-V1-10.py: τ_d = 11·τ_s, C += 1/49 per epoch, valid at 1e-4. The warmup τ is the
        # code's 10·τ with τ unassigned at epoch 0 (NameError, L §8 item 21); every other SP-DARTS script starts
        # from τ = 1 before the loop, so we take τ = 1, i.e. warmup at 10, like the darts and lhd presets.
        MixedSparsity("nb201-10", sparse_tau=0.0011, dense_ratio=11.0, warmup=1, c_span=1.0, c_span_epochs=49,
                      valid_tau=1e-4,
                      source="SP-DARTS AutoDL-Projects_sp DARTS-V1-10, L §4.3"),
        # DARTS-V1-100.py: τ_s = 1.3e-3 with C += 0.9/49 for epochs 1..44; from epoch 45 τ_s = 6e-4, C frozen.
        MixedSparsity("nb201-100", sparse_tau=0.0013, dense_ratio=11.0, warmup=1, c_span=0.9, c_span_epochs=49,
                      freeze_from=45, late_sparse_tau=0.0006, valid_tau=1e-4,
                      source="SP-DARTS AutoDL-Projects_sp DARTS-V1-100, L §4.3"),
    ]
}


def sparsity_preset(name: str) -> MixedSparsity:
    """The SP-DARTS schedule preset of that name (darts, lhd, s1-s4, nb201-10, nb201-100)."""
    if name not in SPARSITY_PRESETS:
        raise unknown("sparsity preset", name, SPARSITY_PRESETS)
    return SPARSITY_PRESETS[name]


__all__ = ["cosine_lr", "LinearRamp", "SdartsEpsilon", "ExponentialTau", "log_decay_tau", "CyclicLogTau", "GdasTau",
           "mean_edge_entropy", "EntropyAdaptiveTau", "MixedSparsity", "SPARSITY_PRESETS", "sparsity_preset"]
