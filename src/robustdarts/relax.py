"""Relaxations: architecture logits -> the mixing weights that ``supernet(x, weights)`` consumes.

A mixing-weights dict has one (edges, ops) tensor per cell type under its name ('normal', 'reduce'), or a list of
such tensors, one per cell of that type (per-cell copies, as Λ-DARTS needs). LHD adds '<cell>_sum' (softmax over
the nodes for the sum output) and '<cell>_cat' (sigmoid gates for the concat output).

Everything here is a plain tensor function of the logits, so methods compose it freely and ``torch.func`` can
differentiate through it.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .spaces import Space

Weights = dict[str, torch.Tensor]


def node_joint_softmax(space: Space, alpha: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """LHD: softmax over all (input, op) pairs of a node jointly; returns the (edges, ops) layout of ``alpha``."""
    blocks = []
    for node in range(space.steps):
        rows = space.node_edges(node)
        block = alpha[rows.start:rows.stop]
        blocks.append(torch.softmax(block.reshape(-1) / tau, dim=0).reshape(block.shape))
    return torch.cat(blocks, dim=0)


def edge_softmax(space: Space, alpha: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """The relaxation of the space's own kind at temperature tau (per-edge for DARTS/NB201, node-joint for LHD)."""
    if space.kind == "lhd":
        return node_joint_softmax(space, alpha, tau)
    return torch.softmax(alpha / tau, dim=-1)


def output_weights(beta: torch.Tensor, tau: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """LHD outputs: softmax(beta_sum / tau) over the nodes and sigmoid(beta_cat) gates (never tempered)."""
    return torch.softmax(beta[0] / tau, dim=0), torch.sigmoid(beta[1])


def mixing_weights(space: Space, alphas: Mapping[str, torch.Tensor], betas: Mapping[str, torch.Tensor] | None = None,
                   tau: float = 1.0) -> Weights:
    """Softmax relaxation at temperature ``tau`` (DARTS: tau = 1)."""
    weights: Weights = {c: edge_softmax(space, a, tau) for c, a in alphas.items()}
    for c, b in (betas or {}).items():
        weights[f"{c}_sum"], weights[f"{c}_cat"] = output_weights(b, tau)
    return weights


def arch_weights(arch, tau: float = 1.0) -> Weights:
    """``mixing_weights`` of an ``ArchParams`` module."""
    return mixing_weights(arch.space, dict(arch.alphas), dict(arch.betas), tau)


def detached(weights: Weights) -> Weights:
    """The same weights with no graph: a weight step needs no α gradient, and then zero-weight ops are skipped."""
    return {k: ([t.detach() for t in v] if isinstance(v, (list, tuple)) else v.detach()) for k, v in weights.items()}
