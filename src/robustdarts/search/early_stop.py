"""DARTS-ES and DARTS-ADA decision logic (Zela et al., "Understanding and Robustifying DARTS", ICLR 2020;
spec D §2.4, §2.5, §6.3).

Pure logic over (epoch, dominant eigenvalue) observations: no tensors, no I/O. The search loop measures the
eigenvalue (``analysis.hessian.arch_hessian``), calls ``observe``, and on a ``StopDecision`` stops (DARTS-ES) or,
for DARTS-ADA, rolls back to the checkpoint of ``stop_epoch``, calls ``rollback(stop_epoch)`` (or restores this
object's ``state_dict`` from that checkpoint) and ``AdaSchedule.increase()``s the regularization.

Two rules:

- ``rule="code"`` (default), automl/RobustDARTS ``src/utils.py`` ``EVLocalAvg`` with ``src/search/args.py``
  defaults: window 5 stored eigenvalues, factor 1.3, delta 4, ev_freq 2, es_start_epoch 10. The local average of
  the j-th stored eigenvalue is the mean of the latest ``window`` values (of all values while fewer exist; none
  before ceil(window/2) exist), tagged ``la_epoch = epoch − ev_freq·floor(window/2)`` (treated as centred). A check
  runs when ``la_epoch − ev_freq·delta ≥ start_epoch`` (first at epoch 22 with the defaults) and never at the last
  epoch; it stops when ``LA[-1] / LA[-1-delta] > factor`` and returns ``stop_epoch = la_epoch − ev_freq·delta``
  (= epoch − 12). Deliberate differences: the reference's last-epoch "flush" of shrinking windows only feeds its
  logs, so it is left out; a non-positive denominator skips the check instead of dividing (a ratio of negative
  averages has no meaning); the local averages are recomputed from the stored observations, so the whole state
  is the observation list and a rollback is a truncation.
- ``rule="paper"``, as recalled from the paper (spec: PAPER?, unverified): λ̄(i) is the mean of the eigenvalues
  observed in the trailing window of epochs (i − window, i] (window 5 epochs); at an observed epoch i it stops when
  λ̄(i − k) / λ̄(i) < threshold (k = 5, threshold 0.75) and returns ``stop_epoch = i − k``. λ̄ is defined for any
  epoch whose window holds an observation, so any measuring cadence works; a check needs the whole window of
  i − k inside the search (i − k − window + 1 ≥ 0) and i − k ≥ start_epoch (default 0). The paper's λ̄ may be
  centred rather than trailing; trailing is the only reading that can decide at epoch i.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import RobustDartsError, unknown

RULES = ("code", "paper")

# Per-rule defaults; ``window`` counts stored eigenvalues for "code" and epochs for "paper".
_DEFAULTS = {
    "code": dict(window=5, factor=1.3, delta=4, ev_freq=2, start_epoch=10),
    "paper": dict(window=5, k=5, threshold=0.75, ev_freq=2, start_epoch=0),
}


@dataclass(frozen=True)
class StopDecision:
    """The criterion fired at ``epoch``; the architecture to return (or to roll back to) is that of ``stop_epoch``."""

    epoch: int
    stop_epoch: int
    ratio: float  # code rule: LA now / LA before (fires above factor); paper rule: λ̄(i−k) / λ̄(i) (fires below T)
    rule: str


@dataclass
class _Observation:
    epoch: int
    eigenvalue: float
    last: bool


@dataclass
class EarlyStop:
    """Eigenvalue-based early stopping; see the module docstring for both rules. Unset parameters take the rule's
    defaults (code: window=5, factor=1.3, delta=4, ev_freq=2, start_epoch=10; paper: window=5, k=5,
    threshold=0.75, ev_freq=2, start_epoch=0)."""

    rule: str = "code"
    window: int | None = None
    factor: float | None = None  # code rule
    delta: int | None = None  # code rule, in stored eigenvalues
    k: int | None = None  # paper rule, in epochs
    threshold: float | None = None  # paper rule
    ev_freq: int | None = None
    start_epoch: int | None = None
    observations: list[_Observation] = field(default_factory=list, init=False, repr=False)
    first_stop: StopDecision | None = field(default=None, init=False, repr=False)  # kept for DARTS-ES under ADA

    def __post_init__(self):
        if self.rule not in RULES:
            raise unknown("early-stopping rule", self.rule, RULES)
        for name, value in _DEFAULTS[self.rule].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.window < 1 or self.ev_freq < 1:
            raise RobustDartsError(f"early stopping needs window >= 1 and ev_freq >= 1, got window={self.window}, "
                                   f"ev_freq={self.ev_freq}.")

    # ------------------------------------------------------------------------------------------------ feeding

    def observe(self, epoch: int, eigenvalue: float, last_epoch: bool = False) -> StopDecision | None:
        """Record the eigenvalue measured at the end of ``epoch``; return a decision if the criterion fires."""
        if self.observations and epoch <= self.observations[-1].epoch:
            raise RobustDartsError(f"early stopping got epoch {epoch} after epoch {self.observations[-1].epoch}; "
                                   "epochs must increase (call rollback(epoch) after a rollback).")
        self.observations.append(_Observation(int(epoch), float(eigenvalue), bool(last_epoch)))
        if last_epoch:  # both references skip the decision at the last epoch
            return None
        decision = self._check_code() if self.rule == "code" else self._check_paper()
        if decision is not None and self.first_stop is None:
            self.first_stop = decision
        return decision

    def rollback(self, epoch: int) -> None:
        """Forget observations after ``epoch`` (DARTS-ADA resumes from the checkpoint of ``epoch``)."""
        self.observations = [o for o in self.observations if o.epoch <= epoch]

    # ------------------------------------------------------------------------------------------------- rules

    def local_averages(self) -> list[tuple[int, float]]:
        """(la_epoch, value) of the code rule's local averages, oldest first (for logs and plots)."""
        evs = [o for o in self.observations if not o.last]
        first = math.ceil(self.window / 2) - 1  # averaging starts once ceil(window/2) values exist
        half = self.ev_freq * (self.window // 2)
        out = []
        for j in range(first, len(evs)):
            values = [o.eigenvalue for o in evs[max(0, j - self.window + 1):j + 1]]
            out.append((evs[j].epoch - half, sum(values) / len(values)))
        return out

    def _check_code(self) -> StopDecision | None:
        averages = self.local_averages()
        if not averages:
            return None  # fewer than ceil(window/2) eigenvalues yet
        la_epoch, current = averages[-1]
        stop_epoch = la_epoch - self.ev_freq * self.delta
        if stop_epoch < self.start_epoch or len(averages) <= self.delta:
            return None
        previous = averages[-1 - self.delta][1]
        if previous <= 0:
            return None
        ratio = current / previous
        return StopDecision(self.observations[-1].epoch, stop_epoch, ratio, "code") if ratio > self.factor else None

    def _trailing_average(self, epoch: int) -> float | None:
        values = [o.eigenvalue for o in self.observations if epoch - self.window < o.epoch <= epoch]
        return sum(values) / len(values) if values else None

    def _check_paper(self) -> StopDecision | None:
        epoch = self.observations[-1].epoch
        stop_epoch = epoch - self.k
        if stop_epoch < self.start_epoch or stop_epoch - self.window + 1 < 0:
            return None
        before, now = self._trailing_average(stop_epoch), self._trailing_average(epoch)
        if before is None or now is None or now <= 0:
            return None
        ratio = before / now
        return StopDecision(epoch, stop_epoch, ratio, "paper") if ratio < self.threshold else None

    # -------------------------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict:
        """Plain data (ints, floats, bools, strings, lists, dicts): safe for a ``weights_only`` checkpoint or JSON."""
        return {
            "rule": self.rule,
            "params": {name: getattr(self, name) for name in
                       ("window", "factor", "delta", "k", "threshold", "ev_freq", "start_epoch")},
            "observations": [[o.epoch, o.eigenvalue, o.last] for o in self.observations],
            "first_stop": asdict(self.first_stop) if self.first_stop else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["rule"] != self.rule:
            raise RobustDartsError(f"checkpoint holds early-stopping rule {state['rule']!r}, but this run uses "
                                   f"{self.rule!r}; resume with the rule the run started with.")
        for name, value in state["params"].items():
            setattr(self, name, value)
        self.observations = [_Observation(int(e), float(v), bool(last)) for e, v, last in state["observations"]]
        self.first_stop = StopDecision(**state["first_stop"]) if state["first_stop"] else None


@dataclass
class AdaSchedule:
    """DARTS-ADA regularization ladder (spec D §2.5): the values the regularization (L2 weight decay by default)
    takes after 0, 1, 2, … early-stopping triggers. The script's 3e-4 ×10 up to 3e-2 gives (3e-4, 3e-3, 3e-2): at
    most two increases.

    Deliberate difference: the reference multiplies by ``mul_factor`` and detects the cap with
    ``round(ln(max)/ln(current), 1) == 1.0``; an explicit list cannot drift or miss the cap by rounding.
    """

    values: tuple[float, ...] = (3e-4, 3e-3, 3e-2)
    index: int = 0

    def __post_init__(self):
        self.values = tuple(float(v) for v in self.values)
        if not self.values:
            raise RobustDartsError("ADA needs at least one regularization value; got an empty list.")
        if not 0 <= self.index < len(self.values):
            raise RobustDartsError(f"ADA index {self.index} is outside the {len(self.values)} values "
                                   f"{list(self.values)}.")

    @classmethod
    def geometric(cls, start: float = 3e-4, factor: float = 10.0, maximum: float = 3e-2) -> "AdaSchedule":
        """start, start·factor, … up to maximum (with a relative tolerance so 3e-4·10² counts as 3e-2)."""
        if start <= 0 or factor <= 1 or maximum < start:
            raise RobustDartsError(f"ADA needs 0 < start <= maximum and factor > 1; got start={start}, "
                                   f"factor={factor}, maximum={maximum}.")
        values = [start]
        while values[-1] * factor <= maximum * (1 + 1e-9):
            values.append(values[-1] * factor)
        return cls(tuple(values))

    @property
    def current(self) -> float:
        return self.values[self.index]

    @property
    def can_increase(self) -> bool:
        return self.index + 1 < len(self.values)

    def increase(self) -> float:
        """Move to the next value and return it."""
        if not self.can_increase:
            raise RobustDartsError(f"ADA is already at its final value {self.current}; check can_increase first.")
        self.index += 1
        return self.current

    def state_dict(self) -> dict:
        return {"values": list(self.values), "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.values = tuple(float(v) for v in state["values"])
        self.index = int(state["index"])
