"""Operation-magnitude selective stop (Zhang & Ding, CIKM 2021, arXiv 2109.13466; spec L §6.2).

After each epoch the operation magnitude m_e[o] = Σ_edges softmax(α_edge)[o] summarizes how much weight op o
holds in the cell. The selective-stop epoch is the epoch where the target op (the strongest parametric op) was
strongest, counting only epochs in which it was still the dominant op. The search itself runs to the end; the
stop epoch is picked afterwards from the per-epoch archive of α, and its genotype is the result.

Follows ``Selective-Stop:AutoDL-Projects_ss/exps/algos/DARTS-V1.py`` (NB201, gated) and ``SS-DARTS/train_search.py``
(DARTS space: an ungated per-op report only).
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import torch

from ..errors import RobustDartsError, unknown
from ..relax import edge_softmax
from ..spaces import Space, get_space

# A list indexed by epoch, or a dict epoch → entry; an entry is the ``ArchParams.as_dict()`` format
# ({"alpha/normal": tensor, ...}) or the α_normal tensor itself.
ArchiveEntry = Mapping[str, torch.Tensor] | torch.Tensor
Archive = Sequence[ArchiveEntry] | Mapping[int | str, ArchiveEntry]
Variant = Literal["magnitude", "res_o"]
VARIANTS = ("magnitude", "res_o")

# The reference's value for an epoch gated out of the res_o record.
GATED_RES_O = -10.0


def default_target(space: Space | str) -> str:
    """nor_conv_3x3 on NB201 (the reference's index 3); sep_conv_3x3 elsewhere.

    The DARTS-space code names no target (spec L §6.2: NOT FOUND); sep_conv_3x3 as "the dominant parametric conv"
    is our inference.
    """
    return "nor_conv_3x3" if get_space(space).kind == "nb201" else "sep_conv_3x3"


def op_order(space: Space | str, cell_type: str = "normal") -> tuple[str, ...]:
    """The op names of a cell type in first-seen order over its edges (= the op list of uniform spaces)."""
    names: dict[str, None] = {}
    for edge_ops in get_space(space).ops[cell_type]:
        names.update(dict.fromkeys(edge_ops))
    return tuple(names)


def operation_magnitude(alpha: torch.Tensor, space: Space | str, cell_type: str = "normal") -> torch.Tensor:
    """m[o] = Σ_edges w[edge, o] with w the space's own relaxation at τ = 1, ordered as ``op_order``.

    Per-edge softmax for DARTS/NB201 (the reference); node-joint for LHD (our choice, its relaxation). Ops are
    summed by name, so spaces with per-edge op lists (S1) are handled too.
    """
    space = get_space(space)
    weights = edge_softmax(space, alpha.detach().double())
    names = op_order(space, cell_type)
    index = {name: i for i, name in enumerate(names)}
    magnitude = torch.zeros(len(names), dtype=torch.float64)
    for row, edge_ops in enumerate(space.ops[cell_type]):
        for col, name in enumerate(edge_ops):
            magnitude[index[name]] += weights[row, col]
    return magnitude


def _epochs_and_alphas(archive: Archive, cell_type: str) -> tuple[list[int], list[torch.Tensor]]:
    """(epoch numbers, α of ``cell_type``) in epoch order, from a list (index = epoch) or a dict epoch → entry."""
    if isinstance(archive, Mapping):
        items = sorted((int(epoch), entry) for epoch, entry in archive.items())
    else:
        items = list(enumerate(archive))
    if not items:
        raise RobustDartsError("the architecture archive is empty; selective stop needs at least one epoch.")
    key = f"alpha/{cell_type}"
    alphas = []
    for epoch, entry in items:
        if isinstance(entry, torch.Tensor):
            alphas.append(entry)
        elif key in entry:
            value = entry[key]
            alphas.append(value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device="cpu"))
        else:
            raise RobustDartsError(f"archive epoch {epoch} has no {key!r}; it has: {', '.join(sorted(entry))}.")
    return [epoch for epoch, _ in items], alphas


def magnitude_history(archive: Archive, space: Space | str,
                      cell_type: str = "normal") -> tuple[list[int], torch.Tensor]:
    """(epochs, magnitudes): one ``operation_magnitude`` row per archived epoch, in epoch order."""
    epochs, alphas = _epochs_and_alphas(archive, cell_type)
    return epochs, torch.stack([operation_magnitude(a, space, cell_type) for a in alphas])


def selective_stop_scores(archive: Archive, space: Space | str, target_op: str | None = None,
                          variant: Variant = "magnitude", gated: bool = True) -> tuple[list[int], list[float]]:
    """(epochs, score per epoch) of the gated selective-stop record (α_normal).

    Gating (NB201 rule): until the target op first has the largest magnitude every epoch is recorded (bootstrap);
    after that an epoch is recorded only while the target is still the argmax, otherwise it gets the gated value
    (0 for "magnitude" — the reference appends a zero vector — and −10 for "res_o"). Scores: "magnitude" m_e[o*];
    "res_o" r_e = Σ_o (m_e[o*] − m_e[o]). ``gated=False`` records every epoch.
    """
    space = get_space(space)
    if variant not in VARIANTS:
        raise unknown("selective-stop variant", variant, VARIANTS)
    names = op_order(space, "normal")
    target_op = target_op or default_target(space)
    if target_op not in names:
        raise unknown(f"target op for space {space.name!r}", target_op, names)
    target = names.index(target_op)

    epochs, magnitudes = magnitude_history(archive, space, "normal")
    scores: list[float] = []
    bootstrapping = True
    for m in magnitudes:
        target_on_top = int(torch.argmax(m)) == target  # first maximum on ties, like numpy's argmax
        score = float(m[target]) if variant == "magnitude" else float((m[target] - m).sum())
        if target_on_top:
            bootstrapping = False
        if gated and not bootstrapping and not target_on_top:
            score = 0.0 if variant == "magnitude" else GATED_RES_O
        scores.append(score)
    return epochs, scores


def selective_stop_epoch(archive: Archive, space: Space | str, target_op: str | None = None,
                         variant: Variant = "magnitude", gated: bool = True) -> int:
    """The selective-stop epoch e* = argmax over the gated record (first maximum on ties), as an archive epoch.

    The reference applies this rule on NB201; we apply it in every space (its DARTS-space code only logs
    ``selective_stop_report``). ``target_op`` defaults to ``default_target(space)``.
    """
    epochs, scores = selective_stop_scores(archive, space, target_op, variant, gated)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return epochs[best]


def selective_stop_report(archive: Archive, space: Space | str, cell_type: str = "normal") -> dict[str, int]:
    """For each op, the epoch where its magnitude peaked (no gating): the SS-DARTS DARTS-space log."""
    epochs, magnitudes = magnitude_history(archive, space, cell_type)
    names = op_order(space, cell_type)
    peaks: dict[str, int] = {}
    for i, name in enumerate(names):
        column = magnitudes[:, i].tolist()
        peaks[name] = epochs[max(range(len(column)), key=lambda e: (column[e], -e))]
    return peaks


__all__ = ["default_target", "op_order", "operation_magnitude", "magnitude_history", "selective_stop_scores",
           "selective_stop_epoch", "selective_stop_report", "VARIANTS", "GATED_RES_O"]
