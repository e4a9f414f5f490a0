"""RobustDARTS presets: R-DARTS(L2), R-DARTS(DP), DARTS-ES and DARTS-ADA (spec D §2.3–2.6, §6.3).

Zela et al., "Understanding and Robustifying Differentiable Architecture Search" (ICLR 2020), code
automl/RobustDARTS (``src/search/train_search.py``, ``src/utils.py`` ``EVLocalAvg``, ``scripts/*.sh``). Every
scripted RobustDARTS search is second-order DARTS (``--unrolled``), so all four presets default to
``arch_order: second``; the tiny preset shrinks sizes only and keeps it.

Deliberate differences from the reference, shared by the presets:

- The dominant eigenvalue is exact (symmetric solver, all α coordinates), measured by ``analysis.hessian`` on
  fresh validation batches without moving BN statistics (the reference used the last training-loop batch).
- DARTS-ADA: the unrolled step uses the *raised* weight decay after a rollback (the reference built its
  Architect before multiplying, keeping the stale value: the loop's unrolled step reads ``search.weight_decay``,
  which this preset sets every epoch); the ladder is an explicit list (3e-4, 3e-3, 3e-2) instead of a log-ratio
  rounding test; checkpoints are tensors and plain data (the reference's namedtuple checkpoints no longer load
  with ``weights_only``).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import RobustDartsError
from ..runs import atomic_write_text
from ..search.early_stop import RULES, AdaSchedule, EarlyStop
from . import register
from .base import Method

L2_GRID = (3e-4, 9e-4, 27e-4, 81e-4, 243e-4)  # scripts/start_search.sh: 3e-4·3^k
DP_GRID = (0.0, 0.2, 0.4, 0.6)


@register
class RDartsL2(Method):
    """R-DARTS(L2): second-order DARTS with a larger inner-SGD L2 weight decay (spec D §2.6).

    The paper searches the grid 3e-4·3^k (``L2_GRID``: 3e-4, 9e-4, 27e-4, 81e-4, 243e-4) with 3 seeds per value
    and returns the best architecture by validation accuracy. The preset's default is the middle of the grid,
    0.0027; pick another grid value with ``--set weight_decay=...``. The unrolled step uses the same value.
    """

    name = "rdarts-l2"
    paper = "Zela et al., Understanding and Robustifying Differentiable Architecture Search (ICLR 2020), R-DARTS(L2)"
    summary = "second-order DARTS with a larger weight decay (grid 3e-4·3^k; default 27e-4)"
    defaults = {"arch_order": "second", "weight_decay": 27e-4}


@register
class RDartsDP(Method):
    """R-DARTS(DP): second-order DARTS with search-time drop path on every mixed-edge output, skip edges included,
    ramped linearly p_e = dp·e/(E − 1), and cutout (length 16) switched on with it, its probability ramped alike
    (spec D §2.6; both ramps are the base ``drop_prob``/``cutout_prob``).

    The paper searches dp ∈ {0.2, 0.4, 0.6} (``DP_GRID``) and returns the best by validation accuracy; the
    preset's default is the middle value 0.4. Cutout keeps the paper's 16 pixels, a length given at 32×32 that
    the search scales with the image size (8 pixels at the tiny preset's 16×16).
    """

    name = "rdarts-dp"
    paper = "Zela et al., Understanding and Robustifying Differentiable Architecture Search (ICLR 2020), R-DARTS(DP)"
    summary = "second-order DARTS with ramped search-time drop path (grid 0.2/0.4/0.6; default 0.4) + ramped cutout"
    defaults = {"arch_order": "second", "drop_path": 0.4, "cutout": 16}


def genotype_at(search, epoch: int):
    """The genotype of the α archived at the end of ``epoch`` (the search's α is left as it is)."""
    if epoch not in search.archive:
        raise RobustDartsError(f"the architecture of epoch {epoch} is not in the archive; it holds epochs "
                               f"{sorted(search.archive)}.")
    current = search.arch.as_dict()
    search.arch.load_dict(search.archive[epoch])
    try:
        return search.derive()
    finally:
        search.arch.load_dict(current)


class _EigenvalueStopping(Method):
    """Shared part of DARTS-ES and DARTS-ADA: an ``EarlyStop`` fed with the loop's eigenvalue measurements."""

    defaults = {"arch_order": "second", "hessian_every": 2}
    options: dict[str, Any] = {"es_rule": "code"}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts["es_rule"] not in RULES:
            raise RobustDartsError(f"unknown {self.name} option es_rule={self.opts['es_rule']!r}; choose one of: "
                                   f"{', '.join(RULES)}.")
        if cfg.hessian_every < 1:
            raise RobustDartsError(f"{self.name} stops on the dominant eigenvalue, but hessian_every is "
                                   f"{cfg.hessian_every}; set hessian_every to 2 (the paper's cadence) or another "
                                   f"positive number of epochs.")
        self.early_stop = EarlyStop(rule=self.opts["es_rule"], ev_freq=cfg.hessian_every)

    def observe(self, search, record: dict):
        if "eigenvalue" not in record:
            return None
        return self.early_stop.observe(search.epoch, record["eigenvalue"], search.epoch == self.cfg.epochs - 1)

    def write_es_result(self, search, decision, record: dict) -> dict:
        """Record the DARTS-ES architecture (that of the stop epoch) in the metrics and in ``darts_es.json``."""
        genotype = genotype_at(search, decision.stop_epoch)
        result = {"trigger_epoch": decision.epoch, "stop_epoch": decision.stop_epoch, "ratio": decision.ratio,
                  "rule": decision.rule, "genotype": genotype.to_dict()}
        record["es_trigger_epoch"], record["es_stop_epoch"] = decision.epoch, decision.stop_epoch
        if search.run_dir is not None:
            atomic_write_text(search.run_dir.path / "darts_es.json", json.dumps(result, indent=2))
        return {**result, "genotype": genotype}

    def state_dict(self) -> dict:
        return {"early_stop": self.early_stop.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "early_stop" in state:
            self.early_stop.load_state_dict(state["early_stop"])


@register
class DartsES(_EigenvalueStopping):
    """DARTS-ES: stop when the dominant eigenvalue of ∇²_α L_val grows too fast; return the architecture of the
    stop epoch (spec D §2.4).

    The eigenvalue is measured every 2 epochs (and at the last). ``es_rule="code"`` (default) is RobustDARTS'
    ``EVLocalAvg``: local averages over 5 measurements, stop when the average grew by more than 1.3× over 4
    measurements (8 epochs), first check at epoch 22, stop epoch = trigger epoch − 12. ``es_rule="paper"`` is the
    paper's rule as recalled (λ̄(i−5)/λ̄(i) < 0.75, stop epoch i − 5; unverified). On a trigger the run stops and
    its ``genotype.json`` is re-derived from the α archived at the stop epoch (the archive keeps every epoch, so
    no rollback is needed); ``darts_es.json`` and the metrics record the trigger.
    """

    name = "darts-es"
    paper = "Zela et al., Understanding and Robustifying Differentiable Architecture Search (ICLR 2020), DARTS-ES"
    summary = "second-order DARTS stopped early when the dominant α-Hessian eigenvalue grows (stop-epoch genotype)"

    def end_epoch(self, search, record: dict) -> dict | None:
        decision = self.early_stop.first_stop if self.early_stop.first_stop is not None else \
            self.observe(search, record)
        if decision is None:
            return None
        result = self.write_es_result(search, decision, record)
        search.genotype = result["genotype"]
        return {"stop": True, "reason": f"eigenvalue rule {decision.rule!r} fired at epoch {decision.epoch} "
                                        f"(ratio {decision.ratio:.3g}); architecture of epoch {decision.stop_epoch}"}


@register
class DartsADA(_EigenvalueStopping):
    """DARTS-ADA: on the DARTS-ES trigger, roll back to the stop epoch and raise the regularization ×10, up to
    the maximum; then search on to the original final epoch (spec D §2.5).

    ``regularizer="l2"`` (default): the inner-SGD weight decay follows ``values`` (default 3e-4 → 3e-3 → 3e-2, the
    script's ×10 up to ``--max_weight_decay 0.03``): at most two increases. ``regularizer="dp"``: the search-time
    drop-path maximum follows ``values`` (default 0.0 → 0.2 → 0.4 → 0.6, the R-DARTS(DP) grid; the paper only says
    the scheme applies to drop path, so this ladder is our choice), with the usual linear ramp; set ``cutout`` to
    couple cutout with it as R-DARTS(DP) does. The first value replaces the config's weight_decay / drop_path.

    The rollback restores weights, α, both optimizers' states, the data streams and the RNG from
    ``checkpoints/epoch_<stop>.pt`` (``Search.rollback``), so the continuation is exactly that of a run restarted
    from that checkpoint with the raised regularization; the eigenvalue history is truncated to the stop epoch
    (the reference restores its tracker from the checkpoint). With the code rule the stop epoch is 12 epochs back,
    so the last 13 per-epoch checkpoints are kept. The architecture of the first trigger is the DARTS-ES result:
    ``darts_es.json`` in the run directory, and ``es_stop_epoch`` in the metrics.
    """

    name = "darts-ada"
    paper = "Zela et al., Understanding and Robustifying Differentiable Architecture Search (ICLR 2020), DARTS-ADA"
    summary = "DARTS-ES trigger → roll back to the stop epoch and raise L2 (or drop path) ×10, up to 3e-2"
    defaults = {**_EigenvalueStopping.defaults, "keep_checkpoints": 13}
    options = {**_EigenvalueStopping.options, "regularizer": "l2", "values": None}

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        kind = self.opts["regularizer"]
        if kind not in ("l2", "dp"):
            raise RobustDartsError(f"unknown darts-ada option regularizer={kind!r}; choose one of: l2, dp.")
        values = self.opts["values"]
        if values is None:
            values = (3e-4, 3e-3, 3e-2) if kind == "l2" else DP_GRID
        if isinstance(values, (int, float)) or not all(isinstance(v, (int, float)) for v in values):
            raise RobustDartsError(f"darts-ada option values must be a list of numbers, got {values!r}.")
        if list(values) != sorted(values):
            raise RobustDartsError(f"darts-ada option values must increase, got {list(values)}.")
        if kind == "dp" and not all(0.0 <= v < 1.0 for v in values):
            raise RobustDartsError(f"darts-ada drop-path values must lie in [0, 1), got {list(values)}.")
        self.schedule = AdaSchedule(tuple(values))
        es = self.early_stop
        back = es.ev_freq * (es.delta + es.window // 2) if es.rule == "code" else es.k
        self.checkpoints_needed = back + 1
        if cfg.keep_checkpoints < self.checkpoints_needed:
            raise RobustDartsError(f"darts-ada rolls back up to {back} epochs, so it needs keep_checkpoints >= "
                                   f"{self.checkpoints_needed}, got {cfg.keep_checkpoints}.")
        self.triggers: list[dict] = []

    def setup(self, search) -> None:
        if search.run_dir is None:
            raise RobustDartsError("darts-ada rolls back to per-epoch checkpoints and needs a run directory; pass "
                                   "an output directory (--out).")
        self.apply(search)

    @property
    def regularization(self) -> float:
        return self.schedule.current

    def apply(self, search) -> None:
        if self.opts["regularizer"] == "l2":
            search.set_weight_decay(self.schedule.current)

    def begin_epoch(self, search) -> None:
        # A rollback reloads the checkpoint's (older) weight decay; the schedule is the truth.
        self.apply(search)

    def drop_prob(self, search) -> float:
        if self.opts["regularizer"] != "dp":
            return super().drop_prob(search)
        return self.schedule.current * search.epoch / max(self.cfg.epochs - 1, 1)

    def cutout_prob(self, search) -> float:
        if self.opts["regularizer"] != "dp":
            return super().cutout_prob(search)
        return search.epoch / max(self.cfg.epochs - 1, 1) if self.schedule.current > 0 else 1.0

    def end_epoch(self, search, record: dict) -> dict | None:
        record["ada_" + self.opts["regularizer"]] = self.schedule.current
        first = self.early_stop.first_stop
        decision = self.observe(search, record)
        if decision is None:
            return None
        if first is None:  # the first trigger: its architecture is the DARTS-ES result
            self.write_es_result(search, decision, record)
        if not self.schedule.can_increase:
            record["ada_trigger_ignored"] = True  # already at the maximum: search on to the final epoch
            return None
        previous, new = self.schedule.current, self.schedule.increase()
        self.early_stop.rollback(decision.stop_epoch)
        self.triggers.append({"trigger_epoch": decision.epoch, "stop_epoch": decision.stop_epoch,
                              "from": previous, "to": new})
        record["ada_rollback_to"] = decision.stop_epoch
        return {"rollback": decision.stop_epoch,
                "reason": f"eigenvalue rule fired at epoch {decision.epoch}; {self.opts['regularizer']} "
                          f"{previous:g} -> {new:g}, back to epoch {decision.stop_epoch}"}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "schedule": self.schedule.state_dict(), "triggers": list(self.triggers)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "schedule" in state:
            self.schedule.load_state_dict(state["schedule"])
        self.triggers = list(state.get("triggers", []))
