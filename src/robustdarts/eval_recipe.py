"""Evaluation recipes chosen by the genotype's space: DARTS' (the TrainConfig defaults) or LHD's (spec L §2.2–§2.3).

LHD evaluates every searched architecture under four conditions (code chaoji90/LHD ``eval/<ds>/train.py`` and
``train_{ori,1M,3op,4out}.sh``): Base, 3ops and 4out differ in the discretization only (discretize.LHD_CONDITIONS)
and train C=36, 20 cells; 1M discretizes as Base but trains 25 cells whose width starts at 36 and grows by 2 until
the parameter count without the auxiliary head reaches 1.5M (the reference's loop: ``count_parameters_in_MB(model)
>= model_capacity``, i.e. count/1e6 >= 1.5). The rest of LHD's recipe: batch 64, 600 epochs, SGD 0.025 cosine to 0,
auxiliary 0.4, cutout 16 on CIFAR and none on SVHN (which also has no crop or flip), drop path p0 × |normal concat
set| ramped linearly (p0 per dataset and condition below), the adaptive drop path on CIFAR-100 and SVHN, and, as the
reference's logged metric, the best test accuracy over epochs 401–599 (reported beside our final-epoch accuracy,
labelled; it is selected on the test set, so never the number to select by). Its train.py fixes the seed to 0 for
every training (spec L §2.3), so the recipe does too: every architecture of an LHD benchmark trains from the same
initialization and batches, whatever the seed of the search that found it (``--seed`` or ``--set seed=`` still win).

``recipe_defaults`` is the part a space kind, a dataset and a condition decide; ``train_defaults`` completes it
with what only the genotype decides (the drop path's |normal concat| factor, the 1M width). ``bench plan`` shows
and costs the first and ``bench run`` trains with the second, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
from typing import Any

from .discretize import LHD_CONDITIONS
from .errors import RobustDartsError, unknown
from .layers import count_parameters

# Base drop-path probability p0 (before × |normal concat|) per condition and dataset (spec L §2.2 table).
LHD_DROP_PATH: dict[str, dict[str, float]] = {
    "base": {"cifar10": 0.01, "cifar100": 0.02, "svhn": 0.02},
    "3ops": {"cifar10": 0.01, "cifar100": 0.02, "svhn": 0.02},
    "4out": {"cifar10": 0.01, "cifar100": 0.02, "svhn": 0.02},
    "1m": {"cifar10": 0.015, "cifar100": 0.03, "svhn": 0.03},
}
# Adaptive drop path (eval/cifar100|svhn/train.py): after each epoch, while epoch <= 400 a train accuracy above the
# first threshold adds 5e-4 to the drop-path maximum; after epoch 400 one above the second adds 1e-4. As
# (last early epoch, early threshold, early step, late threshold, late step); train accuracy as a fraction.
LHD_ADAPTIVE_DROP_PATH: dict[str, tuple[float, ...]] = {
    "cifar100": (400, 0.75, 5e-4, 0.85, 1e-4),
    "svhn": (400, 0.97, 5e-4, 0.99, 1e-4),
}
LHD_1M = dict(layers=25, start=36, step=2, min_params=1.5e6)
LHD_REPORT_AFTER = 400  # the reference evaluates the test set at epochs > 400 and logs the best of those


@functools.lru_cache(maxsize=256)
def lhd_width(genotype, num_classes: int, in_channels: int = 3, layers: int = 25, start: int = 36, step: int = 2,
              min_params: float = 1.5e6) -> int:
    """The 1M condition's initial channels: from ``start``, +``step`` until the network of ``layers`` cells has at
    least ``min_params`` parameters without its auxiliary head (built on the meta device: no memory; a few seconds
    for 25 cells, hence cached: a grid's conditions and seeds often share a genotype)."""
    import torch

    from .evalnet import EvalNetwork

    C = start
    while True:
        with torch.device("meta"):
            net = EvalNetwork(genotype, C, layers, num_classes, in_channels, auxiliary=True)
        if count_parameters(net) / 1e6 >= min_params / 1e6:
            return C
        C += step
        if C > 4096:  # pragma: no cover - a genotype without parametric ops cannot grow
            raise RobustDartsError(f"the 1M condition found no width up to {C} with {min_params:g} parameters; "
                                   f"the genotype has too few parametric ops.")


def check_condition(genotype, condition: str | None) -> str:
    """The condition's canonical name; an unknown one, or one the genotype's space has not, is one sentence."""
    return condition_key(genotype.kind, condition)


def condition_key(kind: str, condition: str | None) -> str:
    """``check_condition`` for a kind of genotype (darts, lhd, nb201) before any genotype exists."""
    key = str(condition or "base").lower()
    if kind == "lhd":
        if key not in LHD_CONDITIONS:
            raise unknown("LHD condition", condition, LHD_CONDITIONS)
        return key
    if key != "base":
        raise RobustDartsError(f"condition {condition!r} is an LHD evaluation condition, but the genotype is of kind "
                               f"{kind!r}; drop --condition (its recipe is DARTS').")
    return key


LHD_STEPS = 5  # intermediate nodes of an LHD cell: the largest normal concat set


def recipe_defaults(kind: str, dataset: str, condition: str | None = "base") -> dict[str, Any]:
    """The evaluation recipe's TrainConfig fields that the genotype's kind, the dataset and the condition decide.
    The two an LHD genotype decides hold their bounds here: the drop path at p0 × 5 (all five nodes concatenated;
    a genotype's own p0 × |normal concat| is at most that) and the 1M width at its start, 36 (it only grows)."""
    key = condition_key(kind, condition)
    if kind != "lhd":
        return {"condition": key}
    from .data import dataset_info

    name = dataset_info(dataset).name
    p0 = LHD_DROP_PATH[key].get(name, LHD_DROP_PATH[key]["cifar10"])
    fields: dict[str, Any] = dict(condition=key, seed=0, epochs=600, batch_size=64, lr=0.025, lr_min=0.0,
                                  weight_decay=3e-4, auxiliary=True, auxiliary_weight=0.4, init_channels=36, layers=20,
                                  drop_path=p0 * LHD_STEPS, report_best_after=LHD_REPORT_AFTER,
                                  adaptive_drop_path=LHD_ADAPTIVE_DROP_PATH.get(name))
    fields.update(cutout=0, augment=False) if name == "svhn" else fields.update(cutout=16, augment=True)
    if key == "1m":
        fields.update(layers=LHD_1M["layers"], init_channels=LHD_1M["start"])
    return fields


def genotype_fields(kind: str, condition: str | None = "base") -> tuple[str, ...]:
    """The fields of ``recipe_defaults`` that ``train_defaults`` replaces with the genotype's own values."""
    if kind != "lhd":
        return ()
    return ("drop_path", "init_channels") if condition_key(kind, condition) == "1m" else ("drop_path",)


def train_defaults(genotype, dataset: str, condition: str | None = "base") -> dict[str, Any]:
    """TrainConfig fields of the evaluation recipe for ``genotype`` on ``dataset`` under ``condition`` (layered under
    the sizes preset and the user's values). DARTS-kind and NB201 genotypes keep the TrainConfig defaults."""
    key = check_condition(genotype, condition)
    fields = recipe_defaults(genotype.kind, dataset, key)
    if genotype.kind != "lhd":
        return fields
    from .data import dataset_info

    info = dataset_info(dataset)
    p0 = LHD_DROP_PATH[key].get(info.name, LHD_DROP_PATH[key]["cifar10"])
    fields["drop_path"] = p0 * len(genotype.normal_output["concat"])
    if key == "1m":
        fields["init_channels"] = lhd_width(genotype, info.num_classes, info.channels, LHD_1M["layers"],
                                            LHD_1M["start"], LHD_1M["step"], LHD_1M["min_params"])
    return fields


__all__ = ["LHD_DROP_PATH", "LHD_ADAPTIVE_DROP_PATH", "LHD_1M", "LHD_REPORT_AFTER", "lhd_width", "check_condition",
           "condition_key", "recipe_defaults", "genotype_fields", "train_defaults"]
