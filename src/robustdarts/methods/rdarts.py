"""RobustDARTS' eigenvalue-driven families: DARTS-ES and DARTS-ADA (spec D §2.3–2.6, §6.3). R-DARTS(L2) and
R-DARTS(DP) are presets of ``darts.RobustDarts`` (a larger weight decay; ramped drop path with cutout).

Zela et al., "Understanding and Robustifying Differentiable Architecture Search" (ICLR 2020), code
automl/RobustDARTS (``src/search/train_search.py``, ``src/utils.py`` ``EVLocalAvg``, ``scripts/*.sh``). Every
scripted RobustDARTS search is second-order DARTS (``--unrolled``), so all four presets default to
``arch_order: second`` (preset table); the tiny preset shrinks sizes only and keeps it. The R-DARTS grids:
``L2_GRID`` (3e-4·3^k) and ``DP_GRID``, 3 seeds per value, the best architecture by validation accuracy.

Deliberate differences from the reference, shared by the presets:

- The dominant eigenvalue is exact (symmetric solver, all α coordinates), measured by ``analysis.hessian`` on
  fresh validation batches without moving BN statistics (the reference used the last training-loop batch).
- DARTS-ADA: the unrolled step uses the *raised* weight decay after a rollback (the reference built its
  Architect before multiplying, keeping the stale value: the loop's unrolled step reads the weight decay that
  this recipe's ``weight_decay`` sets every epoch); the ladder is an explicit list (3e-4, 3e-3, 3e-2) instead of a log-ratio
  rounding test; checkpoints are tensors and plain data (the reference's namedtuple checkpoints no longer load
  with ``weights_only``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from ..config import AT_LEAST_0, Range
from ..errors import RobustDartsError, unknown
from ..search.early_stop import RULES, AdaSchedule, EarlyStop
from .darts import RobustDarts
from .recipe import EpochAction

L2_GRID = (3e-4, 9e-4, 27e-4, 81e-4, 243e-4)  # scripts/start_search.sh: 3e-4·3^k
DP_GRID = (0.0, 0.2, 0.4, 0.6)


@dataclass(frozen=True)
class EarlyStopOptions:
    es_rule: str = "code"  # code (EVLocalAvg) | paper


class DartsES(RobustDarts):
    """DARTS-ES: stop when the dominant eigenvalue of ∇²_α L_val grows too fast; return the architecture of the
    stop epoch (spec D §2.4).

    The eigenvalue is measured every 2 epochs (and at the last). ``es_rule="code"`` (default) is RobustDARTS'
    ``EVLocalAvg``: local averages over 5 measurements, stop when the average grew by more than 1.3× over 4
    measurements (8 epochs), first check at epoch 22, stop epoch = trigger epoch − 12. ``es_rule="paper"`` is the
    paper's rule as recalled (λ̄(i−5)/λ̄(i) < 0.75, stop epoch i − 5; unverified). On a trigger the run stops and
    its ``genotype.json`` is re-derived from the α archived at the stop epoch (the archive keeps every epoch, so
    no rollback is needed); ``darts_es.json`` and the metrics record the trigger.
    """

    Options = EarlyStopOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts.es_rule not in RULES:
            raise unknown(f"{cfg.method} option es_rule", self.opts.es_rule, RULES)
        if cfg.hessian_every < 1:
            raise RobustDartsError(f"{cfg.method} stops on the dominant eigenvalue, but hessian_every is "
                                   f"{cfg.hessian_every}; set hessian_every to 2 (the paper's cadence) or another "
                                   f"positive number of epochs.")
        self.early_stop = EarlyStop(rule=self.opts.es_rule, ev_freq=cfg.hessian_every)

    def observe(self, ctx, end):
        if "eigenvalue" not in end.record:
            return None
        return self.early_stop.observe(ctx.epoch, end.record["eigenvalue"], end.last)

    @staticmethod
    def es_result(decision, end) -> EpochAction:
        """The DARTS-ES architecture (that of the stop epoch), in the metrics and in ``darts_es.json``."""
        genotype = end.genotype_of(end.archive[decision.stop_epoch], decision.stop_epoch)
        result = {"trigger_epoch": decision.epoch, "stop_epoch": decision.stop_epoch, "ratio": decision.ratio,
                  "rule": decision.rule, "genotype": genotype.to_dict()}
        end.record["es_trigger_epoch"], end.record["es_stop_epoch"] = decision.epoch, decision.stop_epoch
        return EpochAction(genotype=genotype, files={"darts_es.json": json.dumps(result, indent=2)})

    def end_epoch(self, ctx, end) -> EpochAction:
        decision = self.early_stop.first_stop or self.observe(ctx, end)
        if decision is None:
            return EpochAction()
        action = self.es_result(decision, end)
        action.stop = True
        action.reason = (f"eigenvalue rule {decision.rule!r} fired at epoch {decision.epoch} "
                         f"(ratio {decision.ratio:.3g}); architecture of epoch {decision.stop_epoch}")
        return action

    def state_dict(self) -> dict:
        return {"early_stop": self.early_stop.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "early_stop" in state:
            self.early_stop.load_state_dict(state["early_stop"])


@dataclass(frozen=True)
class AdaOptions(EarlyStopOptions):
    RANGES: ClassVar[dict[str, Range]] = {"values": AT_LEAST_0}

    regularizer: str = "l2"  # l2 | dp
    values: tuple[float, ...] | None = None  # the ladder; None: 3e-4, 3e-3, 3e-2 (l2) or DP_GRID (dp)


class DartsADA(DartsES):
    """DARTS-ADA: on the DARTS-ES trigger, roll back to the stop epoch and raise the regularization ×10, up to
    the maximum; then search on to the original final epoch (spec D §2.5).

    ``regularizer="l2"`` (default): the inner-SGD weight decay follows ``values`` (default 3e-4 → 3e-3 → 3e-2, the
    script's ×10 up to ``--max_weight_decay 0.03``): at most two increases. ``regularizer="dp"``: the search-time
    drop-path maximum follows ``values`` (default 0.0 → 0.2 → 0.4 → 0.6, the R-DARTS(DP) grid; the paper only says
    the scheme applies to drop path, so this ladder is our choice), with the usual linear ramp; set ``cutout`` to
    couple cutout with it as R-DARTS(DP) does. The first value replaces the config's weight_decay / drop_path.

    The rollback restores weights, α, both optimizers' states, the data streams and the RNG from
    ``checkpoints/epoch_<stop>.pt`` (the loop's ``rollback``; this recipe's own state is kept), so the continuation
    is exactly that of a run restarted from that checkpoint with the raised regularization; the eigenvalue history
    is truncated to the stop epoch (the reference restores its tracker from the checkpoint). With the code rule the
    stop epoch is 12 epochs back, so the last 13 per-epoch checkpoints are kept. The architecture of the first
    trigger is the DARTS-ES result: ``darts_es.json`` in the run directory, and ``es_stop_epoch`` in the metrics.
    """

    Options = AdaOptions

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        kind = self.opts.regularizer
        if kind not in ("l2", "dp"):
            raise unknown("darts-ada option regularizer", kind, ("l2", "dp"))
        values = self.opts.values
        if values is None:
            values = (3e-4, 3e-3, 3e-2) if kind == "l2" else DP_GRID
        if list(values) != sorted(values):
            raise RobustDartsError(f"darts-ada option values must increase, got {list(values)}.")
        if kind == "dp" and not all(0.0 <= v < 1.0 for v in values):
            raise RobustDartsError(f"darts-ada drop-path values must lie in [0, 1), got {list(values)}.")
        self.schedule = AdaSchedule(tuple(values))
        es = self.early_stop
        back = es.ev_freq * (es.delta + es.window // 2) if es.rule == "code" else es.k
        self.rollback_depth = back + 1
        if cfg.keep_checkpoints < self.rollback_depth:
            raise RobustDartsError(f"darts-ada rolls back up to {back} epochs, so it needs keep_checkpoints >= "
                                   f"{self.rollback_depth}, got {cfg.keep_checkpoints}.")
        self.triggers: list[dict] = []

    @property
    def regularization(self) -> float:
        return self.schedule.current

    def weight_decay(self, ctx) -> float:
        # Read every epoch: after a rollback the schedule, not the checkpoint, holds the truth.
        return self.schedule.current if self.opts.regularizer == "l2" else self.cfg.weight_decay

    def drop_prob(self, ctx) -> float:
        if self.opts.regularizer != "dp":
            return super().drop_prob(ctx)
        return self.schedule.current * ctx.ramp

    def cutout_prob(self, ctx) -> float:
        if self.opts.regularizer != "dp":
            return super().cutout_prob(ctx)
        return ctx.ramp if self.schedule.current > 0 else 0.0

    def end_epoch(self, ctx, end) -> EpochAction:
        end.record["ada_" + self.opts.regularizer] = self.schedule.current
        first = self.early_stop.first_stop
        decision = self.observe(ctx, end)
        if decision is None:
            return EpochAction()
        # The first trigger's architecture is the DARTS-ES result.
        action = self.es_result(decision, end) if first is None else EpochAction()
        action.genotype = None  # DARTS-ADA searches on: the run's genotype stays that of its last epoch
        if not self.schedule.can_increase:
            end.record["ada_trigger_ignored"] = True  # already at the maximum: search on to the final epoch
            return action
        previous, new = self.schedule.current, self.schedule.increase()
        self.early_stop.rollback(decision.stop_epoch)
        self.triggers.append({"trigger_epoch": decision.epoch, "stop_epoch": decision.stop_epoch,
                              "from": previous, "to": new})
        end.record["ada_rollback_to"] = decision.stop_epoch
        action.rollback = decision.stop_epoch
        action.reason = (f"eigenvalue rule fired at epoch {decision.epoch}; {self.opts.regularizer} {previous:g} -> "
                         f"{new:g}, back to epoch {decision.stop_epoch}")
        return action

    def state_dict(self) -> dict:
        return {**super().state_dict(), "schedule": self.schedule.state_dict(), "triggers": list(self.triggers)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "schedule" in state:
            self.schedule.load_state_dict(state["schedule"])
        self.triggers = list(state.get("triggers", []))


__all__ = ["L2_GRID", "DP_GRID", "EarlyStopOptions", "DartsES", "AdaOptions", "DartsADA"]
