"""The plan of a grid: its cells with ids, their count and a rough cost, computed without running anything.

The cost is counted, not guessed per method: the supernet's forward FLOPs per image are counted on one small
forward pass, multiplied by the images each step touches and the passes the method's recipe makes
(a first-order arch step is one forward and one backward on a validation batch, an unrolled one about four
times that, SDARTS-ADV adds its attack steps ...), plus evaluation, eigenvalue measurements and the trainings from
scratch. Time is then ``FLOPs / RATE + steps × STEP_OVERHEAD``: on this project's 2-core CPU a step is bound by
memory traffic and per-op overhead rather than arithmetic (docs/design.md), and the two constants are fitted to
docs/collapse.md's measured runs (a DARTS search there: 17–23 min; a from-scratch training: 6.5–14 min, one thread).
Treat the hours as an order of magnitude on a CPU core; a GPU is another machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

from ..spaces.registry import on_redefine
from .grid import Cell, Grid, expand

RATE = 3e9  # FLOP/s of one thread here, on these memory-bound convolutions
STEP_OVERHEAD = 0.08  # seconds per optimizer step that do not scale with FLOPs (op dispatch, BN, small tensors)
FORWARD, FORWARD_BACKWARD = 1.0, 3.0  # a backward costs about two forwards
PROBE_BYTES = 1 << 30  # weights of a FLOP probe held in memory; a larger network is probed on the meta device
PROBE_LAYERS = 32  # deepest supernet whose FLOPs are counted cell by cell (the papers train 20 or 25 cells)
ARCH_PASSES = {"first": FORWARD_BACKWARD, "mixed": 2 * FORWARD_BACKWARD, "second": 4 * FORWARD_BACKWARD,
               "single": 0.0, "none": 0.0}


@dataclass(frozen=True)
class CellCost:
    search_flops: float
    train_flops: float  # all of the cell's trainings (identical architectures, trained once, are counted each)
    search_steps: int
    train_steps: int
    # Derivations that work on the supernet (DARTS-PT: a measurement per candidate removal, fine-tuning epochs
    # between decisions), run after the search and before the trainings: 0.12 min planned, 252 s taken, before.
    derive_flops: float = 0.0
    derive_steps: int = 0

    @property
    def search_seconds(self) -> float:
        return self.search_flops / RATE + self.search_steps * STEP_OVERHEAD

    @property
    def derive_seconds(self) -> float:
        return self.derive_flops / RATE + self.derive_steps * STEP_OVERHEAD

    @property
    def train_seconds(self) -> float:
        return self.train_flops / RATE + self.train_steps * STEP_OVERHEAD

    @property
    def seconds(self) -> float:
        return self.search_seconds + self.derive_seconds + self.train_seconds

    def remaining(self, searched: float = 0.0, trained: float = 0.0) -> float:
        """The seconds left when the fractions ``searched`` of the search and ``trained`` of the trainings are
        already on disk (an interrupted cell resumes from there; ``cell.progress`` reads them). The derivations
        count as done once the trainings that follow them have started."""
        return self.search_seconds * (1 - searched) + (self.derive_seconds + self.train_seconds) * (1 - trained)


@dataclass(frozen=True)
class Plan:
    grid: Grid
    cells: list[Cell]
    costs: dict[str, CellCost]

    @property
    def trainings(self) -> int:
        return sum(1 for c in self.cells for k in c.conditions if k.train is not None)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.costs.values())

    def summary(self) -> dict:
        return {"grid": self.grid.name, "cells": len(self.cells), "searches": len(self.cells),
                "conditions": sum(len(c.conditions) for c in self.cells), "trainings": self.trainings,
                "search_tflop": sum(c.search_flops for c in self.costs.values()) / 1e12,
                "derive_tflop": sum(c.derive_flops for c in self.costs.values()) / 1e12,
                "train_tflop": sum(c.train_flops for c in self.costs.values()) / 1e12,
                "cpu_hours": self.seconds / 3600}

    def to_dict(self) -> dict:
        return {**self.summary(), "recipes": self.recipes(), "cell_list": [
            {"cell_id": c.cell_id, "method": c.method, "variant": c.variant, "space": c.space, "dataset": c.dataset,
             "seed": c.seed, "run_dir": c.run_dir, "conditions": [k.label for k in c.conditions],
             "trainings": {k.label: k.train for k in c.conditions},
             "cpu_hours": self.costs[c.cell_id].seconds / 3600} for c in self.cells]}

    def recipes(self) -> list[str]:
        """The distinct training recipes of the plan, one line each: what ``bench run`` trains with (the evaluation
        recipe of the space's kind under the grid's values; eval_recipe), the genotype's own values marked."""
        from ..eval_recipe import genotype_fields
        from ..spaces import get_space

        lines: dict[str, None] = {}
        for c in self.cells:
            for k in c.conditions:
                if k.train is None:
                    continue
                t, own = k.train, genotype_fields(get_space(c.space).kind, k.condition if k.policy == "lhd" else None)
                width = f"C={t['init_channels']}" + (" or wider (1M: grown to 1.5M parameters)"
                                                      if "init_channels" in own else "")
                drop = f"drop path {t['drop_path']:g}" + (" at most (p0 x |normal concat|)" if "drop_path" in own
                                                           else "")
                seed = "seed 0 (the recipe's)" if "seed" not in (k.train_overrides or {}) else "the search's seed"
                lines[f"{c.space} on {c.dataset}, {k.label}: {t['epochs']} epochs, batch {t['batch_size']}, "
                      f"{t['layers']} cells, {width}, lr {t['lr']:g}, {drop}, cutout {t['cutout']}, "
                      f"{'crop and flip' if t['augment'] else 'no crop or flip'}, {seed}"] = None
        return list(lines)


def make_plan(grid: Grid) -> Plan:
    cells = expand(grid)
    costs: dict[str, CellCost] = {}
    known: dict[str, CellCost] = {}  # cells that differ only in their seed cost the same
    for c in cells:
        key = json.dumps([{**c.search, "seed": 0}, c.measure,
                          [None if k.train is None else {**k.train, "seed": 0} for k in c.conditions]],
                         sort_keys=True, default=list)
        costs[c.cell_id] = known[key] = known.get(key) or estimate(c)
    return Plan(grid, cells, costs)


def estimate(cell: Cell) -> CellCost:
    from ..data.datasets import dataset_info
    from ..methods import make_recipe

    cfg = cell.search_config()
    info = dataset_info(cfg.dataset)
    recipe = make_recipe(cfg)
    size = cfg.image_size or info.size
    per_image = supernet_flops(cfg.space, cfg.init_channels, cfg.layers, info.num_classes, info.channels, size,
                               recipe.edge_extra is not None)
    images = min(cfg.limit_images or info.train_size, info.train_size)
    n_train = int(math.floor(cfg.train_portion * images))
    n_val = images - n_train
    steps_per_epoch = max(n_train // cfg.batch_size, 1)
    weight = FORWARD_BACKWARD if recipe.trains_weights else 0.0
    family = type(recipe).__name__
    opts = cfg.method_options
    if family == "Sdarts" and opts.get("attack") == "pgd":
        weight += FORWARD_BACKWARD * float(opts.get("attack_steps", 7))
    elif family == "LambdaDarts":
        weight += 4 * FORWARD_BACKWARD  # its finite-difference alignment passes (fitted: 36–44 vs 17–23 min)
    per_step = cfg.batch_size * (weight + ARCH_PASSES.get(recipe.arch_grad, FORWARD_BACKWARD))
    epochs = cfg.epochs
    flops = epochs * (steps_per_epoch * per_step + n_val * FORWARD) * per_image
    if cfg.hessian_every:
        # The epochs e with e % hessian_every == 0, and the last one, counted without listing them (a grid of 10^8
        # epochs took 30 s here).
        measured = len(range(0, epochs, cfg.hessian_every)) + (epochs > 0 and (epochs - 1) % cfg.hessian_every != 0)
        hvp = _num_alpha(cfg.space) * cfg.batch_size * 2 * FORWARD_BACKWARD * per_image
        flops += measured * cfg.hessian_batches * hvp
    if cell.measure.get("eigenvalue_batches"):
        flops += int(cell.measure["eigenvalue_batches"]) * _num_alpha(cfg.space) * cfg.batch_size * 2 * \
            FORWARD_BACKWARD * per_image
    if cfg.leakage_every:
        flops += len(range(0, epochs, cfg.leakage_every)) * 3 * n_val * FORWARD * per_image
    search_steps = epochs * steps_per_epoch

    derive_flops, derive_steps = 0.0, 0
    for k in cell.conditions:
        if k.policy == "darts-pt":  # on the whole validation half, as bench runs it (derive_from_run's defaults)
            measurements, tune_epochs = darts_pt_work(cfg.space)
            derive_flops += (measurements * n_val * FORWARD + tune_epochs * steps_per_epoch * per_step) * per_image
            derive_steps += tune_epochs * steps_per_epoch

    train_flops, train_steps = 0.0, 0
    for k in cell.conditions:
        if k.train is None:
            continue
        t = k.train
        t_info = dataset_info(t["dataset"])
        t_size = t["image_size"] or t_info.size
        t_images = min(t["limit_images"] or t_info.train_size, t_info.train_size) - (t["valid_images"] or 0)
        t_test = min(t["limit_test"] or t_info.test_size, t_info.test_size)
        per = supernet_flops(cfg.space, t["init_channels"], t["layers"], t_info.num_classes, t_info.channels, t_size,
                             False) * _kept_fraction(cfg.space)
        steps = max(math.ceil(t_images / t["batch_size"]), 1)
        train_flops += t["epochs"] * (t_images * FORWARD_BACKWARD + (t_test + (t["valid_images"] or 0)) * FORWARD) \
            * per
        train_steps += t["epochs"] * steps
    return CellCost(flops, train_flops, search_steps, train_steps, derive_flops, derive_steps)


@lru_cache(maxsize=None)
def darts_pt_work(space: str) -> tuple[int, int]:
    """(validation passes, fine-tuning epochs) of DARTS-PT on ``space`` as search/darts_pt.select schedules them:
    per cell type, an op decision measures the supernet and each op's removal, a topology decision (DARTS kind,
    nodes of more than two inputs) measures it and then each remaining edge's removal until two are left; one
    measurement of the result; ``tune_epochs`` between two decision rounds (one less before NAS-Bench-201's last)."""
    import inspect

    from ..search.darts_pt import darts_pt
    from ..spaces import get_space

    s = get_space(space)
    tune = inspect.signature(darts_pt).parameters["tune_epochs"].default
    choice = [len(s.node_edges(n)) for n in range(s.steps) if len(s.node_edges(n)) > 2] if s.kind == "darts" else []
    measurements = 1
    for cell in s.cell_types:
        measurements += sum(1 + len(ops) for ops in s.ops[cell])
        measurements += sum(1 + sum(range(3, n + 1)) for n in choice)
    rounds = s.num_edges + len(choice)
    epochs = (rounds - 1) * tune - (1 if s.kind == "nb201" and rounds > 1 and tune > 0 else 0)
    return measurements, epochs


@lru_cache(maxsize=None)
def supernet_flops(space: str, channels: int, layers: int, classes: int, in_channels: int, size: int,
                   edge_extra: bool) -> float:
    """Forward FLOPs per image of the supernet with every op weighted (uniform softmax): the multiply-adds of its
    convolutions and linear layers, counted by hooks on one forward of a small image (at most 8x8, one thread) and
    scaled by the pixel count, which convolution FLOPs are proportional to. A network whose weights alone would
    take more than PROBE_BYTES is probed on the meta device instead (shapes only, no memory whatever the width, but
    several times slower). Beyond PROBE_LAYERS cells the count is scaled from a network of that depth (the
    reductions sit at the same fractions of it), so that an outsized depth costs no time here. BN, ReLU and
    pooling (cheap in FLOPs, not in memory traffic) are left to STEP_OVERHEAD."""
    if layers > PROBE_LAYERS:
        return supernet_flops(space, channels, PROBE_LAYERS, classes, in_channels, size, edge_extra) \
            * layers / PROBE_LAYERS
    import torch

    from ..archparams import ArchParams
    from ..memory import FLOAT, supernet_estimate
    from ..relax import mixing_weights
    from ..spaces import get_space
    from ..supernet import Supernet

    s = get_space(space)
    probe = min(size, 8)
    total = [0.0]
    device = "meta" if supernet_estimate(s, channels, layers, 1, probe, in_channels).params * FLOAT > PROBE_BYTES \
        else "cpu"

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += 2.0 * output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2.0 * output.numel() * module.in_features

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: two contended threads are 100x slower than one here
    try:
        with torch.random.fork_rng(devices=[]):
            with torch.device(device):
                net = Supernet(s, channels, layers, classes, in_channels)
            arch = ArchParams(s, generator=torch.Generator().manual_seed(0))
        net.skip_zero_ops = False  # every op counted; and which ops are zero is a host read a meta tensor has not
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.register_forward_hook(count)
            elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and device == "meta":
                # Shape-preserving and not counted; on meta tensors batch norm runs a Python decomposition that
                # took most of the probe's time (4 ms a call). This probe network is thrown away after the count.
                module.forward = _same_shape
        with torch.no_grad():
            weights = {k: v.detach().to(device)
                       for k, v in mixing_weights(s, dict(arch.alphas), dict(arch.betas)).items()}
            net(torch.zeros(1, in_channels, probe, probe, device=device), weights)
    finally:
        torch.set_num_threads(threads)
    # An un-weighted auxiliary skip (DARTS-) adds an identity per edge: no FLOPs worth counting.
    return total[0] * (size / probe) ** 2


def _same_shape(x):
    return x


@lru_cache(maxsize=None)
def _num_alpha(space: str) -> int:
    from ..spaces import get_space
    return get_space(space).num_alpha


@lru_cache(maxsize=None)
def _kept_fraction(space: str) -> float:
    """The share of the supernet's candidate ops (``none`` aside) a derived cell keeps: the space's inputs per node
    (DARTS, LHD Base: two), one per edge (NAS-Bench-201). A rough scale from supernet to discrete network."""
    from ..spaces import get_space

    s = get_space(space)
    cell = "normal"
    total = sum(sum(1 for op in ops if op != "none") for ops in s.ops[cell])
    kept = len(s.ops[cell]) if s.kind == "nb201" else s.keep * s.steps
    return min(kept / max(total, 1), 1.0)


def _forget_costs() -> None:
    """Drop the memos above, keyed by space name, when a name gets another definition (an edited space file)."""
    for memo in (supernet_flops, darts_pt_work, _num_alpha, _kept_fraction):
        memo.cache_clear()


on_redefine(_forget_costs)
