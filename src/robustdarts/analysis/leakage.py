"""Information-bypass leakage and the discretization gap of a supernet (spec L §5.1).

Zhang & Ding (arXiv 2306.06858) attribute DARTS's collapse and its supernet/final-net discrepancy to "information
bypass leakage": candidate paths that carry mixing weight in the relaxed supernet pass information that the derived
(pruned) network will not have. Two measurements of it, logged by the search loop every ``leakage_every`` epochs:

**Leaked mass** (``leaked_mass``), per cell type. K = the (edge, op) pairs the derived genotype keeps. For an
intermediate node i with incoming edges E_i and mixing weights w[e, o]:

    leak_i = Σ_{e∈E_i, o≠none, (e,o)∉K} w[e, o]  /  Σ_{e∈E_i, o≠none} w[e, o]      (0 when the denominator is 0)

i.e. the share of the node's information-carrying mass that sits on pairs the final network drops. ``none`` is
left out of both sums, since its output is zero whatever its weight: mass on ``none`` hides nothing (a kept op
with weight 0.1 beside ``none`` at 0.9 is a scale mismatch, not a leak). ``leaked_<cell>`` = mean_i leak_i.
- DARTS/S1-S4: each edge row is a distribution; the node sums (2+i) of them, and K holds the two kept edges'
  chosen ops. With uniform weights this is 1 − 1/|E_i| per node.
- NAS-Bench-201: K holds one op per edge (possibly ``none``, which drops the edge: all its mass then leaks).
- LHD (node-joint): the node's block of (input, op) pairs is one distribution over 7·|E_i| entries, so
  leak_i = 1 − Σ_{(e,o)∈K} w[e, o], with K the top-k pairs of the node. A node the genotype prunes (in neither
  output set and consumed by no kept node) has no pair in K, so leak_i = 1: the supernet still feeds it into its
  outputs, the final network does not. LHD's outputs leak too: ``leaked_<cell>_sum`` = the sum-output softmax mass
  on nodes outside the sum set, ``leaked_<cell>_cat`` = the share of the σ gate mass on nodes outside the concat set.
Per-cell weight lists (Λ-DARTS) are averaged over the copies.

**Discretization gap** (``discretization_gap``): validation accuracy of the supernet with the given relaxed
weights minus the accuracy of the *same* supernet (same network weights) with the one-hot weights of the derived
genotype (kept pairs 1, all else exactly 0, so dropped ops are not even computed). LHD outputs are one-hot too:
sum weight 1 on the sum set; gate 1 on the concat set and on every node a kept node consumes (the supernet feeds
later nodes the *gated* state, so a consumed node must keep gate 1; its channels then also stay in the concat
output — the one place where the supernet cannot express the discrete LHD cell exactly).

BN statistics: the running statistics were gathered under the relaxed mixture and are wrong for the one-hot net,
so both nets get fresh statistics from the same few training batches (train mode, cumulative average), then are
evaluated in eval mode on the same validation batches. Treating both alike is what makes the gap an architecture
effect only: weights that already are the one-hot of the genotype give a gap of exactly 0, whereas comparing
stale running statistics against recalibrated ones would not. The supernet's BN buffers and momenta, its
train/eval mode and the RNG state are restored afterwards; nothing else is touched (no optimizer, no stream:
the batches are the first ones of each half, in order, without augmentation).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from ..data.augment import Normalize
from ..genotype import Genotype
from ..preserve import preserved
from ..spaces import Space, get_space

CALIBRATION_BATCHES = 4
EVAL_BATCHES = 4


# ---------------------------------------------------------------------------------------------------------------
# Kept pairs and one-hot weights

def kept_pairs(space: Space, genotype: Genotype, cell: str) -> dict[int, set[tuple[int, int]]]:
    """Per intermediate node, the (α row, op column) pairs the genotype keeps."""
    kept: dict[int, set[tuple[int, int]]] = {node: set() for node in range(space.steps)}
    for node, pairs in enumerate(genotype.node_inputs(cell)):
        rows = space.node_edges(node)
        for op, source in pairs:
            row = rows[source]
            kept[node].add((row, space.ops[cell][row].index(op)))
    return kept


def consumed_nodes(space: Space, genotype: Genotype, cell: str) -> set[int]:
    """Nodes that some kept pair takes as its input."""
    return {source - space.num_inputs for pairs in genotype.node_inputs(cell) for _, source in pairs
            if source >= space.num_inputs}


def onehot_weights(space: Space | str, genotype: Genotype, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The mixing weights of the derived architecture: 1.0 on kept pairs, exactly 0.0 elsewhere (LHD outputs too)."""
    space = get_space(space)
    weights: dict[str, torch.Tensor] = {}
    for cell in space.cell_types:
        table = torch.zeros(space.alpha_shape(cell), dtype=dtype, device=device)
        for pairs in kept_pairs(space, genotype, cell).values():
            for row, col in pairs:
                table[row, col] = 1.0
        weights[cell] = table
        if space.kind == "lhd":
            output = getattr(genotype, f"{cell}_output")
            sum_w = torch.zeros(space.steps, dtype=dtype, device=device)
            sum_w[list(output.sum)] = 1.0
            gates = torch.zeros(space.steps, dtype=dtype, device=device)
            gates[sorted(set(output.concat) | consumed_nodes(space, genotype, cell))] = 1.0
            weights[f"{cell}_sum"], weights[f"{cell}_cat"] = sum_w, gates
    return weights


# ---------------------------------------------------------------------------------------------------------------
# Leaked mass

def _tables(value) -> list[torch.Tensor]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [torch.as_tensor(v, device="cpu" if not isinstance(v, torch.Tensor) else v.device).detach()
            .to("cpu", torch.float64) for v in values]


def node_leaks(space: Space, table: torch.Tensor, genotype: Genotype, cell: str) -> list[float]:
    """leak_i of every intermediate node (see the module docstring) for one (edges, ops) weight table."""
    kept = kept_pairs(space, genotype, cell)
    leaks = []
    for node in range(space.steps):
        total = dropped = 0.0
        for row in space.node_edges(node):
            for col, op in enumerate(space.ops[cell][row]):
                if op == "none":
                    continue
                w = float(table[row, col])
                total += w
                if (row, col) not in kept[node]:
                    dropped += w
        leaks.append(dropped / total if total > 0 else 0.0)
    return leaks


def leaked_mass(space: Space | str, weights: Mapping[str, torch.Tensor], genotype: Genotype) -> dict[str, float]:
    """``leaked_<cell>`` per cell type (and LHD's ``leaked_<cell>_sum`` / ``_cat``); see the module docstring."""
    space = get_space(space)
    out: dict[str, float] = {}
    for cell in space.cell_types:
        per_copy = [sum(node_leaks(space, t, genotype, cell)) / space.steps for t in _tables(weights[cell])]
        out[f"leaked_{cell}"] = sum(per_copy) / len(per_copy)
        if space.kind == "lhd":
            output = getattr(genotype, f"{cell}_output")
            sum_w = _tables(weights[f"{cell}_sum"])[0]
            gates = _tables(weights[f"{cell}_cat"])[0]
            outside_sum = [i for i in range(space.steps) if i not in output.sum]
            outside_cat = [i for i in range(space.steps) if i not in output.concat]
            out[f"leaked_{cell}_sum"] = float(sum_w[outside_sum].sum() / sum_w.sum().clamp_min(1e-300))
            out[f"leaked_{cell}_cat"] = float(gates[outside_cat].sum() / gates.sum().clamp_min(1e-300))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Discretization gap

def _first_batches(imageset, batches: int, batch_size: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``batches`` batches of a set, in order, normalized, without augmentation (no RNG, no stream)."""
    normalize = Normalize(imageset.mean, imageset.std)
    out = []
    for start in range(0, min(len(imageset), batches * batch_size), batch_size):
        images = imageset.images[start:start + batch_size].to(device)
        out.append((normalize(images), imageset.labels[start:start + batch_size].to(device)))
    return out


def _batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrated_accuracy(supernet: nn.Module, weights: Mapping, calibration: Sequence, evaluation: Sequence) -> float:
    """Accuracy of ``supernet(x, weights)`` after re-estimating every BN's statistics on ``calibration``.

    Changes the BN buffers and the mode: call it inside ``preserve.preserved``. The BN momenta come back as they
    were (the recalibration needs a cumulative average, momentum None).
    """
    norms = _batch_norms(supernet)
    momenta = [m.momentum for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        supernet.train()
        for x, _ in calibration:
            supernet(x, weights)
        supernet.eval()
        correct = seen = 0
        for x, y in evaluation:
            correct += int((supernet(x, weights).argmax(1) == y).sum())
            seen += len(y)
        return correct / max(seen, 1)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def discretization_gap(search, weights: Mapping, genotype: Genotype, calibration_batches: int = CALIBRATION_BATCHES,
                       eval_batches: int = EVAL_BATCHES, batch_size: int | None = None) -> dict[str, float]:
    """``val_acc_relaxed``, ``val_acc_onehot`` and ``gap`` = their difference (see the module docstring)."""
    supernet = search.supernet
    batch_size = batch_size or search.cfg.batch_size
    device = next(supernet.parameters()).device
    calibration = _first_batches(search.train_set, calibration_batches, batch_size, device)
    evaluation = _first_batches(search.val_set, eval_batches, batch_size, device)
    dtype = next(supernet.parameters()).dtype
    onehot = onehot_weights(search.space, genotype, dtype=dtype, device=device)
    relaxed = {k: ([t.detach().to(device, dtype) for t in v] if isinstance(v, (list, tuple))
                   else torch.as_tensor(v, device=device).detach().to(device, dtype)) for k, v in weights.items()}
    with preserved(supernet, device=device):
        relaxed_acc = recalibrated_accuracy(supernet, relaxed, calibration, evaluation)
        onehot_acc = recalibrated_accuracy(supernet, onehot, calibration, evaluation)
    return {"val_acc_relaxed": relaxed_acc, "val_acc_onehot": onehot_acc, "gap": relaxed_acc - onehot_acc}


def leakage_metrics(search, weights: Mapping, genotype: Genotype, calibration_batches: int = CALIBRATION_BATCHES,
                    eval_batches: int = EVAL_BATCHES) -> dict[str, float]:
    """Leaked mass of ``weights`` with respect to ``genotype`` and the discretization gap (the loop's hook).

    The loop passes the method's derivation weights (those the genotype was read from). Changes no training state.
    """
    metrics = leaked_mass(search.space, weights, genotype)
    metrics.update(discretization_gap(search, weights, genotype, calibration_batches, eval_batches))
    return metrics


__all__ = ["kept_pairs", "consumed_nodes", "onehot_weights", "node_leaks", "leaked_mass", "recalibrated_accuracy",
           "discretization_gap", "leakage_metrics", "CALIBRATION_BATCHES", "EVAL_BATCHES"]
