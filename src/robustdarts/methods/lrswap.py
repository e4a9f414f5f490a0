"""LR swap (EX-DARTS) and SS-DARTS with the operation-magnitude selective stop (Zhang & Ding, CIKM 2021).

"Delve into the Performance Degradation of Differentiable Architecture Search" (arXiv 2109.13466; code
chaoji90/Selective-Stop and the ``setup/exchange`` configs of chaoji90/PCDEDD; spec L §6). The search is plain
first-order DARTS with other learning-rate schemes; the selective stop is chosen after the fact from the per-epoch
α archive (``analysis/selective_stop.py``; ``robustdarts derive RUN --policy selective-stop``). These presets also
log it while searching: every metrics record gets ``selective_stop_epoch`` (the rule applied to the epochs so
far), and the last epoch writes ``selective_stop.json`` to the run directory with the stop epoch, its scores, the
per-op peak epochs (the SS-DARTS DARTS-space log) and the genotype of the stop epoch.

The presets (ex-darts, ss-darts, ss-darts-nb201) are this one family with each setup's learning rates, in the
preset table. Deviation: the gated rule, which the reference applies on NB201 only, is logged in every space
(target op: ``selective_stop.default_target``).
"""

from __future__ import annotations

import json

from ..analysis.selective_stop import selective_stop_epoch, selective_stop_report, selective_stop_scores
from ..errors import RobustDartsError
from .darts import Darts
from .recipe import EpochAction


class SelectiveStopDarts(Darts):
    """DARTS that logs the selective-stop epoch each epoch and writes ``selective_stop.json`` after the last."""

    def end_epoch(self, ctx, end) -> EpochAction:
        archive = {e: a for e, a in end.archive.items() if 0 <= e <= ctx.epoch}
        try:
            stop = selective_stop_epoch(archive, self.space)
        except RobustDartsError:  # e.g. a space without the target op: nothing to log
            return EpochAction()
        end.record["selective_stop_epoch"] = stop
        if not end.last:
            return EpochAction()
        epochs, scores = selective_stop_scores(archive, self.space)
        report = {"epoch": stop, "epochs": epochs, "scores": scores,
                  "peak_epoch_per_op": selective_stop_report(archive, self.space),
                  "genotype": end.genotype_of(archive[stop], stop).to_dict()}
        return EpochAction(files={"selective_stop.json": json.dumps(report, indent=2)})


__all__ = ["SelectiveStopDarts"]
