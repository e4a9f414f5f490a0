"""Relaxations: architecture logits -> the mixing weights that ``supernet(x, weights)`` consumes.

A mixing-weights dict has one (edges, ops) tensor per cell type under its name ('normal', 'reduce'), or a list of
such tensors, one per cell of that type (per-cell copies, as Λ-DARTS needs). LHD adds '<cell>_sum' (softmax over
the nodes for the sum output) and '<cell>_cat' (sigmoid gates for the concat output).

Everything here is a plain tensor function of the logits, so methods compose it freely and ``torch.func`` can
differentiate through it. Per-epoch schedules (learning rate, temperature, SP-DARTS sparsity) live in
``schedules.py``.

Relaxations, each naming the paper/code it follows:

- ``mixing_weights``: softmax at temperature τ (DARTS; τ = 1).
- ``sparse_mixing_weights`` / ``tempered_softmax``: small-temperature softmax with the optional PCDEDD surrogate
  gradient and optional logit noise (Zhang & Ding, "Small Temperature is All You Need", arXiv 2306.06855).
- ``gdas_weights`` / ``gumbel_hard``: GDAS hard Gumbel-softmax, straight-through (Dong & Yang, CVPR 2019; LHD code).
- ``drnas_weights`` / ``dirichlet_sample``: DrNAS Dirichlet samples (Chen et al., ICLR 2021; LHD code).
- ``simplex_clip``, ``sdarts_rs_perturb``, ``project_linf``: SDARTS perturbations (Chen & Hsieh, ICML 2020).
- ``gaea_eg_update``, ``simplex_uniform``: GAEA exponentiated gradient (Li et al., ICLR 2021; LHD code).
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .devices import sample_on
from .errors import unknown

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


# --------------------------------------------------------------------------------------------------------------
# Grouping: which entries of α share one distribution. DARTS/NB201: each edge row. LHD: all (input, op) pairs of a
# node. Every relaxation below is written for rows and lifted to the space's grouping here.

RowFn = Callable[..., torch.Tensor]


def per_group(space: Space | None, row_fn: RowFn, *tensors: torch.Tensor) -> torch.Tensor:
    """Apply ``row_fn`` (a row-wise map over the last dim) to each distribution group of ``tensors``.

    All ``tensors`` share one shape and are grouped alike; ``row_fn`` gets their groups as positional arguments.
    ``space`` None or of a per-edge kind: the rows themselves (any leading shape). LHD (2-D (edges, ops) input):
    each node's block of edges flattened into one row, then reshaped back to the (edges, ops) layout.
    """
    first = tensors[0]
    if space is None or space.kind != "lhd" or first.dim() != 2:
        return row_fn(*tensors)
    blocks = []
    for node in range(space.steps):
        rows = space.node_edges(node)
        shape = first[rows.start:rows.stop].shape
        flat = [t[rows.start:rows.stop].reshape(1, -1) for t in tensors]
        blocks.append(row_fn(*flat).reshape(shape))
    return torch.cat(blocks, dim=0)


def _gaussian_like(x: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the generator's device, then placed beside x (devices.sample_on: a CPU generator serves CUDA too).
    return std * sample_on(lambda d: torch.randn(x.shape, generator=generator, dtype=x.dtype, device=d), generator,
                           x.device)


# --------------------------------------------------------------------------------------------------------------
# Small-temperature ("sparse-noisy") softmax with the surrogate gradient.

def tempered_softmax(logits: torch.Tensor, tau: float = 1.0, *, space: Space | None = None, surrogate: bool = False,
                     noise_std: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """softmax(logits/τ + noise) per group, with the optional PCDEDD surrogate gradient.

    Follows PCDEDD (``PCDEDD-DARTS/architect_cyc.py``, ``model_search_cyc.py``; spec L §5.3): the forward value is
    softmax(α/τ) exactly; with ``surrogate`` (and τ ≠ 1, as in the reference, which would otherwise just double
    the gradient) the backward adds the same upstream gradient g pushed through softmax(α) at τ = 1, so
    ∂L/∂α = J_τᵀg + J_1ᵀg. At τ ≈ 1e-3 the first term saturates to ~0 and the second keeps α learning.
    Written with the detach trick: adding ``smooth - smooth.detach()`` adds exactly 0.0 to the forward value (so
    underflowed weights stay exact zeros) and J_1 to the backward.

    ``noise_std`` > 0 adds N(0, noise_std²) to α/τ before the softmax (the "noisy" part of the sparse-noisy softmax
    of arXiv 2306.06855, whose formula we could not read: the placement on the scaled logits is our inference).
    The noise is drawn from ``generator``; the surrogate path stays noise-free, as in PCDEDD.

    The surrogate term needs ∂L/∂w for ops whose tempered weight underflowed to 0, so an arch step using it must
    evaluate those ops (a supernet may skip zero-weight ops only when the weights carry no gradient).
    """
    def softmax_rows(z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z, dim=-1)

    scaled = logits / tau
    if noise_std > 0:
        scaled = scaled + _gaussian_like(scaled, noise_std, generator)
    weights = per_group(space, softmax_rows, scaled)
    if surrogate and tau != 1.0:
        smooth = per_group(space, softmax_rows, logits)
        weights = weights + (smooth - smooth.detach())
    return weights


def sparse_mixing_weights(space: Space, alphas: Mapping[str, torch.Tensor],
                          betas: Mapping[str, torch.Tensor] | None = None, tau: float = 1.0, *,
                          surrogate: bool = False, surrogate_cells: tuple[str, ...] | None = None,
                          noise_std: float = 0.0, generator: torch.Generator | None = None) -> Weights:
    """``mixing_weights`` with the small-temperature options of ``tempered_softmax`` (SP-DARTS, PCDEDD).

    The surrogate gradient goes to every cell type by default; PCDEDD applies it to the normal cell only (spec L
    §8 item 22) — pass ``surrogate_cells=("normal",)`` to replicate that. LHD's sum-output softmax(β_sum/τ) gets
    the same treatment as α (τ is applied to it in the LHD/SP-DARTS code); the concat gates stay σ(β_cat).
    With the defaults this equals ``mixing_weights(space, alphas, betas, tau)``.
    """
    def relax(cell: str, logits: torch.Tensor, group: Space | None) -> torch.Tensor:
        use_surrogate = surrogate and (surrogate_cells is None or cell in surrogate_cells)
        return tempered_softmax(logits, tau, space=group, surrogate=use_surrogate, noise_std=noise_std,
                                generator=generator)

    weights: Weights = {c: relax(c, a, space) for c, a in alphas.items()}
    for c, b in (betas or {}).items():
        weights[f"{c}_sum"] = relax(c, b[0], None)
        weights[f"{c}_cat"] = torch.sigmoid(b[1])
    return weights


# --------------------------------------------------------------------------------------------------------------
# GDAS: hard Gumbel-softmax, straight-through.

StraightThrough = Literal["sampled", "all"]


def _gumbel_hard_rows(logits: torch.Tensor, tau: float, gumbels: torch.Tensor,
                      straight_through: StraightThrough) -> torch.Tensor:
    perturbed = torch.log_softmax(logits, dim=-1) + gumbels
    soft = torch.softmax(perturbed / tau, dim=-1)
    # argmax of the perturbed logits, not of ``soft``: at small τ the softmax can saturate into ties.
    hard = torch.zeros_like(soft).scatter_(-1, perturbed.argmax(dim=-1, keepdim=True), 1.0)
    zero_with_grad = soft - soft.detach()  # exactly 0.0 forward, identity backward
    if straight_through == "all":
        return hard + zero_with_grad
    return hard + hard * zero_with_grad


def sample_gumbels(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Standard Gumbel noise −log(E), E ~ Exp(1), drawn from ``generator`` (as GDAS draws it)."""
    exp = sample_on(lambda d: torch.empty(shape, dtype=dtype, device=d).exponential_(generator=generator), generator,
                    device)
    # Exp(1) can round to 0 in float32; −log(0) = inf would turn the softmax into NaN (GDAS resamples then).
    return -exp.clamp_min(torch.finfo(exp.dtype).tiny).log()


def gumbel_hard(logits: torch.Tensor, tau: float = 1.0, *, space: Space | None = None,
                generator: torch.Generator | None = None, gumbels: torch.Tensor | None = None,
                straight_through: StraightThrough = "sampled") -> torch.Tensor:
    """One hard Gumbel-softmax sample per group: an exact one-hot forward, straight-through backward.

    Follows GDAS (D-X-Y ``search_model_gdas.py``; LHD ``search/GDAS``): soft = softmax((log_softmax(α) + G)/τ), the
    sampled index is its argmax. Per edge row for DARTS/NB201, node-joint (one (input, op) pair per node) for LHD.
    The forward value is the one-hot exactly: sampled entry 1.0, every other entry exactly 0.0, so a supernet
    can skip those ops.

    ``straight_through``:
      - "sampled" (default): the gradient reaches soft only through the sampled entry, ∂L/∂α = J_softᵀ(g ⊙ hard).
        This is the gradient GDAS means (only the sampled op is evaluated) with the reference bugs fixed: GDAS
        and the LHD copy add the zero-valued weights of unsampled ops (or of whole unsampled edges) as scalars to
        the output, which injects a spurious gradient Σg into their α (spec L §8 item 8). Here unsampled entries
        carry no gradient path at all, whether or not the supernet skips them.
      - "all": the textbook straight-through estimator, ∂L/∂α = J_softᵀ g (needs every op evaluated).
    ``gumbels`` (same shape as ``logits``) injects the noise instead of drawing it.
    """
    if straight_through not in ("sampled", "all"):
        raise unknown("straight-through mode", straight_through, ("sampled", "all"))
    if gumbels is None:
        gumbels = sample_gumbels(logits.shape, generator, logits.dtype, logits.device)
    return per_group(space, lambda z, g: _gumbel_hard_rows(z, tau, g, straight_through), logits, gumbels.to(logits))


def gdas_weights(space: Space, alphas: Mapping[str, torch.Tensor], betas: Mapping[str, torch.Tensor] | None = None,
                 tau: float = 10.0, *, generator: torch.Generator | None = None,
                 straight_through: StraightThrough = "sampled") -> Weights:
    """GDAS mixing weights: a hard Gumbel sample per edge (DARTS/NB201) or per node (LHD, node-joint).

    LHD (spec L §3 row 6): the sum output is a hard Gumbel sample over the nodes at the same τ; the concat gates
    stay σ(β_cat). τ follows ``schedules.GdasTau`` (10 → 0.1). See ``gumbel_hard`` for the gradient fix.
    """
    weights: Weights = {c: gumbel_hard(a, tau, space=space, generator=generator, straight_through=straight_through)
                        for c, a in alphas.items()}
    for c, b in (betas or {}).items():
        weights[f"{c}_sum"] = gumbel_hard(b[0], tau, generator=generator, straight_through=straight_through)
        weights[f"{c}_cat"] = torch.sigmoid(b[1])
    return weights


# --------------------------------------------------------------------------------------------------------------
# DrNAS: Dirichlet samples.

class _DirichletSample(torch.autograd.Function):
    """Reparameterized Dirichlet sample drawn from an explicit generator.

    ``torch.distributions.Dirichlet.rsample`` has no generator argument; this is the same sampler
    (``torch._sample_dirichlet``) and the same implicit-reparameterization backward, with the generator passed on.
    """

    @staticmethod
    def forward(ctx, concentration: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is not None and generator.device != concentration.device:
            # Works, at the price of copying α to the host (a sync); devices.make_generator avoids it.
            sample = torch._sample_dirichlet(concentration.to(generator.device), generator=generator)
            sample = sample.to(concentration.device)
        else:
            sample = torch._sample_dirichlet(concentration, generator=generator)
        ctx.save_for_backward(sample, concentration)
        return sample

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        sample, concentration = ctx.saved_tensors
        total = concentration.sum(-1, keepdim=True).expand_as(concentration)
        grad = torch._dirichlet_grad(sample, concentration, total)
        return grad * (grad_output - (sample * grad_output).sum(-1, keepdim=True)), None


def dirichlet_sample(concentration: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One reparameterized Dirichlet(concentration) sample per row (last dim); differentiable in the concentration."""
    return _DirichletSample.apply(concentration, generator)


def drnas_weights(space: Space, alphas: Mapping[str, torch.Tensor], betas: Mapping[str, torch.Tensor] | None = None,
                  *, generator: torch.Generator | None = None, sigmoid_cat: bool = False) -> Weights:
    """DrNAS mixing weights: Dirichlet(elu(α) + 1) samples, one per edge row, in every space (LHD included).

    Follows the LHD DrNAS code (spec L §3 row 3): per-edge rows even in LHD (not node-joint), and each LHD output
    row gets its own Dirichlet(elu(β) + 1) over the nodes — the concat row too, unless ``sigmoid_cat`` keeps the
    σ(β_cat) gates that LHD's derivation reads (the reference's train/derive mismatch, spec L §8 item 6). Like the
    reference, and unlike the DrNAS paper, there is no KL/L2 anchor regularizer and no progressive pruning here; a
    method adds those on its own.
    """
    def sample(logits: torch.Tensor) -> torch.Tensor:
        return dirichlet_sample(F.elu(logits) + 1.0, generator)

    del space  # one rule for every space: per-edge rows
    weights: Weights = {c: sample(a) for c, a in alphas.items()}
    for c, b in (betas or {}).items():
        weights[f"{c}_sum"] = sample(b[0])
        weights[f"{c}_cat"] = torch.sigmoid(b[1]) if sigmoid_cat else sample(b[1])
    return weights


# --------------------------------------------------------------------------------------------------------------
# SDARTS: perturbations in probability space (per-edge layouts: DARTS space, S1-S4, NB201).

def simplex_clip(p: torch.Tensor) -> torch.Tensor:
    """Project rows (last dim) back onto the simplex the way SDARTS ``clip()`` does, vectorized.

    Clamp to [0, 1]; a row that is then all zero gets 1 at its argmax (taken before the clamp, as the reference
    does, so the least negative entry wins); renormalize each row. The reference loops over rows in Python.
    """
    argmax = p.argmax(dim=-1, keepdim=True)
    clipped = p.clamp(0.0, 1.0)
    dead = clipped.sum(dim=-1, keepdim=True) == 0
    clipped = torch.where(dead, torch.zeros_like(clipped).scatter_(-1, argmax, 1.0), clipped)
    return clipped / clipped.sum(dim=-1, keepdim=True)


@torch.no_grad()
def sdarts_rs_perturb(space: Space, weights: Mapping[str, torch.Tensor], eps: float,
                      generator: torch.Generator | None = None) -> Weights:
    """SDARTS-RS: U[−ε, ε] noise on every edge probability, then ``simplex_clip`` of each distribution (edge rows;
    LHD's node blocks). Only the cell types' edge weights are perturbed: LHD's sum-output softmax and concat gates
    stay as they are (SDARTS never defined them). No graph: the result feeds the weight step only."""
    out = dict(weights)
    for c in space.cell_types:
        p = weights[c].detach()
        noise = sample_on(lambda d: torch.rand(p.shape, generator=generator, dtype=p.dtype, device=d), generator,
                          p.device) * (2 * eps) - eps
        out[c] = per_group(space, simplex_clip, p + noise)
    return out


def project_linf(p: torch.Tensor, center: torch.Tensor, eps: float, space: Space | None = None) -> torch.Tensor:
    """SDARTS-ADV projection after each PGD step: into the L∞ ε-ball around ``center`` (the unperturbed
    probabilities), then ``simplex_clip`` of each distribution."""
    return per_group(space, simplex_clip, torch.minimum(torch.maximum(p, center - eps), center + eps))


# --------------------------------------------------------------------------------------------------------------
# GAEA: exponentiated gradient on the simplex.

def simplex_uniform(shape: tuple[int, ...], dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """GAEA's initial architecture: every row (last dim) uniform on the simplex."""
    return torch.full(shape, 1.0 / shape[-1], dtype=dtype, device=device)


@torch.no_grad()
def gaea_eg_update(alpha: torch.Tensor, grad: torch.Tensor, lr: float = 0.1, floor: float = 1e-5) -> torch.Tensor:
    """One GAEA exponentiated-gradient step: α·exp(−η∇α), clamped at ``floor``, each row renormalized.

    Follows the LHD GAEA code (spec L §3 rows 4-5; η = 0.1, per edge row and per output row). Returns the new
    value; a method writes it back with ``param.copy_(...)``. Which weights the supernet then gets is the method's
    choice: LHD applies its node-joint softmax on top of these α (nearly uniform weights, spec L §8 item 7),
    original GAEA feeds α directly.
    """
    updated = (alpha * torch.exp(-lr * grad)).clamp_min(floor)
    return updated / updated.sum(dim=-1, keepdim=True)
