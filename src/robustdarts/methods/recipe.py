"""The method interface: a recipe is a small value that the search loop reads; it never receives the loop.

A recipe is made of pieces, each a plain function of the tensors it needs and of a ``StepContext`` (epoch and
step numbers), in the order the loop calls them (search/loop.py)::

    relax(alphas, betas, ctx, purpose)        -> mixing weights  (purpose: arch | weight | derive | eval)
    arch_grad                                   first | second (unrolled) | mixed (λ: cfg.mixed_lambda) | single | none
    arch_penalty(alphas, betas, ctx)          -> a regularizer of α added to the arch loss, or None
    arch_update                                 adam | eg (exponentiated gradient)
    weight_backward(supernet, forward, x, y, weights, ctx) -> (loss, logits)   fills the weights' .grad
    drop_prob / cutout_prob / extra_scale / weight_decay (ctx)                 per-epoch schedules
    updates_arch(ctx) -> bool                   arch steps this epoch (PC-DARTS' warmup)
    begin_epoch(ctx, alphas), end_epoch(ctx, EpochEnd) -> EpochAction            callbacks
    state_dict() / load_state_dict()            the recipe's own state, plain data saved by the loop

The defaults are plain first-order DARTS (Liu et al., ICLR 2019), so a family overrides only what its paper
changes; a preset (methods/presets.py) is a family plus typed options plus per-space defaults. One function,
``genotype_of``, turns archived α/β values into a genotype for the loop, ``derive``, DARTS-ES/ADA and selective
stop alike.
"""

from __future__ import annotations

import dataclasses
import keyword
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Range, coerce_field
from ..discretize import derive
from ..errors import RobustDartsError, unknown
from ..relax import detached, mixing_weights
from ..spaces import Space

Purpose = Literal["arch", "weight", "derive", "eval"]
Weights = dict[str, Any]
ARCH_GRADS = ("first", "second", "mixed", "single", "none")
CUTOUT_RULES = ("always", "with-drop-path", "ramp")


@dataclass(frozen=True)
class StepContext:
    """What a recipe sees of the loop at one step: numbers, never the loop itself. ``StepContext(epoch, step,
    epochs, steps_per_epoch)``; ``ramp`` is epoch / (epochs - 1), from 0 at the first epoch to 1 at the last."""

    epoch: int
    step: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1

    @property
    def ramp(self) -> float:
        """e/(E − 1): 0 at the first epoch, 1 at the last (RobustDARTS' drop path, SDARTS' cutout)."""
        return self.epoch / max(self.epochs - 1, 1)


@dataclass
class EpochEnd:
    """What a recipe's ``end_epoch`` may read: this epoch's metrics record (it may add fields), the α/β archive
    (every epoch so far, this one included), the genotype of any archived values, and whether this is the last
    epoch of the run."""

    record: dict
    archive: Mapping[int, dict[str, torch.Tensor]]
    genotype_of: Callable[[Mapping[str, torch.Tensor], int], Any]
    last: bool


@dataclass
class EpochAction:
    """What the loop does after ``end_epoch``: go on (default), stop, or roll back to an epoch's checkpoint; write
    ``files`` (name -> text) into the run directory atomically; replace the run's genotype."""

    stop: bool = False
    rollback: int | None = None
    reason: str = ""
    genotype: Any = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NoOptions:
    """A family without options of its own."""


def split_values(values: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Archive values ('alpha/normal', 'beta/normal', 'edge/normal' ...) as the (alphas, betas) dicts the pieces
    take (``ArchParams.relax_inputs``' layout)."""
    alphas = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("alpha/")}
    betas = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("beta/")}
    betas.update({f"{k.split('/', 1)[1]}_edge": v for k, v in values.items() if k.startswith("edge/")})
    return alphas, betas


class Recipe:
    """First-order DARTS, piece by piece; a method family subclasses this and overrides what its paper changes.

    ``Options`` is the family's typed options dataclass; ``self.opts`` is its instance for this run (built from
    ``cfg.method_options``, which the preset table resolves completely before a run starts).

    ``Recipe(cfg, space)`` takes the resolved ``SearchConfig`` and the ``Space``. The loop reads it through a few
    methods, each handed a ``StepContext``: ``relax(alphas, betas, ctx, purpose)`` returns the mixing weights,
    ``arch_penalty`` a term added to the α loss (or None), ``weight_backward`` computes the weight gradients,
    ``drop_prob`` / ``cutout_prob`` / ``weight_decay`` the step's values, and ``end_epoch`` an ``EpochAction``
    (continue, stop, roll back). ``state_dict``/``load_state_dict`` hold its plain-data state for checkpoints.
    """

    Options: ClassVar[type] = NoOptions
    arch_update: ClassVar[str] = "adam"  # adam | eg
    cutout_rule: ClassVar[str] = "always"  # the DARTS code applies search cutout, when asked for, to every batch
    trains_weights: ClassVar[bool] = True
    edge_betas: ClassVar[bool] = False  # per-edge logits in ArchParams (PC-DARTS' edge normalization)
    # Whether the reference computes an op whose mixing weight is 0 (as 0·op(x): DARTS and every dense or sparse
    # mixture), so that its BN statistics move and its random draws happen; False where it runs only the sampled op
    # (GDAS). The supernet's zero-weight skip follows it (supernet._keep_current), so the skip changes only time.
    computes_zero_ops: ClassVar[bool] = True
    rollback_depth: ClassVar[int] = 0  # per-epoch checkpoints a recipe may roll back to (needs a run directory)
    # An un-weighted extra op on every mixed edge (DARTS-'s auxiliary skip): (C, stride) -> module, or None.
    edge_extra: ClassVar[Callable[[int, int], nn.Module] | None] = None

    def __init__(self, cfg, space: Space):
        self.cfg, self.space = cfg, space
        self.opts = make_options(self.Options, cfg.method_options, cfg.method)
        if cfg.arch_order not in ARCH_GRADS:
            raise unknown("arch_order", cfg.arch_order, ARCH_GRADS)
        self.arch_grad: str = cfg.arch_order
        if cfg.skipped_statistics == "stale" and cfg.skip_zero_ops and self.computes_zero_ops:
            # λ_max in eval mode: per epoch (hessian_every) or at the end (a bench grid's measure) — the collapse
            # signal methods are compared by, and the one DARTS-ES/ADA act on.
            reader = self.reads_statistics() or ("λ_max with hessian_bn_mode: eval"
                                                 if cfg.hessian_bn_mode == "eval" else None)
            if reader is not None:
                raise RobustDartsError(f"skipped_statistics=stale leaves skipped ops' BN statistics stale, and "
                                       f"{reader} reads them during the search; use skipped_statistics=current.")

    def reads_statistics(self) -> str | None:
        """What of this method's search reads the supernet's BN running statistics (an eval-mode pass that steers
        α or the weights), or None: ``skipped_statistics=stale`` is refused there, as it would change the search."""
        return None

    # --- relaxation ---------------------------------------------------------------------------------------------
    def tau(self, ctx: StepContext) -> float:
        """Temperature of this step (the same for its arch and its weight update)."""
        return self.cfg.tau

    def relax(self, alphas: Mapping[str, torch.Tensor], betas: Mapping[str, torch.Tensor], ctx: StepContext,
              purpose: Purpose) -> Weights:
        """Mixing weights from the architecture values, with a graph to them (the loop detaches where it needs no
        α gradient). arch/weight: softmax at this step's τ; derive/eval: softmax at τ = 1."""
        tau = self.tau(ctx) if purpose in ("arch", "weight") else 1.0
        return mixing_weights(self.space, alphas, betas, tau)

    # --- the arch step ------------------------------------------------------------------------------------------
    def arch_penalty(self, alphas: Mapping[str, torch.Tensor], betas: Mapping[str, torch.Tensor],
                     ctx: StepContext) -> torch.Tensor | None:
        """A regularizer of α added to the validation loss of a first-order arch step (β-DARTS, DrNAS' KL)."""
        return None

    def updates_arch(self, ctx: StepContext) -> bool:
        """Whether this epoch takes arch steps (PC-DARTS: only after its warmup)."""
        return True

    def init_arch(self, alphas: Mapping[str, nn.Parameter], betas: Mapping[str, nn.Parameter]) -> None:
        """Set the initial architecture in place (default: the 1e-3·N(0, 1) of ArchParams)."""

    # --- the weight step ----------------------------------------------------------------------------------------
    def weight_backward(self, supernet: nn.Module, forward, x, y, weights: Weights,
                        ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the supernet's weight gradients for this step; returns (loss, logits), detached."""
        logits = forward(x, weights)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()

    # --- per-epoch schedules --------------------------------------------------------------------------------------
    def drop_prob(self, ctx: StepContext) -> float:
        """Search-time drop path on every mixed-edge output, ramped linearly (R-DARTS(DP))."""
        return self.cfg.drop_path * ctx.ramp

    def cutout_prob(self, ctx: StepContext) -> float:
        """Probability that a search batch gets cutout (when ``cutout`` > 0), by the family's own code:
        "always" (DARTS' code: every batch), "with-drop-path" (RobustDARTS: off without drop path, else ramped
        e/(E−1) like it), "ramp" (SDARTS, Λ-DARTS, β-DARTS: e/(E−1))."""
        if self.cutout_rule == "always":
            return 1.0
        if self.cutout_rule == "with-drop-path" and self.cfg.drop_path <= 0:
            return 0.0
        return ctx.ramp

    def extra_scale(self, ctx: StepContext) -> float:
        """Scale of ``edge_extra`` this epoch (DARTS-: 1 − e/E)."""
        return 0.0

    def weight_decay(self, ctx: StepContext) -> float:
        """The inner SGD's weight decay this epoch (DARTS-ADA raises it)."""
        return self.cfg.weight_decay

    # --- callbacks ------------------------------------------------------------------------------------------------
    def begin_epoch(self, ctx: StepContext, alphas: Mapping[str, torch.Tensor]) -> None:
        pass

    def end_epoch(self, ctx: StepContext, end: EpochEnd) -> EpochAction:
        return EpochAction()

    # --- state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# Typed options and the one derivation path

def option_name(field_name: str) -> str:
    """The user-facing name of an options field: a Python keyword is spelled with a trailing _ in the dataclass
    (``lambda_``) and without it everywhere else (``--set method.lambda=0.25``)."""
    bare = field_name.rstrip("_")
    return bare if keyword.iskeyword(bare) else field_name


def make_options(options_cls: type, values: Mapping[str, Any], method: str):
    """An instance of a family's options dataclass from plain values, each coerced to its declared type and
    checked against the class's ``RANGES`` (option → ``config.Range``); an unknown option or a value out of range
    is one sentence naming it."""
    fields = {option_name(f.name): f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RobustDartsError(f"method {method!r} has no option {unknown[0]!r}; its options are: "
                               f"{', '.join(fields) or 'none'}.")
    typed = {fields[k]: coerce_field(options_cls, fields[k], v, what=f"method {method!r} option")
             for k, v in values.items()}
    ranges: Mapping[str, Range] = getattr(options_cls, "RANGES", {})
    for name, value in typed.items():
        allowed = ranges.get(name)
        for x in value if isinstance(value, tuple) else (value,):  # a ladder of values: each one
            if allowed is not None and isinstance(x, (int, float)) and not isinstance(x, bool) and x not in allowed:
                raise RobustDartsError(f"method {method!r} option {option_name(name)!r} is {x!r}, but must be "
                                       f"{allowed}.")
    return options_cls(**typed)


def options_dict(opts) -> dict[str, Any]:
    """Plain {option: value} of an options instance, by user-facing names."""
    return {option_name(f.name): getattr(opts, f.name) for f in dataclasses.fields(opts)}


def derive_weights(recipe: Recipe, values: Mapping[str, torch.Tensor], epoch: int) -> Weights:
    """The weights the discretization reads for archived values: the recipe's 'derive' relaxation, no graph."""
    alphas, betas = split_values(values)
    ctx = StepContext(epoch=epoch, epochs=recipe.cfg.epochs)
    with torch.no_grad():
        return detached(recipe.relax(alphas, betas, ctx, "derive"))


def genotype_of(values: Mapping[str, torch.Tensor], recipe: Recipe, space: Space, epoch: int,
                policy: str | None = None, **options):
    """The genotype of archived α/β ``values`` at ``epoch``: the recipe's derivation weights, discretized by
    ``policy`` (default: the space's own rule). The one way a genotype is derived, everywhere."""
    return derive(space, derive_weights(recipe, values, epoch), policy, **options)
