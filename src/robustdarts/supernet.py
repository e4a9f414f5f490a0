"""The supernet: every candidate op on every edge, mixed by weights that are handed in.

``logits = supernet(x, weights)``. The supernet owns only network weights; it never holds or transforms the
architecture. ``weights`` is a mixing-weights dict (see relax.py): per cell type an (edges, ops) tensor shared by
all cells of that type, or a list with one tensor per cell of that type (Λ-DARTS per-cell copies).

Two things keep a step cheap on a memory-bound CPU (DESIGN.md):
- ops that begin with ReLU share one ``relu(state)`` per source state instead of one each;
- a candidate op whose weight is exactly zero and that needs no gradient (the weights do not require grad) is not
  computed at all; sparse relaxations (GDAS, SP-DARTS at small τ) get their speed from this. ``none`` is never
  computed: its output is zero, so its term is zero whatever its weight (its α still gets gradient through the
  softmax normalization). The skip leaves training as it would be with the op computed: the op's term is exactly
  0 either way, and its parameters' gradient is exactly 0 — the search loop keeps it a zero tensor rather than
  None, so that SGD's momentum and weight decay still move those parameters. One difference remains: the BN
  running statistics of a skipped op are not updated (they only matter in eval mode, and the search validates
  with its own weights). ``skip_zero_ops=False`` computes every op (for tests and benchmarks).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ResBlock, count_parameters, drop_path, reduction_layers  # noqa: F401 (re-exported)
from .spaces import Space, get_space, make_op
from .spaces.ops import FactorizedReduce, relu_conv_bn, takes_relu

EdgeExtra = Callable[[int, int], nn.Module] | None  # (C, stride) -> an extra op on every mixed edge


class MixedEdge(nn.Module):
    """All candidate ops of one edge. ``none`` gets no module: it contributes exactly zero."""

    def __init__(self, op_names: Sequence[str], C: int, stride: int, family: str, edge_extra: EdgeExtra = None):
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride = stride
        self.slots = [i for i, n in enumerate(self.op_names) if n != "none"]  # α columns that have a module
        self.ops = nn.ModuleList(
            make_op(self.op_names[i], C, stride, family=family, affine=False, pool_bn=True, shared_relu=True)
            for i in self.slots
        )
        # A method's un-weighted extra op on every edge (DARTS-'s auxiliary skip), scaled from outside.
        self.extra = edge_extra(C, stride) if edge_extra is not None else None

    def forward(self, x, x_relu, w, active, extra_scale: float = 0.0):
        """Σ_o w[o]·op_o(x) over the ops with ``active[o]``; returns None when no op contributes."""
        out = None
        for slot, op in zip(self.slots, self.ops):
            if not active[slot]:
                continue
            y = w[slot] * op(x_relu if takes_relu(op) else x)
            out = y if out is None else out + y
        if self.extra is not None and extra_scale > 0:
            y = extra_scale * self.extra(x)
            out = y if out is None else out + y
        return out


def _active_mask(w: torch.Tensor, skip_zero_ops: bool = True) -> list[list[bool]]:
    """Which ops must run: all of them when w carries a graph, else those with non-zero weight (one sync)."""
    if w.requires_grad or not skip_zero_ops:
        return [[True] * w.shape[1]] * w.shape[0]
    return (w != 0).tolist()


class _Cell(nn.Module):
    """Shared machinery of the DARTS and LHD search cells: edges in the space's order, shared ReLUs."""

    def _build_edges(self, space: Space, cell_type: str, C: int, reduction: bool, edge_extra: EdgeExtra):
        self.space, self.cell_type, self.reduction, self.C = space, cell_type, reduction, C
        self.edges = nn.ModuleList(
            MixedEdge(space.ops[cell_type][e], C, 2 if reduction and src < space.num_inputs else 1, space.family,
                      edge_extra)
            for e, (_, src) in enumerate(space.edges)
        )

    def _node(self, node, states, relus, w, active, drop_prob, extra_scale):
        total = None
        for e in self.space.node_edges(node):
            src = self.space.edges[e][1]
            if relus[src] is None and any(active[e]):
                relus[src] = F.relu(states[src])
            y = self.edges[e](states[src], relus[src], w[e], active[e], extra_scale)
            if y is None:
                continue
            if self.training and drop_prob > 0:
                y = drop_path(y, drop_prob)
            total = y if total is None else total + y
        if total is None:  # every candidate of this node has weight exactly zero
            ref = states[self.space.num_inputs - 1]
            h, wd = ref.shape[-2:]
            if self.reduction:
                h, wd = (h + 1) // 2, (wd + 1) // 2
            total = ref.new_zeros(ref.shape[0], self.C, h, wd)
        return total


class DartsCell(_Cell):
    """DARTS search cell: inputs are the outputs of cells k-2 and k-1; output = concat of all intermediate nodes."""

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, reduction_prev, edge_extra=None):
        super().__init__()
        self.pre0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                     else relu_conv_bn(C_pp, C, 1, 1, 0, affine=False))
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, edge_extra)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, drop_prob=0.0, extra_scale=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        relus = [None, None]
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, extra_scale))
            relus.append(None)
        return torch.cat(states[-self.multiplier:], dim=1)


class LhdCell(_Cell):
    """LHD search cell (spec L §1.2): inputs are the previous cell's (sum, concat) outputs; node-joint mixing
    weights arrive already normalized; gated node states feed later nodes and the concat output, the un-gated
    ones the softmax-weighted sum output."""

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, edge_extra=None):
        super().__init__()
        # Both inputs have the same resolution, so h0 needs a 1x1 conv only where the width changes.
        self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, affine=False) if C_pp != C else nn.Identity()
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, edge_extra)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, sum_w, cat_w, drop_prob=0.0, extra_scale=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        relus = [None, None]
        raw = []
        for node in range(self.space.steps):
            s = self._node(node, states, relus, w, active, drop_prob, extra_scale)
            raw.append(s)
            states.append(cat_w[node] * s)
            relus.append(None)
        out_sum = sum(sum_w[i] * s for i, s in enumerate(raw))
        return out_sum, torch.cat(states[self.space.num_inputs:], dim=1)


class Nb201Cell(_Cell):
    """NAS-Bench-201 search cell: node 0 is the input; node i sums mixed edges from all earlier nodes."""

    def __init__(self, space, C, edge_extra=None):
        super().__init__()
        self._build_edges(space, "normal", C, False, edge_extra)

    def forward(self, x, w, active, drop_prob=0.0, extra_scale=0.0):
        states, relus = [x], [None]
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, extra_scale))
            relus.append(None)
        return states[-1]


class Supernet(nn.Module):
    """The macro network of a space's kind, built with non-affine BN inside the cells (search convention)."""

    def __init__(self, space: Space | str, C: int = 16, layers: int = 8, num_classes: int = 10, in_channels: int = 3,
                 stem_multiplier: int = 3, edge_extra: EdgeExtra = None):
        super().__init__()
        self.space = space = get_space(space)
        self.C, self.layers, self.num_classes = C, layers, num_classes
        self.skip_zero_ops = True
        self.cell_types: list[str] = []
        cells = []
        if space.kind == "darts":
            C_curr = stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
            C_pp, C_p, C_curr, red_prev = C_curr, C_curr, C, False
            for i in range(layers):
                red = i in reduction_layers(layers)
                C_curr = C_curr * 2 if red else C_curr
                kind = "reduce" if red else "normal"
                cells.append(DartsCell(space, kind, C_pp, C_p, C_curr, red, red_prev, edge_extra))
                self.cell_types.append(kind)
                C_pp, C_p, red_prev = C_p, space.steps * C_curr, red
            head_in = C_p
        elif space.kind == "lhd":
            self.stem0 = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            self.stem1 = nn.Sequential(nn.Conv2d(in_channels, stem_multiplier * C, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(stem_multiplier * C))
            C_pp, C_p, C_curr = C, stem_multiplier * C, C
            for i in range(layers):
                red = i in reduction_layers(layers)
                C_curr = C_curr * 2 if red else C_curr
                kind = "reduce" if red else "normal"
                cells.append(LhdCell(space, kind, C_pp, C_p, C_curr, red, edge_extra))
                self.cell_types.append(kind)
                C_pp, C_p = C_curr, space.steps * C_curr
            head_in = C_pp + C_p
        elif space.kind == "nb201":
            # layers = cells per stage (NAS-Bench-201: 5), three stages joined by residual blocks.
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            C_curr = C
            for stage in range(3):
                if stage > 0:
                    cells.append(ResBlock(C_curr, C_curr * 2))
                    self.cell_types.append("resblock")
                    C_curr *= 2
                for _ in range(layers):
                    cells.append(Nb201Cell(space, C_curr, edge_extra))
                    self.cell_types.append("normal")
            self.lastact = nn.Sequential(nn.BatchNorm2d(C_curr), nn.ReLU(inplace=False))
            head_in = C_curr
        else:  # pragma: no cover - registry guarantees the kind
            raise ValueError(space.kind)
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(head_in, num_classes)

    def cells_of(self, cell_type: str) -> int:
        return self.cell_types.count(cell_type)

    def _per_cell(self, weights: dict) -> tuple[list, list]:
        """The weights each cell gets and its active-op mask (computed once per distinct tensor)."""
        per_cell, masks, seen = [], [], {}
        counters = {c: 0 for c in self.space.cell_types}
        for kind in self.cell_types:
            if kind == "resblock":
                per_cell.append(None)
                masks.append(None)
                continue
            w = weights[kind]
            if isinstance(w, (list, tuple)):
                w = w[counters[kind]]
            counters[kind] += 1
            key = id(w)
            if key not in seen:
                seen[key] = _active_mask(w, self.skip_zero_ops)
            per_cell.append(w)
            masks.append(seen[key])
        return per_cell, masks

    def forward(self, x, weights: dict, drop_prob: float = 0.0, extra_scale: float = 0.0):
        per_cell, masks = self._per_cell(weights)
        kind = self.space.kind
        if kind == "darts":
            s0 = s1 = self.stem(x)
            for cell, w, m in zip(self.cells, per_cell, masks):
                s0, s1 = s1, cell(s0, s1, w, m, drop_prob, extra_scale)
            out = s1
        elif kind == "lhd":
            s0, s1 = self.stem0(x), self.stem1(x)
            for cell, ctype, w, m in zip(self.cells, self.cell_types, per_cell, masks):
                s0, s1 = cell(s0, s1, w, m, weights[f"{ctype}_sum"], weights[f"{ctype}_cat"], drop_prob,
                              extra_scale)
            out = torch.cat([s0, s1], dim=1)
        else:
            out = self.stem(x)
            for cell, w, m in zip(self.cells, per_cell, masks):
                out = cell(out) if w is None else cell(out, w, m, drop_prob, extra_scale)
            out = self.lastact(out)
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


def count_op_calls(supernet: nn.Module, fn: Callable[[], object]) -> int:
    """How many candidate-op forwards ``fn()`` runs in ``supernet`` (forward hooks on every edge's ops, removed
    afterwards): the measure of the zero-weight skip in tests and in ``benchmarks/sparse_step.py``."""
    calls = 0

    def hook(*_):
        nonlocal calls
        calls += 1

    handles = [op.register_forward_hook(hook)
               for cell in supernet.cells for edge in getattr(cell, "edges", []) for op in edge.ops]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return calls
