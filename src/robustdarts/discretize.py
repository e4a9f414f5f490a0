"""Discretization: mixing weights -> ``Genotype``, by a named policy.

``derive(space, weights, policy=None, **options)`` takes the *mixing weights* (relax.py: softmax already applied;
node-joint for LHD, plus ``<cell>_sum`` and ``<cell>_cat`` for LHD outputs) and returns a ``Genotype``. Policies
live in ``POLICIES``; a new one (DARTS-PT, SP-DARTS rounding, ...) is a function registered with
``@register_policy(name, kinds)`` beside the first three here:

- ``darts`` (spec D §1.6), the default for darts-kind spaces;
- ``nb201`` (spec D §3.4), the default for nb201;
- ``lhd`` with conditions base / 3ops / 4out / 1m (spec L §1.6, §2.2), the default for lhd.

Every ranking here is a stable sort on the weight, descending, so ties always go to the lower index and the same
weights give the same genotype (the reference's numpy argsort is not stable, spec L §8 item 14).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from .errors import RobustDartsError, unknown
from .genotype import Genotype
from .spaces.registry import Space, get_space


@dataclass(frozen=True)
class Policy:
    name: str
    derive: Callable[..., Genotype]  # (space, weights, **options) -> Genotype
    kinds: tuple[str, ...]  # space kinds it applies to
    description: str


POLICIES: dict[str, Policy] = {}
DEFAULT_POLICY = {"darts": "darts", "lhd": "lhd", "nb201": "nb201"}


def register_policy(name: str, kinds: Sequence[str], description: str = ""):
    """Decorator: register ``fn(space, weights, **options) -> Genotype`` as discretization policy ``name``."""

    def add(fn: Callable[..., Genotype]) -> Callable[..., Genotype]:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        POLICIES[name] = Policy(name, fn, tuple(kinds), doc)
        return fn

    return add


def derive(space: Space | str, weights: Mapping[str, torch.Tensor], policy: str | None = None,
           **options) -> Genotype:
    """The genotype of ``weights`` under ``policy`` (default: the space kind's own rule)."""
    space = get_space(space)
    name = policy or DEFAULT_POLICY[space.kind]
    if name not in POLICIES:
        raise unknown("discretization policy", name, POLICIES)
    chosen = POLICIES[name]
    if space.kind not in chosen.kinds:
        fitting = sorted(n for n, p in POLICIES.items() if space.kind in p.kinds)
        raise RobustDartsError(f"policy {name!r} applies to {'/'.join(chosen.kinds)} spaces, not to {space.name!r} "
                               f"({space.kind}); use one of: {', '.join(fitting)}.")
    params = inspect.signature(chosen.derive).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [p for p in params if p not in ("space", "weights")]
        extra = sorted(set(options) - set(accepted))
        if extra:
            raise RobustDartsError(f"policy {name!r} has no option(s) {', '.join(map(repr, extra))}; accepted: "
                                   f"{', '.join(accepted) or 'none'}.")
    return chosen.derive(space, weights, **options)


# ---- reading weights -----------------------------------------------------------------------------------------
def _tensor(weights: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``weights[key]``, detached on the CPU in its own float dtype, after checking presence, shape, finiteness."""
    if key not in weights:
        held = ", ".join(map(repr, weights)) or "nothing"
        raise RobustDartsError(f"the mixing weights lack {key!r} (they hold {held}); pass the relaxation of every "
                               f"cell type, as relax.mixing_weights returns it.")
    value = weights[key]
    if isinstance(value, (list, tuple)):
        raise RobustDartsError(f"weights[{key!r}] is a list of per-cell tensors; discretize one tensor per cell "
                               f"type (for example the relaxation of α without per-cell perturbations).")
    tensor = torch.as_tensor(value, device="cpu") if not isinstance(value, torch.Tensor) else value.detach().cpu()
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tuple(tensor.shape) != tuple(shape):
        raise RobustDartsError(f"weights[{key!r}] has shape {tuple(tensor.shape)}, but this space needs "
                               f"{tuple(shape)}.")
    if not torch.isfinite(tensor).all():
        raise RobustDartsError(f"weights[{key!r}] holds NaN or infinite values; discretize finite mixing weights.")
    return tensor


def _values(weights: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> list:
    """``weights[key]`` as nested Python floats (exact: every float32/float64 value is a Python float)."""
    return _tensor(weights, key, shape).tolist()


def _in_dtype(threshold: float, like: torch.Tensor) -> float:
    """A threshold rounded to the weights' dtype, as the reference's ``float32_tensor > 0.2`` compares: otherwise
    an exactly uniform float32 softmax (0.2f > 0.2 in float64) would pass the strict threshold it should fail."""
    return float(torch.tensor(threshold, dtype=like.dtype, device="cpu"))


def _ranked(values: Sequence[float]) -> list[int]:
    """Indices by value, descending; a stable sort, so among equal values the lower index comes first."""
    return sorted(range(len(values)), key=lambda i: -values[i])


# ---- darts ---------------------------------------------------------------------------------------------------
def _best_op(row: Sequence[float], ops: Sequence[str], exclude: tuple[str, ...] = ()) -> tuple[float, str | None]:
    """Largest weight and its op among ``ops`` not in ``exclude``; strict '>' keeps the first maximum."""
    best_weight, best_op = -math.inf, None
    for weight, op in zip(row, ops):
        if op not in exclude and weight > best_weight:
            best_weight, best_op = weight, op
    return best_weight, best_op


@register_policy("darts", kinds=("darts",))
def darts_rule(space: Space, weights: Mapping[str, torch.Tensor]) -> Genotype:
    """DARTS: per node the top-2 incoming edges (a user's space: its ``inputs_per_node``) by their strongest
    non-``none`` op, each with that op (D §1.6).

    Edge score = max over the edge's ops other than ``none``; the top two edges of each node are kept in
    descending score (stable: the lower input wins a tie); op = the first argmax over ops other than ``none``;
    concat = range(2, 2 + steps).

    Each edge is read with its *own* op list from the space, so ``none`` is found (or found absent) per edge.
    This fixes the RobustDARTS parser bug (spec D §6.2), which located ``none`` with the node-local edge index and
    only worked because S2-S5 share one list per cell; S1's per-edge lists hold no ``none`` at all, which here
    simply means no column is excluded.
    """
    cells = {}
    for cell in space.cell_types:
        table = _values(weights, cell, space.alpha_shape(cell))
        genes = []
        for node in range(space.steps):
            rows = space.node_edges(node)
            best = [_best_op(table[row], space.ops[cell][row], exclude=("none",)) for row in rows]
            # A user's space may keep another number of edges per node (space.keep); its genes then name their
            # node, (op, input, node), since "node i owns genes 2i and 2i+1" no longer holds.
            for source in _ranked([score for score, _ in best])[:space.keep]:
                if best[source][1] is None:
                    raise RobustDartsError(f"node {node} of the {cell} cell needs {space.keep} edge(s) with an op "
                                           f"other than 'none', but edge {rows[source]} offers only 'none'.")
                genes.append((best[source][1], source) if space.keep == 2 else (best[source][1], source, node))
        cells[cell] = tuple(genes)
    concat = tuple(range(space.num_inputs, space.num_inputs + space.steps))
    return Genotype(kind="darts", normal=cells["normal"], reduce=cells["reduce"], normal_concat=concat,
                    reduce_concat=concat, space=space.name)


# ---- nb201 ---------------------------------------------------------------------------------------------------
@register_policy("nb201", kinds=("nb201",))
def nb201_rule(space: Space, weights: Mapping[str, torch.Tensor]) -> Genotype:
    """NAS-Bench-201: the argmax op on every edge, ``none`` included (first maximum wins), all 6 edges kept."""
    table = _values(weights, "normal", space.alpha_shape("normal"))
    genes = tuple((_best_op(table[row], space.ops["normal"][row])[1], source, node)
                  for row, (node, source) in enumerate(space.edges))
    return Genotype(kind="nb201", normal=genes, space=space.name)


# ---- lhd -----------------------------------------------------------------------------------------------------
# The evaluation conditions of spec L §2.2 as discretizer settings (``gen_trans`` arguments). 1M discretizes as
# Base; only its network differs. 4out passes counts (> 1) for both output rules.
LHD_CONDITIONS: dict[str, dict[str, float]] = {
    "base": {"k_ops": 2, "sum_elem": 0.2, "sum_cum": 0.9, "cat": 0.0},
    "1m": {"k_ops": 2, "sum_elem": 0.2, "sum_cum": 0.9, "cat": 0.0},
    "3ops": {"k_ops": 3, "sum_elem": 0.2, "sum_cum": 0.9, "cat": 0.0},
    "4out": {"k_ops": 2, "sum_elem": 0.0, "sum_cum": 4, "cat": 4},
}


def _top(values: Sequence[float], q: int) -> tuple[int, ...]:
    """The ``q`` best entries, best first. An empty choice (a uniform row against a strict threshold, spec L §8
    item 15) falls back to the single best entry instead of an empty output."""
    return tuple(_ranked(values)[:max(q, 1)])


def _count_above(values: Sequence[float], threshold: float) -> int:
    return sum(v > threshold for v in values)  # strict, as the reference


def _count_cumulative(values: Sequence[float], threshold: float) -> int:
    """Length of the shortest best-first prefix whose total strictly exceeds ``threshold`` (all if none does)."""
    total = 0.0
    for n, i in enumerate(_ranked(values), start=1):
        total += values[i]
        if total > threshold:
            return n
    return len(values)


@register_policy("lhd", kinds=("lhd",))
def lhd_rule(space: Space, weights: Mapping[str, torch.Tensor], condition: str = "base", k_ops: int | None = None,
             sum_elem: float | None = None, sum_cum: float | None = None, cat: float | None = None) -> Genotype:
    """LHD ``gen_trans`` (spec L §1.6) under an evaluation condition (base, 1m, 3ops, 4out; L §2.2).

    Per node: the top ``k_ops`` (input, op) pairs of its node-joint block, best first; ties go to the lower flat
    index input * num_ops + op, so the exact zeros of SP-DARTS files pick deterministically (L §8 item 14).
    Sum set: nodes with weight strictly above ``sum_elem`` (base: 0.2), or, when ``sum_elem`` is 0, the top
    ceil(``sum_cum``) if ``sum_cum`` > 1 else the shortest prefix whose cumulative weight exceeds it.
    Concat set: ``cat`` = 0 -> gates strictly above the cell's mean gate; 0 < ``cat`` < 1 -> gates above ``cat``;
    ``cat`` >= 1 -> the top ceil(``cat``). Both sets are ordered by weight, descending, and fall back to the argmax
    rather than come out empty. Explicit options override the condition's.

    Pruning is an explicit closure: a node is kept if it is in sum or concat or if a kept node takes it as an input
    through a kept pair; walking nodes from last to first visits every consumer before what it consumes.
    """
    key = str(condition).lower()
    if key not in LHD_CONDITIONS:
        raise unknown("LHD condition", condition, LHD_CONDITIONS)
    settings = dict(LHD_CONDITIONS[key])
    settings.update({k: v for k, v in dict(k_ops=k_ops, sum_elem=sum_elem, sum_cum=sum_cum, cat=cat).items()
                     if v is not None})
    if not (isinstance(settings["k_ops"], int) and settings["k_ops"] >= 1):
        raise RobustDartsError(f"k_ops must be a positive integer (pairs kept per node), not {settings['k_ops']!r}.")
    if min(settings["sum_elem"], settings["sum_cum"], settings["cat"]) < 0:
        raise RobustDartsError(f"sum_elem, sum_cum and cat must be >= 0, not {settings['sum_elem']!r}, "
                               f"{settings['sum_cum']!r} and {settings['cat']!r}.")

    cells, outputs = {}, {}
    for cell in space.cell_types:
        table = _values(weights, cell, space.alpha_shape(cell))
        sum_tensor = _tensor(weights, f"{cell}_sum", (space.steps,))
        gate_tensor = _tensor(weights, f"{cell}_cat", (space.steps,))
        sum_weights, gates = sum_tensor.tolist(), gate_tensor.tolist()

        pairs = []  # per node: its kept (op, input), best first
        for node in range(space.steps):
            rows = space.node_edges(node)
            flat = [w for row in rows for w in table[row]]  # input-major, as the node-joint softmax flattens it
            width = len(table[rows.start])
            pairs.append([(space.ops[cell][rows[i // width]][i % width], i // width)
                          for i in _ranked(flat)[:settings["k_ops"]]])

        # The precedence of gen_trans's rank helper: element threshold, else a count (> 1), else a cumulative mass.
        sum_elem, sum_cum, cat = settings["sum_elem"], settings["sum_cum"], settings["cat"]
        if sum_elem > 0:
            sum_set = _top(sum_weights, _count_above(sum_weights, _in_dtype(sum_elem, sum_tensor)))
        elif sum_cum > 1:
            sum_set = _top(sum_weights, math.ceil(sum_cum))
        else:
            sum_set = _top(sum_weights, _count_cumulative(sum_weights, sum_cum))
        if cat >= 1:
            cat_set = _top(gates, math.ceil(cat))
        else:  # 0 means "the cell's mean gate"
            threshold = _in_dtype(cat, gate_tensor) if cat > 0 else float(gate_tensor.mean())  # mean in its dtype
            cat_set = _top(gates, _count_above(gates, threshold))

        alive = set(sum_set) | set(cat_set)
        for node in reversed(range(space.steps)):
            if node in alive:
                alive.update(inp - space.num_inputs for _, inp in pairs[node] if inp >= space.num_inputs)
        cells[cell] = tuple((op, inp, node) for node in sorted(alive) for op, inp in pairs[node])
        outputs[cell] = {"sum": sum_set, "concat": cat_set}
    return Genotype(kind="lhd", normal=cells["normal"], reduce=cells["reduce"], normal_output=outputs["normal"],
                    reduce_output=outputs["reduce"], space=space.name)
