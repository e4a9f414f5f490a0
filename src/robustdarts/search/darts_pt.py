"""DARTS-PT: perturbation-based architecture selection (Wang et al., "Rethinking Architecture Selection in
Differentiable NAS", ICLR 2021; ruocwang/darts-pt ``sota/cnn/projection.py``, ``nasbench201/projection.py``; spec D §4).

Instead of reading the genotype off α's magnitudes, DARTS-PT asks the trained supernet: on a randomly chosen
undecided edge, remove one op at a time (its mixing weight set to 0, the others kept, no renormalization), measure
the supernet's validation accuracy (no gradients, BN in train mode), and keep the op whose removal hurts most; the
edge is then fixed to that op's one-hot. Between decisions the supernet is fine-tuned (weights at lr/10 = 0.0025
constant, α by its usual arch step on the edges still soft) for ``tune_epochs`` epochs (5 in the paper). On the
DARTS kind of space, after every edge has its op, the topology is selected the same way: for each node with more
than two inputs, in random order, the edge whose removal hurts least is dropped until two remain (the dropped ones
stay live until the node is decided; ties go to the lower op and to the later edge, as the reference's
comparisons). NAS-Bench-201 has op selection only. The genotype is parsed from the projected weights with the
space's own rule. Accuracies are measured as the reference's ``infer`` on its validation loader: shuffled batches of
the search's size, with the search's augmentation.

Choices of ours, stated: the edges and nodes are drawn from a generator seeded by ``seed`` (the reference uses the
global RNG), and the measurement batches from a stream of their own; ``none`` is never chosen on the DARTS kind
(its genotypes have no ``none`` edge; its removal is still measured and recorded), while NAS-Bench-201 may choose
it as its genotypes allow; the fine-tuning keeps the run's last epoch for every per-epoch schedule; the reference's
one epoch of training after the last decision does not change the genotype and is skipped. Measuring on fewer
validation images (``val_images``) and fine-tuning for fewer epochs are CPU-sized options; the result records both,
every measurement and each decision's accuracy drop.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import torch

from ..config import SearchConfig
from ..data import BatchStream
from ..discretize import derive
from ..errors import RobustDartsError
from ..preserve import preserved
from ..relax import detached
from ..runs import RunDir, atomic_write_text
from ..spaces import get_space

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
           tune: Callable[[int], None], generator: torch.Generator, allow_none: bool, tune_epochs: int = 1,
           on_decision: Callable[[int, int], None] | None = None) -> list[dict]:
    """The DARTS-PT schedule on a supernet seen only through ``current()`` (its eval weights under ``projection``,
    which this fills in), ``measure(weights)`` (validation accuracy) and ``tune(epochs)`` (fine-tuning between
    decisions). Returns the decisions, each with every measured accuracy and the drop of the chosen removal;
    ``on_decision(done, total)`` follows each cell type's decision (the progress bar).

    Between two decisions the supernet is tuned for ``tune_epochs`` epochs, except before NAS-Bench-201's last one:
    its reference tunes 5·(edges − 1) epochs in all and decides at epochs 0, 5, …, 20 and at the last, 24.

    The rules are ``project_op`` and ``project_edge`` of ``sota/cnn/projection.py``, comparisons included: an op's
    removal is kept only when strictly worse than the best so far (ties: the lower op), an edge's removal whenever
    it is at least as good (ties: the later edge); while a node's edges are eliminated one by one, the ones already
    eliminated stay live in every measurement (the reference zeroes them only once the node's two edges are chosen).
    Each event draws its edge, or node, uniformly among the undecided ones, as ``np.random.choice`` there does."""
    decisions: list[dict] = []
    choice_nodes = _choice_nodes(space)
    events = ["op"] * space.num_edges + ["edge"] * len(choice_nodes)
    total = decision_count(space)
    undecided_nodes = {c: list(choice_nodes) for c in space.cell_types}
    for index, kind in enumerate(events):
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
                nodes = undecided_nodes[cell]
                node = nodes.pop(int(torch.randint(len(nodes), (1,), generator=generator)))
                kept, removed = list(space.node_edges(node)), []
                while len(kept) > space.keep:
                    accs = {e: measure(_without(weights, cell, e)) for e in kept}
                    drop = max(reversed(kept), key=lambda e: accs[e])  # removal hurts least; ties: the later edge
                    kept.remove(drop)
                    removed.append({"edge": drop, "source": space.edges[drop][1], "without": accs})
                for r in removed:
                    projection.removed[cell][r["edge"]] = True
                decisions.append({"kind": "edge", "cell": cell, "node": node, "accuracy": base, "removed": removed,
                                  "kept": kept})
            if on_decision is not None:
                on_decision(len(decisions), total)
        if index < len(events) - 1:
            short = space.kind == "nb201" and index == len(events) - 2
            tune(max(tune_epochs - 1, 0) if short else tune_epochs)
    return decisions


def _choice_nodes(space) -> list[int]:
    """The nodes with a topology decision: on the DARTS kind, those with more inputs than the space keeps (two in
    DARTS); none on NAS-Bench-201."""
    if space.kind != "darts":
        return []
    return [n for n in range(space.steps) if len(space.node_edges(n)) > space.keep]


def decision_count(space) -> int:
    """How many decisions ``select`` makes on ``space``: one per edge and one per node with a topology decision,
    for each cell type (34 on the DARTS space, 12 on NAS-Bench-201)."""
    return (space.num_edges + len(_choice_nodes(space))) * len(space.cell_types)


def darts_pt(run_dir: str | Path, *, tune_epochs: int = 5, val_images: int | None = None, seed: int | None = None,
             progress: bool = False, console=None, listener: Callable[[dict], None] | None = None):
    """(genotype, report): DARTS-PT on a finished search run, from its last checkpoint. Writes ``darts_pt.json``
    into the run directory (atomically) and leaves the run's own files untouched.

    ``progress`` draws a bar of the decisions and of each fine-tuning epoch on ``console`` (a terminal only);
    ``listener`` receives the same updates as dicts: ``decisions``/``total`` after each decision, and
    ``tune_epoch``/``tune_epochs`` after each fine-tuning epoch."""
    from ..progressbar import progress_bar
    from .loop import Search

    # Checked before minutes of loading and fine-tuning: 0 images used to end in a ZeroDivisionError at the first
    # measurement, after the supernet was loaded.
    if tune_epochs < 0:
        raise RobustDartsError(f"--tune-epochs is {tune_epochs}, but must be 0 or more.")
    if val_images is not None and val_images < 1:
        raise RobustDartsError(f"--val-images is {val_images}, but must be at least 1 (or left out: the whole "
                               f"validation half).")
    run = RunDir(run_dir)
    if not run.checkpoint_path.exists():
        raise RobustDartsError(f"{run_dir} has no checkpoint; DARTS-PT needs the trained supernet of a search run.")
    recorded = run.load_config(SearchConfig)  # read once: Search.resume takes it rather than reading it again
    kind = get_space(recorded.space).kind  # before loading data and the supernet
    if kind not in ("darts", "nb201"):
        raise RobustDartsError(f"DARTS-PT selects on the DARTS-kind spaces and NAS-Bench-201, not on a {kind!r} "
                               f"space; use --policy lhd there.")
    search = Search.resume(run_dir, cfg=recorded, progress=False)
    space, cfg = search.space, search.cfg
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
    search.augment.cutout_prob = search.recipe.cutout_prob(search.context())  # the last epoch's, as the reference
    images = search.val_set if val_images is None else search.val_set.subset(range(min(val_images,
                                                                                        len(search.val_set))))
    selection_seed = cfg.seed if seed is None else seed
    # The reference measures on its validation loader (proj_queue = valid_queue): the search's batch size (64),
    # a new shuffle for every measurement, the search's training augmentation, the last batch kept short. With
    # train-mode BN the batches' composition enters every accuracy, so it is followed here: one pass of a stream
    # of its own (seeded from the selection seed, so the tuning's batches do not depend on how often it measures).
    stream = BatchStream(images, cfg.batch_size, search.augment, selection_seed * 1000 + 17, search.device,
                         drop_last=False)

    @torch.no_grad()
    def measure(weights: Weights) -> float:
        # BN running statistics are restored after each measurement (the reference lets them move): no decision
        # reads them, since every measurement and every tuning step normalizes with batch statistics.
        with preserved(search.supernet, device=search.device):
            search.supernet.train()
            correct, seen = torch.zeros((), dtype=torch.long, device=search.device), 0
            for _ in range(stream.steps_per_epoch):
                x, y = next(stream)
                correct += (search.supernet(x, weights).argmax(1) == y).sum()  # summed on the device: one sync
                seen += len(y)
        return int(correct) / seen

    def current() -> Weights:
        with torch.no_grad():
            return detached(search.relaxed(search.context(), "eval"))

    total = decision_count(space)
    steps = search.train_stream.steps_per_epoch
    state = {"decisions": 0, "total": total}
    bar = progress_bar(console, progress, speed_estimate_period=24 * 3600.0)  # decisions take minutes each

    def decided(done: int, total: int) -> None:
        state["decisions"] = done
        bar.update(decisions_task, completed=done)
        if listener is not None:
            listener(dict(state))

    def tune(epochs: int) -> None:
        bar.reset(tune_task, total=epochs * steps, visible=epochs > 0)
        for k in range(epochs):
            bar.update(tune_task, description=f"fine-tuning epoch {k + 1}/{epochs}")
            search.train_epoch(bar, tune_task)
            if listener is not None:
                listener({**state, "tune_epoch": k + 1, "tune_epochs": epochs})

    generator = torch.Generator().manual_seed(selection_seed)
    with bar:
        decisions_task = bar.add_task("DARTS-PT decisions", total=total)
        tune_task = bar.add_task("fine-tuning", total=tune_epochs * steps, visible=False)
        decisions = select(space, projection, current, measure, tune, generator, allow_none=space.kind == "nb201",
                           tune_epochs=tune_epochs, on_decision=decided)
    weights = current()
    genotype = derive(space, {c: weights[c] for c in space.cell_types})
    report = {"policy": "darts-pt", "epoch": trained_epoch, "tune_epochs": tune_epochs, "val_images": len(images),
              "measure_batch_size": cfg.batch_size, "final_accuracy": measure(weights), "decisions": decisions,
              "genotype": genotype.to_dict()}
    atomic_write_text(run.path / "darts_pt.json", json.dumps(report, indent=2))
    return genotype, report


__all__ = ["Projection", "ProjectedRecipe", "select", "decision_count", "darts_pt"]
