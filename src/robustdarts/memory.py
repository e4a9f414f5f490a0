"""Memory estimates from a config, before any network is built or any image is loaded, and the refusal of what
cannot fit.

Why: a config with 10^6 channels, 10^5-pixel images or 10^5 cells otherwise allocates until the allocator gives
out (or builds Python modules for an hour) before anything says it was too big. The estimate walks the macro
network cell by cell, costing each candidate op (or genotype op) by building that one op on the meta device (no
memory) and counting its parameters and the activation tensors its forward pass saves for the backward pass. It is
calibrated on the standard DARTS supernet (C=16, 8 cells, batch 64, 32x32: 6.05 GiB of saved activations measured,
benchmarks/README.md) and errs low, so it refuses only configs that cannot run, never a paper-sized one that can.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from .config import RECOMPUTE_LEVELS
from .errors import RobustDartsError

FLOAT = 4  # bytes of a float32
GIB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    """What a run holds at its peak: weights with their gradients and optimizer state, the activations one
    forward/backward pass saves, and the images kept in memory (uint8, plus the float copies made while loading)."""

    what: str
    params: int
    weight_bytes: int
    activation_bytes: int
    data_bytes: int

    @property
    def total(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.data_bytes

    def describe(self) -> str:
        parts = [f"{self.params:,} parameters: {gib(self.weight_bytes)}"
                 + (" with gradients and optimizer state" if self.activation_bytes else "")]
        parts += [f"{name} {gib(n)}" for name, n in (("activations", self.activation_bytes),
                                                       ("images", self.data_bytes)) if n]
        return f"{self.what} needs about {gib(self.total)} ({'; '.join(parts)})"


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.3g} GiB" if nbytes < 1e6 * GIB else f"{nbytes / GIB:.2e} GiB"


@functools.lru_cache(maxsize=4096)
def _op_cost(family: str, name: str, C: int, stride: int, affine: bool, pool_bn: bool) -> tuple[int, int]:
    """(parameters, activation tensors of the op's output size saved for backward) of one op, built on the meta
    device: every leaf module's output is kept, an identity keeps nothing."""
    import torch
    import torch.nn as nn

    from .spaces import make_op

    with torch.device("meta"):
        op = make_op(name, C, stride, family=family, affine=affine, pool_bn=pool_bn, shared_relu=True)
    params = sum(p.numel() for p in op.parameters())
    saved = sum(1 for m in op.modules() if not list(m.children()) and not isinstance(m, nn.Identity))
    if name == "none":
        saved = 0  # never computed: its output is zero whatever its weight
    return params, saved


def _segments(kind: str, layers: int, size: int, macro: str | None = None):
    """The macro network as runs of identical cells: (cell type, width multiple of C, output side, cell count,
    reduction). DARTS and LHD macros halve the resolution and double the width at one and two thirds of the depth;
    NAS-Bench-201 has three stages of ``layers`` cells joined by residual blocks; the ImageNet stems divide by 8."""
    from .layers import reduction_layers

    side = max(1, -(-size // 8)) if macro == "imagenet" else size
    if kind == "nb201":
        out = []
        for stage in range(3):
            out.append(("normal", 2 ** stage, side, layers, False))
            side = (side + 1) // 2
        return out
    reductions = sorted(set(r for r in reduction_layers(layers) if 0 <= r < layers))
    out, start, width = [], 0, 1
    for r in reductions + [layers]:
        if r > start:
            out.append(("normal", width, side, r - start, False))
        if r < layers:
            width, side = width * 2, (side + 1) // 2
            out.append(("reduce", width, side, 1, True))
        start = r + 1
    return out


def _space_segments(space, layers: int, size: int):
    """The search supernet of ``space`` as runs of identical cells: (candidate ops of each edge, width multiple of
    C, output side, cell count, reduction); a space with one cell type (NAS-Bench-201) uses it everywhere."""
    for cell_type, width, side, count, red in _segments(space.kind, layers, size):
        yield space.ops[cell_type if cell_type in space.ops else "normal"], width, side, count, red


def _cell_cost(ops_per_edge, family: str, C: int, side: int, reduction: bool, num_inputs: int, sources,
               supernet: bool, partial: int = 1, steps: int | None = None) -> tuple[int, int]:
    """(parameters, saved activation elements per image) of one cell: its ops plus the two 1x1 preprocessing
    convs and the node sums and output concat. With partial channels K (PC-DARTS) the ops are built on C/K
    channels, as supernet.MixedEdge builds them; the bypassed channels cost nothing saved (slicing, concatenating
    and shuffling save no tensor) except a stride-2 edge's max pooling of them (its indices, int64: two floats)."""
    C_ops = C // partial
    params, op_saved, bypass = 0, 0, 0
    for ops, src in zip(ops_per_edge, sources):
        stride = 2 if reduction and src < num_inputs else 1
        for name in ops:
            p, s = _op_cost(family, name, C_ops, stride, not supernet, supernet)
            params += p
            op_saved += s
        if partial > 1 and stride == 2:
            bypass += 2 * (C - C_ops)
    steps = steps or max(len(sources) // 2, 1)  # given where genes are not two per node (a user's space)
    params += 2 * steps * C * C  # pre0 / pre1: 1x1 convs from the previous outputs (steps·C wide) to C
    fixed = 6 + 2 * steps  # preprocessing (ReLU, conv, BN twice), node sums, the concat output
    return params, (op_saved * C_ops + fixed * C + bypass) * side * side


def supernet_estimate(space, C: int, layers: int, batch: int, size: int, in_channels: int = 3,
                      partial_channels: int = 1) -> Estimate:
    """The search supernet of ``space``: every candidate op on every edge, all computed (dense weights), on C/K
    channels with partial channels K (PC-DARTS' memory saving, which lets it search at batch 256)."""
    from .spaces import get_space

    space = get_space(space)
    params = activations = 0
    sources = [src for _, src in space.edges]
    for ops_per_edge, width, side, count, red in _space_segments(space, layers, size):
        p, a = _cell_cost(ops_per_edge, space.family, C * width, side, red, space.num_inputs, sources, True,
                          max(int(partial_channels), 1))
        params, activations = params + p * count, activations + a * count
    params += 3 * C * in_channels * 9
    # weights, gradients, SGD momentum; activations of one weight step (the α step runs before or after it)
    return Estimate("the supernet", params, 3 * FLOAT * params, FLOAT * batch * activations, 0)


def network_estimate(genotype, C: int, layers: int, batch: int, size: int, in_channels: int = 3,
                     macro: str | None = None, training: bool = True) -> Estimate:
    """The evaluation network of ``genotype``; without ``training`` only its weights (``show`` builds, never runs)."""
    family = {"darts": "darts", "lhd": "lhd", "nb201": "nb201"}[genotype.kind]
    num_inputs = 1 if genotype.kind == "nb201" else 2
    params = activations = 0
    for cell_type, width, side, count, red in _segments(genotype.kind, layers, size, macro):
        genes = [g for g in genotype.genes(cell_type) if g[0] != "none"]
        ops = [(g[0],) for g in genes]
        explicit = genotype.kind == "darts" and len(genotype.genes(cell_type)[0]) == 3  # (op, input, node) genes
        p, a = _cell_cost(ops, family, C * width, side, red, num_inputs, [g[1] for g in genes], False,
                          steps=genotype.cell_num_nodes(cell_type) if explicit else None)
        params, activations = params + p * count, activations + a * count
    params += 3 * C * in_channels * 9
    if not training:
        return Estimate("the network", params, FLOAT * params, 0, 0)
    return Estimate("the network", params, 3 * FLOAT * params, FLOAT * batch * activations, 0)


def network_floor(kind: str, C: int, layers: int, batch: int, size: int, in_channels: int = 3,
                  macro: str | None = None) -> Estimate:
    """A lower bound of ``network_estimate`` over every genotype of ``kind`` (darts, lhd, nb201): the macro network
    with one node of two op-less edges (identities cost nothing either) and the narrowest preprocessing. What a
    plan can check before any genotype exists: a training refused by it cannot fit whatever the search finds."""
    num_inputs = 1 if kind == "nb201" else 2
    params = activations = 0
    for cell_type, width, side, count, red in _segments(kind, layers, size, macro):
        p, a = _cell_cost([(), ()], kind, C * width, side, red, num_inputs, [num_inputs] * 2, False)
        params, activations = params + p * count, activations + a * count
    params += 3 * C * in_channels * 9
    return Estimate("the network", params, 3 * FLOAT * params, FLOAT * batch * activations, 0)


def check_train_floor(cfg, kind: str, limit: tuple[int, str] | None = None) -> Estimate:
    """The training of some genotype of ``kind`` under ``cfg`` can fit ``limit``, or one sentence saying none can
    (``bench plan``: before the searches that find the genotypes)."""
    from .data import dataset_info

    info = dataset_info(cfg.dataset)
    size = cfg.image_size or info.size
    est = network_floor(kind, cfg.init_channels, cfg.layers, cfg.batch_size, size, info.channels, cfg.macro)
    return _check_training(cfg, est, info, size, limit)


def _check_training(cfg, est: Estimate, info, size: int, limit: tuple[int, str] | None = None) -> Estimate:
    """``est`` (a training network) with the training and test images held as uint8, checked against the machine
    (or ``limit``)."""
    images = (cfg.limit_images or info.train_size) + (cfg.limit_test or info.test_size)
    est = Estimate(est.what, est.params, est.weight_bytes, est.activation_bytes,
                   data_bytes(images, info.channels, size, cfg.dataset == "synthetic"))
    return check_fits(est, cfg.device, SEARCH_FIX, limit)


def data_bytes(images: int, channels: int, size: int, synthetic: bool) -> int:
    """Images held as uint8, plus the float tensors made while generating (synthetic) or resizing (4096 at once)."""
    pixels = channels * size * size
    return images * pixels * (1 + 3 * FLOAT if synthetic else 1) + min(images, 4096) * pixels * 2 * FLOAT


def machine_memory(device: str = "cpu") -> tuple[int, str]:
    """(bytes, description) of the memory a run on ``device`` can use: the GPU's total memory, or the physical
    memory (or the cgroup limit, when lower)."""
    if str(device).startswith("cuda"):
        import torch

        index = int(str(device).split(":")[1]) if ":" in str(device) else 0
        return torch.cuda.get_device_properties(index).total_memory, f"{device}'s"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total, "this machine's"


# What ``bench plan`` refuses: a grid's cells may run on other machines (Ray workers, GPUs), so it refuses only
# what no single machine holds; each cell checks its own machine when it runs (Search, Train).
ANY_MACHINE = (512 * GIB, "the bound bench plan sets for any one machine of a grid,")


def check_fits(estimate: Estimate, device: str = "cpu", fix: str = "lower the sizes",
               limit: tuple[int, str] | None = None) -> Estimate:
    """Refuse, in one sentence with the estimate and the machine's memory (or ``limit``: bytes and whose), what
    cannot fit."""
    memory, whose = limit or machine_memory(device)
    if estimate.total > memory:
        raise RobustDartsError(f"{estimate.describe()}, more than {whose} {gib(memory)}; {fix}.")
    return estimate


SEARCH_FIX = "lower init_channels, layers, image_size, batch_size or limit_images"


def _recomputed_activations(space, C: int, layers: int, size: int, partial_channels: int, recompute: str) -> int:
    """Saved activation elements per image at the peak of a supernet pass with ``recompute`` edge or cell: every
    cell keeps what recomputation cannot drop (edge: its states, i.e. preprocessing, node sums and concat; cell:
    its output, the next cell's input), and one piece at a time holds its ops' activations while it is recomputed
    in backward (edge: the largest edge; cell: the largest whole cell). Measured standard supernet with
    ``edge``: 0.33 GiB saved against 6.05 GiB dense (benchmarks/README.md)."""
    from .spaces import get_space

    space = get_space(space)
    sources = [src for _, src in space.edges]
    steps = max(len(sources) // 2, 1)
    K = max(int(partial_channels), 1)
    held = largest = 0
    for ops_per_edge, width, side, count, red in _space_segments(space, layers, size):
        Cw = C * width
        args = (space.family, Cw, side, red, space.num_inputs, sources, True, K)
        _, whole = _cell_cost(ops_per_edge, *args)
        if recompute == "edge":
            _, states = _cell_cost([()] * len(sources), *args)
            held += states * count
            for ops, src in zip(ops_per_edge, sources):
                stride = 2 if red and src < space.num_inputs else 1
                edge = sum(_op_cost(space.family, name, Cw // K, stride, False, True)[1] for name in ops)
                largest = max(largest, edge * (Cw // K) * side * side)
        else:
            held += steps * Cw * side * side * count
            largest = max(largest, whole)
    return held + largest


def search_estimate(cfg, recompute: str = "none") -> Estimate:
    """What the search of ``cfg`` holds at its peak with ``recompute`` none, edge or cell (before data or
    networks)."""
    from .data import dataset_info

    info = dataset_info(cfg.dataset)
    size = cfg.image_size or info.size
    est = supernet_estimate(cfg.space, cfg.init_channels, cfg.layers, cfg.batch_size, size, info.channels,
                            cfg.partial_channels)  # PC-DARTS' K (its preset: 4)
    activations = est.activation_bytes
    if recompute != "none":
        activations = FLOAT * cfg.batch_size * _recomputed_activations(
            cfg.space, cfg.init_channels, cfg.layers, size, cfg.partial_channels, recompute)
    images = cfg.limit_images or info.train_size
    return Estimate(est.what, est.params, est.weight_bytes, activations,
                    data_bytes(images, info.channels, size, cfg.dataset == "synthetic"))


def choose_recompute(cfg, limit: tuple[int, str] | None = None) -> tuple[str, Estimate, str | None]:
    """(recompute level, its estimate, a one-line note or None) for the search of ``cfg`` on this machine (or
    ``limit``). ``recompute=auto`` takes the first of none, edge, cell that fits, with a note when that is not
    none; an explicit level is kept. Refused in one sentence: what fits in no level, or an explicit level that does
    not fit (naming the level that would)."""
    memory, whose = limit or machine_memory(cfg.device)
    wanted = getattr(cfg, "recompute", "none")
    levels = RECOMPUTE_LEVELS if wanted == "auto" else (wanted,)
    dense = search_estimate(cfg, "none")
    estimates = {}
    for level in levels:
        est = dense if level == "none" else search_estimate(cfg, level)
        estimates[level] = est
        if est.total <= memory:
            if wanted != "auto" or level == "none":
                return level, est, None
            return level, est, (f"recompute={level}: the search needs about {gib(dense.total)} without "
                                f"recomputation, more than {whose} {gib(memory)}, and about {gib(est.total)} "
                                f"recomputing each {level} in backward (one more forward of each: slower).")
    if wanted == "auto":
        least = min(estimates.values(), key=lambda e: e.total)
        raise RobustDartsError(f"{dense.describe()}, more than {whose} {gib(memory)}, and even with recomputation "
                               f"about {gib(least.total)}; {SEARCH_FIX}.")
    fits = next((lv for lv in RECOMPUTE_LEVELS if lv != wanted and search_estimate(cfg, lv).total <= memory), None)
    fix = f"use recompute={fits} (or auto)" if fits else SEARCH_FIX
    raise RobustDartsError(f"{estimates[wanted].describe()} with recompute={wanted}, more than {whose} "
                           f"{gib(memory)}; {fix}.")


def check_search(cfg, limit: tuple[int, str] | None = None) -> Estimate:
    """The search of ``cfg`` fits the machine (or ``limit``) in its recompute level (auto: in one of them), or one
    sentence saying it does not (before data or networks)."""
    return choose_recompute(cfg, limit)[1]


def check_train(cfg, genotype) -> Estimate:
    """The training of ``genotype`` under ``cfg`` fits the machine, or one sentence saying it does not."""
    from .data import dataset_info

    info = dataset_info(cfg.dataset)
    size = cfg.image_size or info.size
    est = network_estimate(genotype, cfg.init_channels, cfg.layers, cfg.batch_size, size, info.channels, cfg.macro)
    return _check_training(cfg, est, info, size)
