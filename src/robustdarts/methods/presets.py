"""Every method preset as data: a recipe family, its options, and its paper's settings per kind of space.

A preset's config settings are layered, later winning: SearchConfig's defaults (DARTS, spec D §1.4) < the space
kind's shared recipe (``SPACE_RECIPES``; per dataset ``SPACE_DATASET_RECIPES``) < the preset's ``all`` entry (its
algorithm: arch order, regularizer) < the preset's entry for the space kind < the sizes preset (``--preset tiny``)
< a config file < flags < ``--set``.
Kinds: ``darts`` (the DARTS spaces), ``s1s4`` (RobustDARTS' S1–S4; a preset without an ``s1s4`` entry uses its
``darts`` entry there), ``lhd``, ``nb201``. The ``method`` key of an entry holds option values.

Where a method's own code ran on a kind of space, its entry cites that code; where it did not, the kind's shared
recipe applies (LHD ran every baseline with its one recipe, and NAS-Bench-201 searches in this field run on
AutoDL-Projects' DARTS-V1 configuration), so methods are compared under one protocol per space.
Spec references: "D" = specs/darts-rdarts-lambda-pt-sdarts.md, "L" = specs/lhd-and-sparsity.md.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..errors import unknown
from .baselines import DrNas, Gaea, Gdas, PcDarts, SurgeNas
from .darts import Darts, RandomArch, RobustDarts
from .lambda_darts import LambdaDarts
from .lrswap import SelectiveStopDarts
from .rdarts import DartsADA, DartsES
from .recipe import Recipe
from .regularized import BetaDarts, DartsMinus
from .sdarts import Sdarts
from .sparse import SmallTemp, SpDarts

KINDS = ("darts", "s1s4", "lhd", "nb201")

# LHD's search recipe shared by its baselines (spec L §2.4, search/DARTS/train_search_darts.py): 50 epochs, batch
# 176, SGD 0.025 cosine to 3e-4, arch Adam 3e-4 (β1 0.5), no arch weight decay, first order.
LHD_RECIPE: dict[str, Any] = dict(epochs=50, batch_size=176, lr=0.025, lr_min=3e-4, lr_schedule="cosine",
                                  arch_lr=3e-4, arch_beta1=0.5, arch_beta2=0.999, arch_weight_decay=0.0)

# AutoDL-Projects DARTS-V1 on NAS-Bench-201 (configs/nas-benchmark/algos/DARTS.config, scripts-search/algos/
# DARTS-V1.sh): 5 cells per stage (15 search cells), SGD 0.025 cosine to 0.001 with Nesterov, wd 5e-4, batch 64,
# 50 epochs, arch Adam 3e-4 wd 1e-3, and the weight step before the arch step.
NB201_RECIPE: dict[str, Any] = dict(layers=5, epochs=50, batch_size=64, lr=0.025, lr_min=0.001, lr_schedule="cosine",
                                    weight_decay=5e-4, nesterov=True, step_order="weight-first", arch_lr=3e-4,
                                    arch_weight_decay=1e-3)

SPACE_RECIPES: dict[str, dict[str, Any]] = {"darts": {}, "s1s4": {}, "lhd": LHD_RECIPE, "nb201": NB201_RECIPE}
# The kind's shared recipe per dataset (canonical names), layered just over SPACE_RECIPES, so that every search of
# the kind on that dataset (CLI, config file, bench grid) gets it unless the user sets the field. LHD's
# search/preproc.py gives CIFAR-10/100 random crop and flip but SVHN no augmentation at all (spec L §2.1).
SPACE_DATASET_RECIPES: dict[str, dict[str, dict[str, Any]]] = {"lhd": {"svhn": dict(augment=False)}}

# SP-DARTS, per code (spec L §4): arch Adam 3e-4 (β1 0.5) without weight decay and a constant weight lr in each.
_SP_CONSTANT = dict(epochs=50, lr_schedule="constant", arch_lr=3e-4, arch_beta1=0.5, arch_beta2=0.999,
                    arch_weight_decay=0.0)
SP_DARTS_CODE = dict(_SP_CONSTANT, batch_size=80, lr=0.05, lr_min=0.05,  # SP-DARTS/train_search_mf.py (§4.2)
                     method=dict(variant="darts"))
SP_DARTS_LHD = dict(_SP_CONSTANT, batch_size=176, lr=0.025, lr_min=0.025,  # LHD:search/SP-DARTS (§4.1)
                    method=dict(variant="lhd"))
# SmoothDARTS/sota/cnnmul/train_search.py (§4.3); its --arch_weight_decay default is 0.0 (line 59).
SP_DARTS_S1S4 = dict(_SP_CONSTANT, batch_size=128, lr=0.025, lr_min=0.025, method=dict(variant="s1-s4"))
# AutoDL-Projects_sp/exps/algos/DARTS-V1-{10,100}.py (§4.3): SGD 0.05 constant, Nesterov, wd 5e-4, batch 256,
# weight step first.
SP_DARTS_NB201 = dict(_SP_CONSTANT, batch_size=256, lr=0.05, lr_min=0.05, weight_decay=5e-4, nesterov=True,
                      step_order="weight-first", method=dict(variant="nb201-10"))
# PCDEDD-DARTS train_search_cyc.py / train_search_pl.py (spec L §5.3): batch 80, constant weight lr 0.025,
# arch Adam 3e-4 without weight decay, 50 epochs.
SMALL_TEMP_CODE = dict(epochs=50, batch_size=80, lr=0.025, lr_min=0.025, lr_schedule="constant", arch_lr=3e-4,
                       arch_beta1=0.5, arch_beta2=0.999, arch_weight_decay=0.0)
# Selective-Stop AutoDL-Projects_ss DARTS-V1 (spec L §6.1): SGD 0.015 constant, wd 5e-4, batch 256, 50 epochs,
# arch Adam 1e-3 wd 1e-3 (on AutoDL's Nesterov SGD, weight step first).
SS_DARTS_NB201 = dict(epochs=50, batch_size=256, lr=0.015, lr_min=0.015, lr_schedule="constant", weight_decay=5e-4,
                      nesterov=True, step_order="weight-first", arch_lr=1e-3, arch_weight_decay=1e-3)

_RDARTS = "Zela et al., Understanding and Robustifying Differentiable Architecture Search (ICLR 2020)"
_SP = "Zhang & Ding, Robustifying DARTS by Eliminating Information Bypass Leakage (arXiv 2306.06858)"
_SMALL = "Zhang & Ding, Small Temperature is All You Need for Differentiable Architecture Search (arXiv 2306.06855)"
_LRSWAP = "Zhang & Ding, Delve into the Performance Degradation of DARTS (CIKM 2021, arXiv 2109.13466)"
_SDARTS = "Chen & Hsieh, Stabilizing DARTS via Perturbation-based Regularization (ICML 2020)"


@dataclass(frozen=True)
class Preset:
    """A named method: a recipe family, and its settings per space kind (``all`` applies on every kind).

    ``Preset(name, family, paper, summary, defaults)``: ``family`` is a ``Recipe`` subclass, ``defaults`` maps a
    space kind (darts, s1s4, lhd, nb201, or all) to config fields, with the family's options under ``"method"``.
    A plugin exposes one (entry point ``robustdarts.methods`` or ``--method MODULE:ATTRIBUTE``);
    ``settings(kind)`` returns the (config fields, options) it sets on a kind of space.
    """

    name: str
    family: type[Recipe]
    paper: str
    summary: str
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def entry(self, kind: str) -> dict[str, Any]:
        if kind == "s1s4" and "s1s4" not in self.defaults:
            kind = "darts"
        return self.defaults.get(kind, {})

    def settings(self, kind: str, dataset: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config fields, option values) of this preset on a space kind (and ``dataset``, a canonical name, where
        the kind's recipe differs per dataset), before sizes and the user's choices."""
        fields: dict[str, Any] = dict(SPACE_RECIPES[kind])
        fields.update(SPACE_DATASET_RECIPES.get(kind, {}).get(dataset or "", {}))
        options: dict[str, Any] = {}
        for entry in (self.defaults.get("all", {}), self.entry(kind)):
            fields.update({k: v for k, v in entry.items() if k != "method"})
            options.update(entry.get("method", {}))
        return fields, options


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _presets(
    # --- DARTS and RobustDARTS (spec D §1, §2) ----------------------------------------------------------------------
    Preset("darts", Darts, "Liu et al., DARTS: Differentiable Architecture Search (ICLR 2019)",
           "first-order DARTS: alternating α step on a val batch, w step on a train batch"),
    Preset("darts-2nd", Darts, "Liu et al., DARTS: Differentiable Architecture Search (ICLR 2019)",
           "second-order (unrolled) DARTS with a finite-difference Hessian-vector product",
           {"all": dict(arch_order="second")}),
    Preset("random", RandomArch,
           "Li & Talwalkar, Random Search and Reproducibility for NAS (UAI 2019); LHD random baseline",
           "no training: α, β ~ 0.1·N(0,1) from the seed, discretized like any other method",
           {"all": dict(arch_order="none", epochs=1)}),
    # Every scripted RobustDARTS search is second order (scripts/*.sh --unrolled).
    Preset("rdarts-l2", RobustDarts, f"{_RDARTS}, R-DARTS(L2)",
           "second-order DARTS with a larger weight decay (grid 3e-4·3^k; default 27e-4)",
           {"all": dict(arch_order="second", weight_decay=27e-4)}),
    Preset("rdarts-dp", RobustDarts, f"{_RDARTS}, R-DARTS(DP)",
           "second-order DARTS with ramped search-time drop path (grid 0.2/0.4/0.6; default 0.4) + ramped cutout",
           {"all": dict(arch_order="second", drop_path=0.4, cutout=16)}),
    Preset("darts-es", DartsES, f"{_RDARTS}, DARTS-ES",
           "second-order DARTS stopped early when the dominant α-Hessian eigenvalue grows (stop-epoch genotype)",
           {"all": dict(arch_order="second", hessian_every=2)}),
    Preset("darts-ada", DartsADA, f"{_RDARTS}, DARTS-ADA",
           "DARTS-ES trigger → roll back to the stop epoch and raise L2 (or drop path) ×10, up to 3e-2",
           {"all": dict(arch_order="second", hessian_every=2, keep_checkpoints=13)}),
    # --- SDARTS (spec D §5), Λ-DARTS (spec D §3), DARTS-, β-DARTS (spec L §3 rows 10-11) ---------------------------
    Preset("sdarts-rs", Sdarts, f"{_SDARTS}, SDARTS-RS",
           "weight step on randomly perturbed probabilities (uniform noise, ε 0.03→0.3, simplex clip)",
           {"all": dict(method=dict(attack="random"))}),
    Preset("sdarts-adv", Sdarts, f"{_SDARTS}, SDARTS-ADV",
           "weight step on adversarially perturbed probabilities (7-step L∞ PGD, ε 0.03→0.3)",
           {"all": dict(method=dict(attack="pgd"))}),
    Preset("lambda-darts", LambdaDarts,
           "Movahedi et al., Λ-DARTS: Mitigating Performance Collapse by Harmonizing Operation Selection among "
           "Cells (ICLR 2023)",
           "DARTS + weight-step regularizer aligning per-cell ∂L/∂P (corr | signcorr), finite differences",
           # NAS-Bench201/scripts-search/algos/DARTS-V1.sh + configs/nas-benchmark/algos/DARTS.config (spec D §3.4):
           # 100 epochs, wd 3e-4 without Nesterov, arch lr 1e-4, λ 0.25, ε₀ 1e-4, all 15 cells (all "normal" here).
           {"nb201": dict(epochs=100, weight_decay=3e-4, nesterov=False, arch_lr=1e-4,
                          method=dict(**{"lambda": 0.25}, epsilon_0=1e-4))}),
    Preset("darts-minus", DartsMinus,
           "Chu et al., DARTS-: Robustly Stepping out of Performance Collapse Without Indicators (ICLR 2021)",
           "DARTS + an un-weighted auxiliary skip on every edge, scaled by β_e = 1 − e/E (linear decay)"),
    Preset("beta-darts", BetaDarts,
           "Ye et al., β-DARTS: Beta-Decay Regularization for Differentiable Architecture Search (CVPR 2022)",
           "DARTS + λ_e·mean logsumexp(α) on the arch loss (β-decay), λ_e = 0.5·e",
           # LHD: batch 128 (spec L §3 row 11); NB201: 100 epochs on AutoDL's DARTS-V1 recipe.
           {"lhd": dict(batch_size=128), "nb201": dict(epochs=100)}),
    # --- LHD's other baselines (spec L §3 rows 2-6) --------------------------------------------------------------------
    Preset("gdas", Gdas,
           "Dong & Yang, Searching for a Robust Neural Architecture in Four GPU Hours (CVPR 2019); LHD code",
           "hard Gumbel sample per edge (LHD: per node), straight-through, τ 10 → 0.1; unsampled ops skipped",
           {"lhd": dict(batch_size=256, lr=0.05)}),
    Preset("drnas", DrNas, "Chen et al., DrNAS: Dirichlet Neural Architecture Search (ICLR 2021); LHD code",
           "Dirichlet(elu(α)+1) samples per edge row as mixing weights; optional KL anchor"),
    Preset("milenas", Darts, "He et al., MiLeNAS: Efficient NAS via Mixed-Level Reformulation (CVPR 2020); LHD code",
           "mixed-level: arch gradient ∇α L_val + λ·∇α L_train",
           {"all": dict(arch_order="mixed", mixed_lambda=1.0)}),
    Preset("gaea", Gaea, "Li et al., Geometry-Aware Gradient Algorithms for NAS (ICLR 2021); LHD code",
           "exponentiated-gradient α on the simplex (η 0.1), α fed directly as mixing weights",
           {"all": dict(arch_lr=0.1)}),
    Preset("gaea-erm", Gaea, "Li et al., Geometry-Aware Gradient Algorithms for NAS (ICLR 2021); LHD code",
           "single-level GAEA: one train-batch backward updates weights (SGD) and α (EG)",
           {"all": dict(arch_lr=0.1, arch_order="single"), "lhd": dict(weights_on_all_data=True)}),
    # yuhuixu1993/PC-DARTS train_search.py: K 4, batch 256, SGD 0.1 cosine to 0, arch Adam 6e-4 wd 1e-3, arch steps
    # from epoch 15. LHD (row 7): batch 576, the same lrs, no edge normalization. NB201: the AutoDL recipe with K 4.
    Preset("pc-darts", PcDarts,
           "Xu et al., PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search (ICLR 2020)",
           "partial channels (ops on C/4, the rest bypassed, shuffled) + edge normalization; arch steps from epoch 15",
           {"all": dict(partial_channels=4),
            "darts": dict(batch_size=256, lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_weight_decay=1e-3),
            "lhd": dict(batch_size=576, lr=0.1, lr_min=0.0, arch_lr=6e-4, method=dict(edge_norm=False))}),
    Preset("surgenas", SurgeNas, "SurgeNAS (LHD baseline, chaoji90/LHD search/SurgeNAS)",
           "single level; DARTS-'s auxiliary skip inside every op, weighted by α, β 1 → 0.02",
           {"all": dict(arch_order="single"), "lhd": dict(batch_size=160, weights_on_all_data=True)}),
    # --- SP-DARTS (spec L §4): the code of each space; the named variants pin one code on every space ------------------
    Preset("sp-darts", SpDarts, _SP,
           "mixed sparsity: per step τ_s with probability C_e else 10·τ_s, same τ for the arch and weight step",
           {"darts": SP_DARTS_CODE, "s1s4": SP_DARTS_S1S4, "lhd": SP_DARTS_LHD, "nb201": SP_DARTS_NB201}),
    Preset("sp-darts-lhd", SpDarts, _SP,
           "SP-DARTS with LHD's constants: warmup 5 at τ=10, τ_s=1.5e-3, C_e=(e−4)/45, batch 176",
           {"all": SP_DARTS_LHD}),
    Preset("sp-darts-s1s4", SpDarts, _SP,
           "SP-DARTS on S1-S4: no warmup, τ_s=3e-4, C from 0.8 (+0.3/50 per epoch), batch 128",
           {"all": SP_DARTS_S1S4}),
    Preset("sp-darts-nb201", SpDarts, _SP,
           "SP-DARTS NB201 '-10': τ_s=1.1e-3, τ_d=11·τ_s, C += 1/49, SGD 0.05 constant, batch 256",
           {"all": SP_DARTS_NB201}),
    Preset("sp-darts-nb201-100", SpDarts, _SP,
           "SP-DARTS NB201 '-100': τ_s=1.3e-3, C += 0.9/49 until epoch 45, then τ_s=6e-4 with C frozen",
           {"all": dict(SP_DARTS_NB201, method=dict(variant="nb201-100"))}),
    # --- Small temperature (spec L §5.3): PCDEDD's DARTS-space recipe --------------------------------------------------
    Preset("small-temp-exp", SmallTemp, _SMALL,
           "small-τ softmax with the surrogate gradient on every cell, exponential τ schedule 1 → 1e-3",
           {"all": dict(method=dict(schedule="exp")), "darts": SMALL_TEMP_CODE}),
    Preset("small-temp-cyclic", SmallTemp, _SMALL,
           "small-τ softmax with the surrogate gradient, PCDEDD cyclic log-decay τ schedule",
           {"all": dict(method=dict(schedule="cyclic")), "darts": SMALL_TEMP_CODE}),
    Preset("small-temp-entropy", SmallTemp, _SMALL,
           "small-τ softmax with the surrogate gradient, PCDEDD entropy-adaptive τ schedule",
           {"all": dict(method=dict(schedule="entropy")), "darts": SMALL_TEMP_CODE}),
    # --- LR swap and SS-DARTS (spec L §6.1) -------------------------------------------------------------------------------
    # PCDEDD setup/exchange: weights 3e-4 constant, arch Adam 0.025 constant (run on NB201's AutoDL recipe).
    Preset("ex-darts", SelectiveStopDarts, _LRSWAP,
           "LR swap: weights 3e-4 constant, arch Adam 0.025 constant; logs the selective-stop epoch",
           {"all": dict(epochs=50, lr=3e-4, lr_min=3e-4, lr_schedule="constant", arch_lr=0.025,
                        arch_weight_decay=1e-3)}),
    # Selective-Stop SS-DARTS/train_search.py: 75 epochs, batch 80, weight lr 0.025 constant, arch Adam 1e-3 wd 1e-3.
    Preset("ss-darts", SelectiveStopDarts, _LRSWAP,
           "SS-DARTS: constant weight lr 0.025, 75 epochs, arch Adam 1e-3; selective stop from the α archive",
           {"darts": dict(epochs=75, batch_size=80, lr=0.025, lr_min=0.025, lr_schedule="constant", arch_lr=1e-3,
                          arch_weight_decay=1e-3),
            "nb201": SS_DARTS_NB201}),
    Preset("ss-darts-nb201", SelectiveStopDarts, _LRSWAP,
           "SS-DARTS NB201: SGD 0.015 constant, wd 5e-4, batch 256, 50 epochs, arch Adam 1e-3",
           {"all": SS_DARTS_NB201}),
)


def recipe_kind(space) -> str:
    """The kind of space a recipe is chosen by: darts, s1s4, lhd or nb201."""
    if space.kind in ("lhd", "nb201"):
        return space.kind
    return "s1s4" if space.name in ("s1", "s2", "s3", "s4") else "darts"


# The presets shipped here; plugins (plugins.py) add rows to PRESETS but may not replace these.
BUILTIN_PRESETS: dict[str, Preset] = dict(PRESETS)


def get_preset(name: str) -> Preset:
    """A preset of this table (built-ins, and the rows plugins added); ``methods.get_preset`` also loads plugins."""
    if name not in PRESETS:
        raise unknown("method", name, PRESETS)
    return PRESETS[name]


def list_methods(pattern: str | None = None) -> list[str]:
    """Preset names, optionally filtered by a shell pattern (``'sp-*'``)."""
    return sorted(n for n in PRESETS if pattern is None or fnmatch.fnmatch(n, pattern))


__all__ = ["KINDS", "LHD_RECIPE", "NB201_RECIPE", "SPACE_RECIPES", "SPACE_DATASET_RECIPES", "Preset", "PRESETS",
           "BUILTIN_PRESETS", "recipe_kind", "get_preset", "list_methods"]
