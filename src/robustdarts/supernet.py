"""The supernet: every candidate op on every edge, mixed by weights that are handed in.

``logits = supernet(x, weights)``. The supernet owns only network weights; it never holds or transforms the
architecture. ``weights`` is a mixing-weights dict (see relax.py): per cell type an (edges, ops) tensor shared by
all cells of that type, or a list with one tensor per cell of that type (Λ-DARTS per-cell copies).

Two things keep a step cheap on a memory-bound CPU (DESIGN.md):
- ops that begin with ReLU share one ``relu(state)`` per source state instead of one each;
- a candidate op whose weight is exactly zero and that needs no gradient (the weights do not require grad) is not
  computed at all; sparse relaxations (GDAS, SP-DARTS at small τ) get their speed from this. ``none`` is never
  computed: its output is zero, so its term is zero whatever its weight (its α still gets gradient through the
  softmax normalization).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spaces import Space, get_space, make_op
from .spaces.ops import FactorizedReduce, relu_conv_bn, takes_relu


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Per-sample drop path, out of place (the reference's in-place version can corrupt saved activations)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * (mask / keep)


class MixedEdge(nn.Module):
    """All candidate ops of one edge. ``none`` gets no module: it contributes exactly zero."""

    def __init__(self, op_names: Sequence[str], C: int, stride: int, family: str, aux_skip: bool = False):
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride = stride
        self.slots = [i for i, n in enumerate(self.op_names) if n != "none"]  # α columns that have a module
        self.ops = nn.ModuleList(
            make_op(self.op_names[i], C, stride, family=family, affine=False, pool_bn=True, shared_relu=True)
            for i in self.slots
        )
        # DARTS-: an auxiliary skip on every edge, scaled by a decaying β and not weighted by α.
        self.aux_skip = None
        if aux_skip:
            self.aux_skip = nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=False)

    def forward(self, x, x_relu, w, active, aux_scale: float = 0.0):
        """Σ_o w[o]·op_o(x) over the ops with ``active[o]``; returns None when no op contributes."""
        out = None
        for slot, op in zip(self.slots, self.ops):
            if not active[slot]:
                continue
            y = w[slot] * op(x_relu if takes_relu(op) else x)
            out = y if out is None else out + y
        if self.aux_skip is not None and aux_scale > 0:
            y = aux_scale * self.aux_skip(x)
            out = y if out is None else out + y
        return out


def _active_mask(w: torch.Tensor) -> list[list[bool]]:
    """Which ops must run: all of them when w carries a graph, else those with non-zero weight (one sync)."""
    if w.requires_grad:
        return [[True] * w.shape[1]] * w.shape[0]
    return (w != 0).tolist()


class _Cell(nn.Module):
    """Shared machinery of the DARTS and LHD search cells: edges in the space's order, shared ReLUs."""

    def _build_edges(self, space: Space, cell_type: str, C: int, reduction: bool, aux_skip: bool):
        self.space, self.cell_type, self.reduction, self.C = space, cell_type, reduction, C
        self.edges = nn.ModuleList(
            MixedEdge(space.ops[cell_type][e], C, 2 if reduction and src < space.num_inputs else 1, space.family,
                      aux_skip)
            for e, (_, src) in enumerate(space.edges)
        )

    def _node(self, node, states, relus, w, active, drop_prob, aux_scale):
        total = None
        for e in self.space.node_edges(node):
            src = self.space.edges[e][1]
            if relus[src] is None and any(active[e]):
                relus[src] = F.relu(states[src])
            y = self.edges[e](states[src], relus[src], w[e], active[e], aux_scale)
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

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, reduction_prev, aux_skip=False):
        super().__init__()
        self.pre0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                     else relu_conv_bn(C_pp, C, 1, 1, 0, affine=False))
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, aux_skip)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, drop_prob=0.0, aux_scale=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        relus = [None, None]
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, aux_scale))
            relus.append(None)
        return torch.cat(states[-self.multiplier:], dim=1)


class LhdCell(_Cell):
    """LHD search cell (spec L §1.2): inputs are the previous cell's (sum, concat) outputs; node-joint mixing
    weights arrive already normalized; gated node states feed later nodes and the concat output, the un-gated
    ones the softmax-weighted sum output."""

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, aux_skip=False):
        super().__init__()
        # Both inputs have the same resolution, so h0 needs a 1x1 conv only where the width changes.
        self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, affine=False) if C_pp != C else nn.Identity()
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, aux_skip)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, sum_w, cat_w, drop_prob=0.0, aux_scale=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        relus = [None, None]
        raw = []
        for node in range(self.space.steps):
            s = self._node(node, states, relus, w, active, drop_prob, aux_scale)
            raw.append(s)
            states.append(cat_w[node] * s)
            relus.append(None)
        out_sum = sum(sum_w[i] * s for i, s in enumerate(raw))
        return out_sum, torch.cat(states[self.space.num_inputs:], dim=1)


class Nb201Cell(_Cell):
    """NAS-Bench-201 search cell: node 0 is the input; node i sums mixed edges from all earlier nodes."""

    def __init__(self, space, C, aux_skip=False):
        super().__init__()
        self._build_edges(space, "normal", C, False, aux_skip)

    def forward(self, x, w, active, drop_prob=0.0, aux_scale=0.0):
        states, relus = [x], [None]
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, aux_scale))
            relus.append(None)
        return states[-1]


class ResBlock(nn.Module):
    """NAS-Bench-201 residual reduction block (fixed, not searched)."""

    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.conv_a = relu_conv_bn(C_in, C_out, 3, 2, 1, affine)
        self.conv_b = relu_conv_bn(C_out, C_out, 3, 1, 1, affine)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def reduction_layers(layers: int) -> tuple[int, ...]:
    return (layers // 3, 2 * layers // 3)


class Supernet(nn.Module):
    """The macro network of a space's kind, built with non-affine BN inside the cells (search convention)."""

    def __init__(self, space: Space | str, C: int = 16, layers: int = 8, num_classes: int = 10, in_channels: int = 3,
                 stem_multiplier: int = 3, aux_skip: bool = False):
        super().__init__()
        self.space = space = get_space(space)
        self.C, self.layers, self.num_classes = C, layers, num_classes
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
                cells.append(DartsCell(space, kind, C_pp, C_p, C_curr, red, red_prev, aux_skip))
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
                cells.append(LhdCell(space, kind, C_pp, C_p, C_curr, red, aux_skip))
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
                    cells.append(Nb201Cell(space, C_curr, aux_skip))
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
                seen[key] = _active_mask(w)
            per_cell.append(w)
            masks.append(seen[key])
        return per_cell, masks

    def forward(self, x, weights: dict, drop_prob: float = 0.0, aux_skip_scale: float = 0.0):
        per_cell, masks = self._per_cell(weights)
        kind = self.space.kind
        if kind == "darts":
            s0 = s1 = self.stem(x)
            for cell, w, m in zip(self.cells, per_cell, masks):
                s0, s1 = s1, cell(s0, s1, w, m, drop_prob, aux_skip_scale)
            out = s1
        elif kind == "lhd":
            s0, s1 = self.stem0(x), self.stem1(x)
            for cell, ctype, w, m in zip(self.cells, self.cell_types, per_cell, masks):
                s0, s1 = cell(s0, s1, w, m, weights[f"{ctype}_sum"], weights[f"{ctype}_cat"], drop_prob,
                              aux_skip_scale)
            out = torch.cat([s0, s1], dim=1)
        else:
            out = self.stem(x)
            for cell, w, m in zip(self.cells, per_cell, masks):
                out = cell(out) if w is None else cell(out, w, m, drop_prob, aux_skip_scale)
            out = self.lastact(out)
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


def count_parameters(module: nn.Module, exclude: str = "auxiliary") -> int:
    """DARTS convention: parameters whose name does not contain ``exclude`` (the auxiliary head); buffers excluded."""
    return sum(p.numel() for n, p in module.named_parameters() if exclude not in n)


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
