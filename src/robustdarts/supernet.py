"""The supernet: every candidate op on every edge, mixed by weights that are handed in.

``logits = supernet(x, weights)``. The supernet owns only network weights; it never holds or transforms the
architecture. ``weights`` is a mixing-weights dict (see relax.py): per cell type an (edges, ops) tensor shared by
all cells of that type, or a list with one tensor per cell of that type (Λ-DARTS per-cell copies).

Two things keep a step cheap on a memory-bound CPU (docs/design.md, "What limits speed here"):
- ops that begin with ReLU share one ``relu(state)`` per source state instead of one each;
- a candidate op whose weight is exactly zero and that needs no gradient (the weights do not require grad) is not
  computed for the output, and nothing of it is kept for backward; sparse relaxations (GDAS, SP-DARTS at small τ)
  get their speed from this. ``none`` is never computed: its output is zero, so its term is zero whatever its
  weight (its α still gets gradient through the softmax normalization). The skip leaves the search as it would be
  with the op computed: the op's term is exactly 0 either way, and its parameters' gradient is exactly 0 — the
  search loop keeps it a zero tensor rather than None, so that SGD's momentum and weight decay still move those
  parameters; and in a training pass a skipped op with BN running statistics (or random draws) still runs its
  forward without autograd, so that its statistics move as computing it would move them. They are read in eval
  mode during the search — by SDARTS-ADV's attack at every step, by the epoch-end supernet validation — and stale
  ones changed SDARTS-ADV's α and genotype (``_keep_current``; tests/test_skip_statistics.py). That forward is
  most of a one-hot weight pass (two thirds on the tiny supernet): ``skipped_statistics: stale`` leaves it out,
  α and weights unchanged, the eval-mode reads then not the reference's (refused where the search itself reads
  them). ``skip_zero_ops=False``
  computes every op (no host sync at all). A method whose reference runs only the sampled op (GDAS) turns the
  side-effect forward off (``keep_skipped_current(False)``) and always skips: there the skip is the algorithm.

``Supernet.configure`` switches how, not what, it computes (config fields of the same names; same logits and
gradients to float tolerance, tests/test_speed_options.py; measured in benchmarks/supernet_step.py): NHWC memory
format, the mixing weight folded into each op's final batch norm, pools shared by the edges of one source state,
depthwise gradients as forward convolutions, recomputation of mixed edges or cells in backward, torch.compile of
each op.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import RECOMPUTE_LEVELS
from .dwconv import set_fast_grads, under_torch_func as _under_torch_func
from .layers import ResBlock, count_parameters, drop_path, reduction_layers  # noqa: F401 (re-exported)
from .errors import RobustDartsError
from .spaces import Space, get_space, make_op
from .spaces.ops import FactorizedReduce, relu_conv_bn, takes_relu

EdgeExtra = Callable[[int, int], nn.Module] | None  # (C, stride) -> an extra op on every mixed edge
RECOMPUTE = RECOMPUTE_LEVELS  # what Supernet.configure(recompute=...) accepts


@dataclass(frozen=True)
class EdgeOptions:
    """How every mixed edge is built: a method's extra op (DARTS-, SurgeNAS) and partial channels (PC-DARTS)."""

    extra: EdgeExtra = None
    partial: int = 1  # K: the candidate ops see C/K channels, the rest bypass them


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (PC-DARTS: after each partial-channel edge, so that the next edge's first C/K
    channels mix ops' outputs and bypassed channels)."""
    b, c, h, w = x.shape  # reshape, not view: a channels-last x is not viewable so (the same values either way)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedEdge(nn.Module):
    """All candidate ops of one edge. ``none`` gets no module: it contributes exactly zero.

    With partial channels K (PC-DARTS, Xu et al., ICLR 2020; yuhuixu1993/PC-DARTS ``model_search.py`` MixedOp) the
    ops see the first C/K channels only; the other channels bypass them (max-pooled 2x2 on stride-2 edges, with
    ceil mode so that odd sizes match the ops' outputs), and the concatenation is channel-shuffled in K groups.
    Which channels an edge samples is the reference's deterministic choice — the first C/K after the previous
    shuffle — so no random state is involved and resumption is exact by construction.
    """

    def __init__(self, op_names: Sequence[str], C: int, stride: int, family: str, options: EdgeOptions = EdgeOptions()):
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride, self.partial = stride, options.partial
        C_ops = C // options.partial
        self.slots = [i for i, n in enumerate(self.op_names) if n != "none"]  # α columns that have a module
        self.ops = nn.ModuleList(
            make_op(self.op_names[i], C_ops, stride, family=family, affine=False, pool_bn=True, shared_relu=True)
            for i in self.slots
        )
        # What a skipped op must still do, by slot: draw its random numbers, move its BN statistics (_keep_current).
        self.side_effects = {slot: side_effect(op) for slot, op in zip(self.slots, self.ops)}
        # A method's un-weighted extra op on every edge (DARTS-'s auxiliary skip), scaled from outside.
        self.extra = options.extra(C, stride) if options.extra is not None else None

    mix_in_bn = False  # Supernet.configure(mix_in_bn=True): each op's mixing weight folded into its final BN
    keep_current = True  # Supernet.keep_skipped_current: a skipped op still moves its statistics (_keep_current)
    keep_statistics = True  # ... and, with keep_current, its BN statistics (False: skipped_statistics=stale)

    def forward(self, x, x_relu, w, active, extra_scale: float = 0.0, extra_weight=None, pools: dict | None = None):
        """Σ_o w[o]·op_o(x) over the ops with ``active[o]`` (+ the bypass of partial channels, + the extra op at
        ``extra_scale``·``extra_weight``); returns None when nothing contributes. ``pools``: the pooled inputs
        already computed from this edge's source (``share_pools``), filled here with the ones this edge makes."""
        full = x
        if self.partial > 1:
            c = x.shape[1] // self.partial
            x, rest = x[:, :c], x[:, c:]
            x_relu = x_relu[:, :c] if x_relu is not None else None
        out = None
        training = None  # whether this is a training pass: asked only once an op is skipped (see _keep_current)
        for slot, op in zip(self.slots, self.ops):
            if not active[slot]:
                effect = self.side_effects[slot] if self.keep_current else None
                if effect == "statistics" and not self.keep_statistics:
                    effect = None
                if effect is not None and training is None:
                    training = self.training and torch.is_grad_enabled()
                if (effect == "random" or (effect == "statistics" and training)) and not _under_torch_func():
                    _keep_current(op, x, x_relu, pools)
                continue
            if x_relu is None and takes_relu(op):  # recomputed edges make their own (not kept for backward)
                x_relu = F.relu(x)
            inp = x_relu if takes_relu(op) else x
            if pools is None and not self.mix_in_bn:
                y = w[slot] * op(inp)
            else:
                y = _mixed_op(op, inp, w[slot], pools, self.mix_in_bn)
            out = y if out is None else out + y
        if self.partial > 1:
            if self.stride == 2:
                rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
            if out is None:
                out = rest.new_zeros(rest.shape[0], c, *rest.shape[2:])
            out = channel_shuffle(torch.cat([out, rest], dim=1), self.partial)
        if self.extra is not None and extra_scale > 0:
            scale = extra_scale if extra_weight is None else extra_scale * extra_weight
            y = scale * self.extra(full)
            out = y if out is None else out + y
        return out


def side_effect(op: nn.Module) -> str | None:
    """What running ``op`` changes besides its output: ``random`` (it draws from the global generator: an op that
    says ``draws_random``, S4's ``noise``), ``statistics`` (BN running statistics: any buffer), or None."""
    if getattr(op, "draws_random", False):
        return "random"
    return "statistics" if any(True for _ in op.buffers()) else None


_STATISTICS_PASS: contextvars.ContextVar[bool] = contextvars.ContextVar("statistics_pass", default=False)
# count_op_calls' counter of the op forwards that _mixed_op runs layer by layer (no forward hook of the op sees them)
_LAYERWISE_CALLS: contextvars.ContextVar[list | None] = contextvars.ContextVar("layerwise_calls", default=None)


def _keep_current(op: nn.Module, x: torch.Tensor, x_relu: torch.Tensor | None, pools: dict | None = None) -> None:
    """The forward of a skipped op for its side effects alone: no graph, nothing kept, the output dropped.

    Every reference computes a zero-weighted op (0·op(x)), so in a training pass its BN running statistics move,
    and in any pass a random op draws. Eval-mode passes during the search read those statistics — SDARTS-ADV's PGD
    attack at every step, the epoch-end supernet validation (``supernet_val_acc``, which bench may select by),
    λ_max with ``hessian_bn_mode: eval`` — so statistics left where the op was last computed made SDARTS-ADV's α
    and genotype, and every sparse method's validation metrics, depend on the skip; a skipped ``noise`` op shifted
    every later draw. Keeping them current costs one forward without autograd of each skipped op that has
    statistics (not its backward, nor the activations a backward would keep: most of the skip's saving on a
    memory-bound CPU remains); the skip then changes nothing but time and memory. That is the cheapest rule that
    is right for every method: any step's statistics reach every later epoch-end validation through BN's moving
    average, so no step may leave them behind. Statistics move only in training passes (train mode, gradients on),
    where they persist: the train-mode passes without gradients are measurements that restore them afterwards
    (DARTS-PT's, the leakage recalibration). Nothing runs inside torch.func (the Hessian's passes compute every op,
    and stop BN tracking). ``pools``: the source's pooled inputs (``share_pools``), so that a skipped pooling op
    does not pool again."""
    token = _STATISTICS_PASS.set(True)
    try:
        if pools is not None and isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d)):
            # share_pools: the source's pooled input, made once for all its edges. Made here (in the pass's grad
            # mode) when no edge has made it yet, so that an active edge after this one takes it, graph included.
            key = repr(op[0])
            if key not in pools:
                pools[key] = op[0](x)
            with torch.no_grad():
                h = pools[key]
                for layer in itertools.islice(op, 1, None):  # not op[1:]: that builds a module each call
                    h = layer(h)
            counter = _LAYERWISE_CALLS.get()
            if counter is not None:  # count_op_calls: the op's own hook did not see this forward
                counter[1] += 1
            return
        with torch.no_grad():
            if takes_relu(op):
                op(x_relu if x_relu is not None else F.relu(x))
            else:
                op(x)
    finally:
        _STATISTICS_PASS.reset(token)


def _mixed_op(op: nn.Module, x: torch.Tensor, weight: torch.Tensor, pools: dict | None, mix_in_bn: bool):
    """weight·op(x) with two options that change no value beyond float rounding:

    - ``pools`` (``share_pools``): a pooling op's pooled input is taken from, or put into, the cache of its source
      state, so the edges leaving one state pool it once (max pooling's indices and output kept once, not per edge);
      each edge keeps its own batch norm (its own running statistics);
    - ``mix_in_bn``: an op ending in a non-affine batch norm gets the weight as that norm's affine scale, one
      kernel instead of a norm and a multiply, and the op's output is not kept for the weight's gradient (the norm
      keeps its input anyway)."""
    layers = list(op) if isinstance(op, nn.Sequential) else [op]
    start, h, called = 0, x, False  # called: the op module itself ran (its forward hooks saw this forward)
    if pools is not None and isinstance(layers[0], (nn.MaxPool2d, nn.AvgPool2d)):
        key = repr(layers[0])
        if key not in pools:
            pools[key] = layers[0](x)
            called = layers[0] is op
        start, h = 1, pools[key]
    bn = layers[-1]
    fold = (mix_in_bn and len(layers) > start and isinstance(bn, nn.BatchNorm2d) and not bn.affine
            and bn.track_running_stats and bn.momentum is not None)
    for layer in layers[start:len(layers) - 1 if fold else len(layers)]:
        h = layer(h)
        called = called or layer is op
    counter = _LAYERWISE_CALLS.get()
    if counter is not None and not called:
        counter[0] += 1
    if not fold:
        return weight * h
    if bn.training:
        bn.num_batches_tracked.add_(1)  # as nn.BatchNorm2d.forward counts
    # A materialized (C,) scale: the CPU kernels read an expanded (stride-0) weight out of bounds.
    scale = weight.reshape(1).expand(h.shape[1]).contiguous()
    return F.batch_norm(h, bn.running_mean, bn.running_var, scale, None, bn.training, bn.momentum, bn.eps)


def _active_masks(tensors: Sequence[torch.Tensor], skip_zero_ops: bool = True) -> list[list[list[bool]]]:
    """Which ops must run, per weight tensor: all of them when it carries a graph (or skipping is off), else those
    with non-zero weight — with one host sync for all the tensors (the only sync a forward needs: which kernels to
    launch is a host decision)."""
    masks: list = [[[True] * w.shape[1]] * w.shape[0] for w in tensors]
    need = [i for i, w in enumerate(tensors) if skip_zero_ops and not w.requires_grad]
    if need:
        flat = torch.cat([(tensors[i] != 0).reshape(-1) for i in need]).tolist()
        offset = 0
        for i in need:
            rows, cols = tensors[i].shape
            masks[i] = [flat[offset + r * cols:offset + (r + 1) * cols] for r in range(rows)]
            offset += rows * cols
    return masks


def _recomputing() -> bool:
    """Whether a forward may be recomputed here: with gradients on, and outside torch.func transforms (the
    Hessian's HVPs), which do not support checkpoints: those passes run plainly, with the same values."""
    return torch.is_grad_enabled() and not _under_torch_func()


def recomputed(module: nn.Module, *args):
    """``module(*args)`` keeping only its inputs for backward, where it runs again (torch.utils.checkpoint).

    The parameters are captured when the forward runs and handed to the recomputation explicitly (via
    ``functional_call``), so that a pass on virtual weights (the unrolled step's ``functional_call``) is recomputed
    with those weights, not with whatever the module holds at backward time. The recomputation restores the BN
    running statistics it moves (a recomputed forward must not count twice) and replays the same random draws
    (drop path, noise ops). Values and gradients are those of the plain forward."""
    from torch.func import functional_call
    from torch.utils.checkpoint import checkpoint

    from .preserve import preserved

    names, params = zip(*module.named_parameters()) if any(True for _ in module.parameters()) else ((), ())

    def run(n: int, *flat):
        return functional_call(module, dict(zip(names, flat[n:])), flat[:n], strict=False)

    return checkpoint(run, len(args), *args, *params, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), preserved(module, rng=False)))




def _compiled_or_eager(compiled, eager, *args):
    """An op's compiled forward, or its eager one inside torch.func transforms (the Hessian's HVPs), which
    compiled code does not follow everywhere (same values either way)."""
    return eager(*args) if _under_torch_func() else compiled(*args)


def compile_ops(supernet: nn.Module) -> list[str]:
    """``torch.compile`` the forward of every candidate op with parameters, in place (state_dict keys and
    checkpoints unchanged); the ops of one kind and size share their compiled code. Compilation is tried once here
    on a small function, so that a machine without a working compiler says so in one note and stays eager;
    returns the notes (empty when compiled)."""
    try:
        import torch._dynamo

        torch.compile(lambda t: F.relu(t) * 2.0)(torch.ones(2))
    except Exception as e:  # any failure of the toolchain means: run eagerly
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        return [f"torch.compile is not available here ({detail}), so the supernet runs eagerly."]
    # One compiled graph per op kind, stride, width and batch shape: more than dynamo's default of 8 per code
    # object in a supernet, and past the limit it would fall back to eager silently.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    for cell in supernet.cells:
        for edge in getattr(cell, "edges", []):
            for op in edge.ops:
                if any(True for _ in op.parameters()) or any(True for _ in op.buffers()):
                    eager = op.forward
                    op.forward = functools.partial(_compiled_or_eager, torch.compile(eager, dynamic=False), eager)
    return []


class _Cell(nn.Module):
    """Shared machinery of the DARTS and LHD search cells: edges in the space's order, shared ReLUs."""

    recompute_edges = False  # Supernet.configure(recompute="edge"): each mixed edge recomputed in backward
    share_pools = False  # Supernet.configure(share_pools=True): the edges from one state pool it once

    def _build_edges(self, space: Space, cell_type: str, C: int, reduction: bool, options: EdgeOptions):
        self.space, self.cell_type, self.reduction, self.C = space, cell_type, reduction, C
        self.edges = nn.ModuleList(
            MixedEdge(space.ops[cell_type][e], C, 2 if reduction and src < space.num_inputs else 1, space.family,
                      options)
            for e, (_, src) in enumerate(space.edges)
        )

    def _node(self, node, states, relus, w, active, drop_prob, extra_scale, edge_w=None, pools=None):
        """One node: the sum of its mixed edges. ``edge_w``: optional per-edge weights, (edge scale, extra-op weight)
        tensors of shape (edges,) — PC-DARTS' edge normalization scales a whole edge, bypass included; SurgeNAS
        weights each edge's auxiliary skip by the edge's total op weight. ``pools``: per source state, the pooled
        inputs its edges share (``share_pools``; None: every edge pools for itself)."""
        total = None
        scale, extra = edge_w if edge_w is not None else (None, None)
        for e in self.space.node_edges(node):
            src = self.space.edges[e][1]
            if self.recompute_edges and any(active[e]) and _recomputing():
                # The edge makes its own ReLU inside the recomputed piece, so nothing of it is kept.
                y = recomputed(self.edges[e], states[src], None, w[e], active[e], extra_scale,
                               extra[e] if extra is not None else None)
            else:
                if relus[src] is None and any(active[e]):
                    relus[src] = F.relu(states[src])
                y = self.edges[e](states[src], relus[src], w[e], active[e], extra_scale,
                                  extra[e] if extra is not None else None,
                                  pools.setdefault(src, {}) if pools is not None else None)
            if y is None:
                continue
            if scale is not None:
                y = scale[e] * y
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

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, reduction_prev, options=EdgeOptions()):
        super().__init__()
        self.pre0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                     else relu_conv_bn(C_pp, C, 1, 1, 0, affine=False))
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, options)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, drop_prob=0.0, extra_scale=0.0, edge_w=None):
        states = [self.pre0(s0), self.pre1(s1)]
        relus, pools = [None, None], {} if self.share_pools else None
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, extra_scale, edge_w, pools))
            relus.append(None)
        return torch.cat(states[-self.multiplier:], dim=1)


class LhdCell(_Cell):
    """LHD search cell (spec L §1.2): inputs are the previous cell's (sum, concat) outputs; node-joint mixing
    weights arrive already normalized; gated node states feed later nodes and the concat output, the un-gated
    ones the softmax-weighted sum output."""

    def __init__(self, space, cell_type, C_pp, C_p, C, reduction, options=EdgeOptions()):
        super().__init__()
        # Both inputs have the same resolution, so h0 needs a 1x1 conv only where the width changes.
        self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, affine=False) if C_pp != C else nn.Identity()
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self._build_edges(space, cell_type, C, reduction, options)
        self.multiplier = space.steps

    def forward(self, s0, s1, w, active, sum_w, cat_w, drop_prob=0.0, extra_scale=0.0, edge_w=None):
        states = [self.pre0(s0), self.pre1(s1)]
        relus, pools = [None, None], {} if self.share_pools else None
        raw = []
        for node in range(self.space.steps):
            s = self._node(node, states, relus, w, active, drop_prob, extra_scale, edge_w, pools)
            raw.append(s)
            states.append(cat_w[node] * s)
            relus.append(None)
        out_sum = sum(sum_w[i] * s for i, s in enumerate(raw))
        return out_sum, torch.cat(states[self.space.num_inputs:], dim=1)


class Nb201Cell(_Cell):
    """NAS-Bench-201 search cell: node 0 is the input; node i sums mixed edges from all earlier nodes."""

    def __init__(self, space, C, options=EdgeOptions()):
        super().__init__()
        self._build_edges(space, "normal", C, False, options)

    def forward(self, x, w, active, drop_prob=0.0, extra_scale=0.0, edge_w=None):
        states, relus, pools = [x], [None], {} if self.share_pools else None
        for node in range(self.space.steps):
            states.append(self._node(node, states, relus, w, active, drop_prob, extra_scale, edge_w, pools))
            relus.append(None)
        return states[-1]


class Supernet(nn.Module):
    """The macro network of a space's kind, built with non-affine BN inside the cells (search convention).

    ``Supernet(space, C, layers, num_classes, in_channels)`` takes a ``Space`` (or its name), the initial channels,
    the number of cells, the classes and the image channels (``edge_extra``, ``partial_channels``: the options of
    DARTS- and PC-DARTS). It holds the weights only: ``net(x, weights)`` takes images (N, in_channels, H, W) and the
    mixing weights — a dict of one (edges, ops) tensor per cell type (``space.alpha_shape(cell)``), e.g. the softmax
    of α that ``relax.mixing_weights`` computes — and returns logits (N, num_classes). An op whose weight is exactly
    0 is not computed.
    """

    def __init__(self, space: Space | str, C: int = 16, layers: int = 8, num_classes: int = 10, in_channels: int = 3,
                 stem_multiplier: int = 3, edge_extra: EdgeExtra = None, partial_channels: int = 1):
        super().__init__()
        self.space = space = get_space(space)
        if partial_channels < 1 or C % (2 * partial_channels) and partial_channels > 1:
            raise RobustDartsError(f"partial_channels={partial_channels} needs init_channels divisible by "
                                   f"{2 * partial_channels} (the ops' C/K channels must be even), got {C}.")
        options = EdgeOptions(edge_extra, partial_channels)
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
                cells.append(DartsCell(space, kind, C_pp, C_p, C_curr, red, red_prev, options))
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
                cells.append(LhdCell(space, kind, C_pp, C_p, C_curr, red, options))
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
                    cells.append(Nb201Cell(space, C_curr, options))
                    self.cell_types.append("normal")
            self.lastact = nn.Sequential(nn.BatchNorm2d(C_curr), nn.ReLU(inplace=False))
            head_in = C_curr
        else:  # pragma: no cover - registry guarantees the kind
            raise ValueError(space.kind)
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(head_in, num_classes)

    def cells_of(self, cell_type: str) -> int:
        return self.cell_types.count(cell_type)

    # --- speed and memory options (config: recompute, channels_last, compile; benchmarks/supernet_step.py) -------
    recompute = "none"  # none | edge | cell
    channels_last = False
    compiled = "off"  # off | ops

    def keep_skipped_current(self, keep: bool = True, statistics: bool = True) -> None:
        """Whether a skipped zero-weight op still runs its forward for its side effects (BN statistics, random
        draws; ``_keep_current``): True where the method's reference computes such ops as 0·op(x), False where it
        runs only the sampled op (GDAS; the recipe's ``computes_zero_ops``). ``statistics=False``
        (``skipped_statistics: stale``) keeps the random draws, so every draw and so α and the weights stay as
        they are, and leaves the BN statistics where the op was last computed."""
        for edge in self.modules():
            if isinstance(edge, MixedEdge):
                edge.keep_current, edge.keep_statistics = keep, statistics

    def configure(self, recompute: str = "none", channels_last: bool = False, compile: str = "off",
                  mix_in_bn: bool = False, share_pools: bool = False, fast_depthwise: bool = False) -> list[str]:
        """Switch the options that change how, not what, the supernet computes (same logits and gradients to
        float tolerance, tested): ``recompute`` keeps only each mixed edge's (or cell's) inputs for backward and
        runs it again there; ``channels_last`` stores activations and conv weights NHWC; ``compile='ops'``
        compiles each candidate op with torch.compile (the small repeated pieces: a whole supernet step does not
        compile in reasonable time on a CPU); ``mix_in_bn`` and ``share_pools``: see ``_mixed_op``;
        ``fast_depthwise``: the depthwise convolutions' gradients as forward convolutions where the shape says that
        is faster (dwconv.py). Returns notes for the user (e.g. compilation unavailable: eager it is)."""
        from .errors import unknown

        if recompute not in RECOMPUTE:
            raise unknown("recompute", recompute, RECOMPUTE)
        if compile not in ("off", "ops"):
            raise unknown("compile", compile, ("off", "ops"))
        self.recompute, self.channels_last = recompute, channels_last
        for cell in self.cells:
            if isinstance(cell, _Cell):
                cell.recompute_edges, cell.share_pools = recompute == "edge", share_pools
                for edge in cell.edges:
                    edge.mix_in_bn = mix_in_bn
        set_fast_grads(self, fast_depthwise)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        notes = []
        if compile == "ops" and self.compiled != "ops":
            notes += compile_ops(self)
            self.compiled = "ops" if not notes else "off"
        if self.compiled == "ops" and (mix_in_bn or share_pools):
            notes.append("compile=ops compiles whole ops, but with mix_in_bn or share_pools the ops run layer by "
                         "layer, eagerly; turn those off to run the compiled ops.")
        return notes

    def _cell_fn(self):
        if self.recompute == "cell" and _recomputing():
            return recomputed
        return lambda cell, *args: cell(*args)

    def _per_cell(self, weights: dict) -> tuple[list, list]:
        """The weights each cell gets and its active-op mask: computed once per distinct tensor, with one host sync
        for all of them, and remembered while the same unmodified tensors come back (the weight step's weights serve
        several forwards in SDARTS-ADV, Λ-DARTS and every evaluation batch: one sync per α update, not per pass)."""
        per_cell = []
        counters = {c: 0 for c in self.space.cell_types}
        for kind in self.cell_types:
            if kind == "resblock":
                per_cell.append(None)
                continue
            w = weights[kind]
            if isinstance(w, (list, tuple)):
                w = w[counters[kind]]
            counters[kind] += 1
            per_cell.append(w)
        distinct = list({id(w): w for w in per_cell if w is not None}.values())
        key = [(weakref.ref(w), w._version, w.requires_grad) for w in distinct]
        cached = self.__dict__.get("_mask_cache")
        if (cached is not None and cached[2] == self.skip_zero_ops and len(cached[0]) == len(key)
                and all(r() is w and v == w._version and g == w.requires_grad
                        for (r, v, g), w in zip(cached[0], distinct))):
            by_id = cached[1]
        else:
            by_id = dict(zip(map(id, distinct), _active_masks(distinct, self.skip_zero_ops)))
            self.__dict__["_mask_cache"] = (key, by_id, self.skip_zero_ops)  # not a module attribute: no state
        return per_cell, [None if w is None else by_id[id(w)] for w in per_cell]

    def forward(self, x, weights: dict, drop_prob: float = 0.0, extra_scale: float = 0.0):
        per_cell, masks = self._per_cell(weights)
        # Optional per-edge weights of each cell type: '<cell>_edge' (PC-DARTS' edge normalization) and
        # '<cell>_extra' (the weight of each edge's extra op, SurgeNAS).
        edge_w = {c: (weights.get(f"{c}_edge"), weights.get(f"{c}_extra")) for c in self.space.cell_types}
        edge_w = {c: v if v != (None, None) else None for c, v in edge_w.items()}
        kind = self.space.kind
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cell_fn = self._cell_fn()
        if kind == "darts":
            s0 = s1 = self.stem(x)
            for cell, ctype, w, m in zip(self.cells, self.cell_types, per_cell, masks):
                s0, s1 = s1, cell_fn(cell, s0, s1, w, m, drop_prob, extra_scale, edge_w[ctype])
            out = s1
        elif kind == "lhd":
            s0, s1 = self.stem0(x), self.stem1(x)
            for cell, ctype, w, m in zip(self.cells, self.cell_types, per_cell, masks):
                s0, s1 = cell_fn(cell, s0, s1, w, m, weights[f"{ctype}_sum"], weights[f"{ctype}_cat"], drop_prob,
                                 extra_scale, edge_w[ctype])
            out = torch.cat([s0, s1], dim=1)
        else:
            out = self.stem(x)
            for cell, w, m in zip(self.cells, per_cell, masks):
                out = cell(out) if w is None else cell_fn(cell, out, w, m, drop_prob, extra_scale, edge_w["normal"])
            out = self.lastact(out)
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


def count_op_calls(supernet: nn.Module, fn: Callable[[], object], statistics: bool = False) -> int:
    """How many candidate-op forwards ``fn()`` runs in ``supernet`` (forward hooks on every edge's ops, removed
    afterwards): the measure of the zero-weight skip in tests and in ``benchmarks/sparse_step.py``. Counted are the
    forwards that compute an output; with ``statistics``, instead, the side-effect-only forwards of skipped ops
    (``_keep_current``)."""
    calls = 0

    def hook(*_):
        nonlocal calls
        calls += _STATISTICS_PASS.get() == statistics

    handles = [op.register_forward_hook(hook)
               for cell in supernet.cells for edge in getattr(cell, "edges", []) for op in edge.ops]
    layerwise = [0, 0]  # ops run layer by layer (mix_in_bn, share_pools): computing forwards, statistics forwards
    token = _LAYERWISE_CALLS.set(layerwise)
    try:
        fn()
    finally:
        _LAYERWISE_CALLS.reset(token)
        for h in handles:
            h.remove()
    return calls + layerwise[1 if statistics else 0]
