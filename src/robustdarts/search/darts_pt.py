"""DARTS-PT: perturbation-based architecture selection (Wang et al., "Rethinking Architecture Selection in
Differentiable NAS", ICLR 2021; ruocwang/darts-pt ``sota/cnn/projection.py``, ``nasbench201/projection.py``; spec D §4).

Instead of reading the genotype off α's magnitudes, DARTS-PT asks the trained supernet: on a randomly chosen
undecided edge, remove one op at a time (its mixing weight set to 0, the others kept, no renormalization), measure
the supernet's validation accuracy (no gradients, BN in train mode), and keep the op whose removal hurts most; the
edge is then fixed to that op's one-hot. Between decisions the supernet is fine-tuned (weights at lr/10 = 0.0025
constant, α by its usual arch step on the edges still soft) for ``tune_epochs`` epochs (5 in the paper). On the
DARTS kind of space, after every edge has its op, the topology is selected the same way: for each node with more
than two inputs, in random order, the edge whose removal hurts least is dropped until two remain. NAS-Bench-201 has
op selection only. The genotype is parsed from the projected weights with the space's own rule.

Choices of ours, stated: the edge order is drawn from a generator seeded by ``seed`` (the reference uses the global
RNG); ``none`` is never chosen on the DARTS kind (its genotypes have no ``none`` edge; its removal is still measured
and recorded), while NAS-Bench-201 may choose it as its genotypes allow; the fine-tuning keeps the run's last epoch
for every per-epoch schedule; the reference's one epoch of training after the last decision does not change the
genotype and is skipped. Measuring on fewer validation images (``val_images``) and fine-tuning for fewer epochs
are CPU-sized options; the result records both, every measurement and each decision's accuracy drop.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import torch

from ..data import eval_batches
from ..discretize import derive
from ..errors import RobustDartsError
from ..preserve import preserved
from ..relax import detached
from ..runs import RunDir, atomic_write_text

Weights = dict[str, torch.Tensor]


@dataclasses.dataclass
class Projection:
    """The decisions so far: per cell type, rows fixed to a one-hot op and edges removed."""

    onehot: dict[str, torch.Tensor]  # (edges, ops) one-hot rows of decided edges (zeros elsewhere)
    decided: dict[str, torch.Tensor]  # (edges,) bool
    removed: dict[str, torch.Tensor]  # (edges,) bool: topology selection dropped the edge

    @classmethod
    def empty(cls, space) -> "Projection":
        shape = {c: space.alpha_shape(c) for c in space.cell_types}
        return cls({c: torch.zeros(s) for c, s in shape.items()},
                   {c: torch.zeros(s[0], dtype=torch.bool) for c, s in shape.items()},
                   {c: torch.zeros(s[0], dtype=torch.bool) for c, s in shape.items()})

    def apply(self, weights: Weights) -> Weights:
        """Decided rows become their one-hot, removed edges zero; undecided rows keep their (graph-carrying) weights."""
        out = dict(weights)
        for c, onehot in self.onehot.items():
            w = weights[c]
            w = torch.where(self.decided[c].to(w.device).unsqueeze(-1), onehot.to(w), w)
            out[c] = torch.where(self.removed[c].to(w.device).unsqueeze(-1), torch.zeros_like(w), w)
        return out


class ProjectedRecipe:
    """A recipe whose mixing weights pass through a ``Projection``; every other piece is the wrapped recipe's."""

    def __init__(self, recipe, projection: Projection):
        self.base, self.projection = recipe, projection

    def relax(self, alphas, betas, ctx, purpose):
        return self.projection.apply(self.base.relax(alphas, betas, ctx, purpose))

    def __getattr__(self, name):
        return getattr(self.base, name)


def _without(weights: Weights, cell: str, edge: int, op: int | None = None) -> Weights:
    """The weights with one op (or, ``op`` None, a whole edge) of one cell type set to zero, nothing renormalized."""
    w = weights[cell].clone()
    if op is None:
        w[edge] = 0.0
    else:
        w[edge, op] = 0.0
    return {**weights, cell: w}


def select(space, projection: Projection, current: Callable[[], Weights], measure: Callable[[Weights], float],
           tune: Callable[[], None], generator: torch.Generator, allow_none: bool) -> list[dict]:
    """The DARTS-PT schedule on a supernet seen only through ``current()`` (its eval weights under ``projection``,
    which this fills in), ``measure(weights)`` (validation accuracy) and ``tune()`` (fine-tuning between
    decisions). Returns the decisions, each with every measured accuracy and the drop of the chosen removal."""
    decisions: list[dict] = []
    events: list[tuple[str, int | None]] = [("op", None)] * space.num_edges
    if space.kind == "darts":
        events += [("edge", None)] * sum(1 for n in range(space.steps) if len(space.node_edges(n)) > 2)
    node_order = {c: [n for n in torch.randperm(space.steps, generator=generator).tolist()
                      if len(space.node_edges(n)) > 2] for c in space.cell_types}
    for index, (kind, _) in enumerate(events):
        for cell in space.cell_types:
            weights = current()
            base = measure(weights)
            if kind == "op":
                undecided = [e for e in range(space.num_edges) if not projection.decided[cell][e]]
                edge = undecided[int(torch.randint(len(undecided), (1,), generator=generator))]
                ops = space.ops[cell][edge]
                accs = {name: measure(_without(weights, cell, edge, o)) for o, name in enumerate(ops)}
                candidates = [o for o, name in enumerate(ops) if allow_none or name != "none"]
                chosen = min(candidates, key=lambda o: (accs[ops[o]], o))  # removal hurts most; ties: first op
                projection.onehot[cell][edge].zero_()
                projection.onehot[cell][edge, chosen] = 1.0
                projection.decided[cell][edge] = True
                decisions.append({"kind": "op", "cell": cell, "edge": edge, "node": space.edges[edge][0],
                                  "source": space.edges[edge][1], "accuracy": base, "without": accs,
                                  "chosen": ops[chosen], "drop": base - accs[ops[chosen]]})
            else:
                node = node_order[cell].pop(0)
                removed = []
                while True:
                    kept = [e for e in space.node_edges(node) if not projection.removed[cell][e]]
                    if len(kept) <= 2:
                        break
                    accs = {e: measure(_without(current(), cell, e)) for e in kept}
                    drop = max(kept, key=lambda e: (accs[e], -e))  # removal hurts least
                    projection.removed[cell][drop] = True
                    removed.append({"edge": drop, "source": space.edges[drop][1], "without": accs})
                decisions.append({"kind": "edge", "cell": cell, "node": node, "accuracy": base, "removed": removed,
                                  "kept": [e for e in space.node_edges(node) if not projection.removed[cell][e]]})
        if index < len(events) - 1:
            tune()
    return decisions


def darts_pt(run_dir: str | Path, *, tune_epochs: int = 5, val_images: int | None = None, seed: int | None = None,
             progress: bool = False):
    """(genotype, report): DARTS-PT on a finished search run, from its last checkpoint. Writes ``darts_pt.json``
    into the run directory (atomically) and leaves the run's own files untouched."""
    from .loop import Search

    run = RunDir(run_dir)
    if not run.checkpoint_path.exists():
        raise RobustDartsError(f"{run_dir} has no checkpoint; DARTS-PT needs the trained supernet of a search run.")
    search = Search.resume(run_dir, progress=progress)
    space, cfg = search.space, search.cfg
    if space.kind not in ("darts", "nb201"):
        raise RobustDartsError(f"DARTS-PT selects on the DARTS-kind spaces and NAS-Bench-201, not on {space.name!r}; "
                               f"use --policy lhd there.")
    if tune_epochs < 0:
        raise RobustDartsError(f"tune_epochs must be 0 or more, not {tune_epochs}.")
    trained_epoch = search.epoch - 1  # the epoch whose supernet is selected on
    search.run_dir = None  # fine-tuning writes nothing into the run
    projection = Projection.empty(space)
    search.recipe = ProjectedRecipe(search.recipe, projection)
    # Fine-tuning as the reference: SGD re-created at lr/10, constant, at the last epoch's schedules; α keeps its
    # Adam state and steps on the edges still soft.
    search.cfg = dataclasses.replace(cfg, lr=cfg.lr / 10, lr_schedule="constant")
    search.epoch = max(cfg.epochs - 1, 0)
    search.w_opt = torch.optim.SGD(search.supernet.parameters(), lr=search.cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    images = search.val_set if val_images is None else search.val_set.subset(range(min(val_images,
                                                                                        len(search.val_set))))
    batches = list(eval_batches(images, 256, search.device))

    @torch.no_grad()
    def measure(weights: Weights) -> float:
        with preserved(search.supernet, device=search.device):  # train-mode BN must not move the statistics
            search.supernet.train()
            correct = sum(int((search.supernet(x, weights).argmax(1) == y).sum()) for x, y in batches)
        return correct / sum(len(y) for _, y in batches)

    def current() -> Weights:
        with torch.no_grad():
            return detached(search.relaxed(search.context(), "eval"))

    def tune() -> None:
        for _ in range(tune_epochs):
            search.train_epoch()

    generator = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    decisions = select(space, projection, current, measure, tune, generator, allow_none=space.kind == "nb201")
    weights = current()
    genotype = derive(space, {c: weights[c] for c in space.cell_types})
    report = {"policy": "darts-pt", "epoch": trained_epoch, "tune_epochs": tune_epochs, "val_images": len(images),
              "final_accuracy": measure(weights), "decisions": decisions, "genotype": genotype.to_dict()}
    atomic_write_text(run.path / "darts_pt.json", json.dumps(report, indent=2))
    return genotype, report


__all__ = ["Projection", "ProjectedRecipe", "select", "darts_pt"]
