"""LR swap (EX-DARTS) and SS-DARTS with the operation-magnitude selective stop (Zhang & Ding, CIKM 2021).

"Delve into the Performance Degradation of Differentiable Architecture Search" (arXiv 2109.13466; code
chaoji90/Selective-Stop and the ``setup/exchange`` configs of chaoji90/PCDEDD; spec L §6). The search is plain
first-order DARTS with other learning-rate schemes; the selective stop is chosen after the fact from the per-epoch
α archive (``analysis/selective_stop.py``; ``robustdarts derive RUN --policy selective-stop``). These presets also
log it while searching: every metrics record gets ``selective_stop_epoch`` (the rule applied to the epochs so
far), and the last epoch writes ``selective_stop.json`` to the run directory with the stop epoch, its scores, the
per-op peak epochs (the SS-DARTS DARTS-space log) and the genotype of the stop epoch.

Deviations: the NB201 reference uses Nesterov momentum (our SGD has none); the gated rule, which the reference
applies on NB201 only, is logged in every space (target op: ``selective_stop.default_target``).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from ..archparams import ArchParams
from ..discretize import derive
from ..errors import RobustDartsError
from . import register
from .base import Method


class SelectiveStopLog:
    """Mixin: log the selective-stop epoch each epoch and write ``selective_stop.json`` after the last one."""

    def end_epoch(self, search, record: dict) -> dict | None:
        from ..analysis.selective_stop import selective_stop_epoch, selective_stop_report, selective_stop_scores

        # end_epoch runs before the loop archives this epoch's α, so add it here.
        archive = {e: a for e, a in search.archive.items() if e >= 0 and e < search.epoch}
        archive[search.epoch] = search.arch.as_dict()
        try:
            stop = selective_stop_epoch(archive, search.space)
        except RobustDartsError:  # e.g. a space without the target op: nothing to log
            return None
        record["selective_stop_epoch"] = stop
        run_dir = getattr(search, "run_dir", None)
        if run_dir is not None and search.epoch == search.cfg.epochs - 1:
            epochs, scores = selective_stop_scores(archive, search.space)
            arch = ArchParams(search.space)
            arch.load_dict(archive[stop])
            genotype = derive(search.space, self.derive_weights(SimpleNamespace(arch=arch, epoch=stop, cfg=search.cfg,
                                                                                space=search.space)))
            report = {"epoch": stop, "epochs": epochs, "scores": scores,
                      "peak_epoch_per_op": selective_stop_report(archive, search.space),
                      "genotype": genotype.to_dict()}
            from ..runs import atomic_write_text
            atomic_write_text(run_dir.path / "selective_stop.json", json.dumps(report, indent=2))
        return None


@register
class ExDarts(SelectiveStopLog, Method):
    """The literal LR exchange (PCDEDD ``setup/exchange``, spec L §6.1): weights SGD at 3e-4 constant, arch Adam at
    0.025 constant (DARTS's initial weight lr; never annealed), arch wd 1e-3, 50 epochs. The reference ran it on
    NB201 with the AutoDL config (batch 256, wd 5e-4, Nesterov); the preset swaps the two learning rates only and
    keeps the DARTS defaults otherwise — set those with --set where you replicate NB201."""

    name = "ex-darts"
    paper = "Zhang & Ding, Delve into the Performance Degradation of DARTS (CIKM 2021, arXiv 2109.13466)"
    summary = "LR swap: weights 3e-4 constant, arch Adam 0.025 constant; logs the selective-stop epoch"
    defaults = dict(epochs=50, lr=3e-4, lr_min=3e-4, lr_schedule="constant", arch_lr=0.025, arch_weight_decay=1e-3)


@register
class SsDarts(SelectiveStopLog, Method):
    """The released SS-DARTS DARTS-space setting (``Selective-Stop:SS-DARTS/train_search.py``, spec L §6.1): weight
    lr 0.025 constant, 75 epochs, batch 80, arch Adam 1e-3 (β1 0.5), wd 1e-3; the genotype to keep is the
    selective-stop epoch's (``robustdarts derive RUN --policy selective-stop``)."""

    name = "ss-darts"
    paper = ExDarts.paper
    summary = "SS-DARTS: constant weight lr 0.025, 75 epochs, arch Adam 1e-3; selective stop from the α archive"
    defaults = dict(epochs=75, batch_size=80, lr=0.025, lr_min=0.025, lr_schedule="constant", arch_lr=1e-3,
                    arch_weight_decay=1e-3)


@register
class SsDartsNb201(SsDarts):
    """SS-DARTS on NAS-Bench-201 (``AutoDL-Projects_ss`` DARTS-V1 config, spec L §6.1): SGD 0.015 constant, wd 5e-4,
    batch 256, 50 epochs, arch Adam 1e-3 wd 1e-3 (no Nesterov here)."""

    name = "ss-darts-nb201"
    summary = "SS-DARTS NB201: SGD 0.015 constant, wd 5e-4, batch 256, 50 epochs, arch Adam 1e-3"
    defaults = dict(epochs=50, batch_size=256, lr=0.015, lr_min=0.015, lr_schedule="constant", weight_decay=5e-4,
                    arch_lr=1e-3, arch_weight_decay=1e-3)


__all__ = ["SelectiveStopLog", "ExDarts", "SsDarts", "SsDartsNb201"]
