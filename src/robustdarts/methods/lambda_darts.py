"""Λ-DARTS: align the per-cell gradients of the architecture weights (spec D §3).

Movahedi et al., "Λ-DARTS: Mitigating Performance Collapse by Harmonizing Operation Selection among Cells"
(ICLR 2023), code dr-faustus/Lambda-DARTS (``sota/cnn/model_search.py`` ``get_perturbations``/``get_reg_grads``,
``sota/cnn/train_search.py``). The paper text was not retrievable; the code is the specification.

With weight sharing, ∇_P L = Σ_ℓ g_ℓ where g_ℓ = ∂L_train/∂P_ℓ is the gradient w.r.t. the mixing probabilities that
cell ℓ receives. The weights minimise L_train − λ_t·Λ(g_1, …, g_L), Λ a mean pairwise alignment of the g_ℓ:

- ``corr``:     Λ = mean_{i<j} cos(g_i, g_j)
- ``signcorr``: Λ = mean_{i<j} ⟨g_i, g_j⟩ / ⟨|g_i|, |g_j|⟩

∇_w Λ = ∇_w Σ_ℓ v_ℓᵀ g_ℓ(w) with v_ℓ = ∂Λ/∂g_ℓ held fixed, a mixed second derivative taken as a central finite
difference in P-space: with ε = ε₀/‖concat v‖, g^± = ∇_w L_train(w; P_ℓ ± ε v_ℓ), −∇_w Λ ≈ (g⁻ − g⁺)/(2ε), and
w.grad += λ_t·(g⁻ − g⁺)/(2ε) before the gradient clipping. λ_t = λ·e/(E − 1). α is still trained by plain DARTS.

Deliberate differences from the reference:

- Per-cell copies of P are passed into ``supernet(x, weights)`` as a list per cell type; α.data is never
  overwritten with softmax(α) and back. g_ℓ comes from ``torch.autograd.grad`` together with the weight gradients.
- ``corr``'s v_ℓ uses the closed form c·(s − u_ℓ(u_ℓ·s))/‖g_ℓ‖ (s = Σu, c = 2/(L(L−1))) instead of an L×L·n
  projection matrix; ``signcorr`` is vectorized over pairs.
- ‖v‖ (and ‖g_ℓ‖, ⟨|g_i|,|g_j|⟩) are guarded by a floor: the reference divides by zero when the gradients are
  perfectly aligned or vanish. With v = 0 (or λ_t = 0) the two extra passes are skipped: the term is exactly 0.
- The two perturbed passes leave BN running statistics untouched (buffers are restored), and they replay the
  main pass's random stream, so drop-path masks and S4's ``noise`` op are identical in both sides of the
  difference; the random stream then continues from where the main pass left it.
- Which cell types are regularized is an option (default normal only, as the reference's DARTS-space code; its
  NAS-Bench-201 code regularizes all 15 cells, which are all "normal" here; ConfigurableOptimizer does both types).

Defaults are the DARTS-space argparse defaults λ = 0.125, ε₀ = 1e-4; search cutout, when asked for, ramps
e/(E − 1) as in its SDARTS-based code. The NAS-Bench-201 recipe (preset table) is its NB201 scripts': λ = 0.25,
ε₀ = 1e-4, 100 epochs, arch lr 1e-4, weight step first (spec D §3.4). Another setting seen in the reference: its
shipped run_search.sh (S4/SVHN) uses λ = 0.25, ε₀ = 1e-3 with batch 96.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from ..config import AT_LEAST_0, POSITIVE, Range
from ..errors import RobustDartsError, unknown
from ..preserve import preserved
from ..schedules import LinearRamp
from .darts import Darts
from .recipe import EpochAction

REGULARIZERS = ("corr", "signcorr")


def alignment(G: torch.Tensor, reg: str, floor: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(Λ, V) for per-cell gradients G of shape (L, n): Λ the mean pairwise alignment, V[ℓ] = ∂Λ/∂g_ℓ."""
    L = G.shape[0]
    if L < 2:
        return G.new_zeros(()), torch.zeros_like(G)
    c = 2.0 / (L * (L - 1))
    if reg == "corr":
        norms = G.norm(dim=1, keepdim=True).clamp_min(floor)
        U = G / norms
        s = U.sum(0)
        V = c * (s - U * (U @ s).unsqueeze(1)) / norms
        value = c * 0.5 * (s @ s - (U * U).sum())
        return value, V
    if reg == "signcorr":
        A, signs = G.abs(), G.sign()
        D = (A @ A.T).clamp_min(floor)
        S = (G @ G.T) / D
        off = 1.0 - torch.eye(L, dtype=G.dtype, device=G.device)
        V = c * ((off / D) @ G - signs * ((off * S / D) @ A))
        value = c * 0.5 * (S * off).sum()
        return value, V
    raise unknown("Λ-DARTS regularizer", reg, REGULARIZERS)


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def lambda_weight_backward(supernet, forward, x, y, weights: dict, *, cells: Sequence[str], reg: str, lam: float,
                           eps0: float, floor: float = 1e-12):
    """One Λ-DARTS weight backward: fills ``p.grad`` of the supernet's parameters with ∇_w L_train plus
    lam·(g⁻ − g⁺)/(2ε) ≈ −lam·∇_w Λ. ``forward(x, weights)`` gives logits (the search's forward, with its drop
    path). Returns (loss, logits, {cell type: Λ value}, reg_grads or None) — reg_grads, the finite difference
    (g⁻ − g⁺)/(2ε) before the lam factor, for tests and diagnostics."""
    params = [p for p in supernet.parameters() if p.requires_grad]
    counts = {c: supernet.cells_of(c) for c in cells}
    probs = {c: weights[c].detach() for c in cells}
    copies = {c: [probs[c].clone().requires_grad_(True) for _ in range(counts[c])] for c in cells}
    flat_copies = [t for c in cells for t in copies[c]]

    device = x.device
    rng_before = _rng_state(device)  # replayed by both perturbed passes: same drop-path masks and noise draws
    logits = forward(x, {**weights, **copies})
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, params + flat_copies, allow_unused=True)
    for p, g in zip(params, grads[:len(params)]):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g
    cell_grads = iter(grads[len(params):])

    values, directions = {}, {}
    for c in cells:
        G = torch.stack([(g if g is not None else torch.zeros_like(t)).reshape(-1)
                         for g, t in zip((next(cell_grads) for _ in copies[c]), copies[c])])
        values[c], V = alignment(G.detach(), reg, floor)
        directions[c] = V.reshape(len(copies[c]), *probs[c].shape)
    v_norm = float(torch.cat([v.reshape(-1) for v in directions.values()]).norm()) if directions else 0.0
    if lam == 0.0 or v_norm == 0.0:
        return loss.detach(), logits.detach(), values, None

    eps = eps0 / max(v_norm, floor)

    def weight_grads(sign: float):
        _set_rng_state(rng_before, device)
        shifted = {c: [probs[c] + sign * eps * directions[c][i] for i in range(counts[c])] for c in cells}
        out = F.cross_entropy(forward(x, {**weights, **shifted}), y)
        return torch.autograd.grad(out, params, allow_unused=True)

    # The random stream continues from where the main pass left it, and BN statistics stay the main pass's.
    with preserved(supernet, device=device):
        g_minus = weight_grads(-1.0)
        g_plus = weight_grads(1.0)
    reg_grads = []
    for p, gm, gp in zip(params, g_minus, g_plus):
        if gm is None or gp is None:
            reg_grads.append(None)
            continue
        r = (gm - gp) / (2 * eps)
        reg_grads.append(r)
        p.grad = lam * r if p.grad is None else p.grad + lam * r
    return loss.detach(), logits.detach(), values, reg_grads


@dataclass(frozen=True)
class LambdaDartsOptions:
    RANGES: ClassVar[dict[str, Range]] = {"lambda_": AT_LEAST_0, "epsilon_0": POSITIVE, "floor": POSITIVE}

    reg: str = "corr"  # corr | signcorr
    # λ of the ramp λ_t = λ·e/(E − 1) ("lambda" is a Python keyword; --set method.lambda_=...)
    lambda_: float = 0.125
    epsilon_0: float = 1e-4
    cells: str = "normal"  # comma-separated cell types, or "all"
    floor: float = 1e-12


class LambdaDarts(Darts):
    """Λ-DARTS (Movahedi et al., ICLR 2023; dr-faustus/Lambda-DARTS): first-order DARTS whose weight step also
    maximises the alignment of the per-cell α-gradients. See the module docstring for the algorithm, the fixes
    made on purpose and the alternative hyperparameters."""

    Options = LambdaDartsOptions
    cutout_rule = "ramp"

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts.reg not in REGULARIZERS:
            raise unknown("Λ-DARTS option reg", self.opts.reg, REGULARIZERS)
        cells = self.opts.cells
        cells = list(space.cell_types) if cells == "all" else [c.strip() for c in cells.split(",") if c.strip()]
        bad = [c for c in cells if c not in space.cell_types]
        if bad or not cells:
            raise RobustDartsError(f"Λ-DARTS option cells={self.opts.cells!r} names no cell type of space "
                                   f"{space.name!r}; choose from: {', '.join(space.cell_types)}, all.")
        self.cells = tuple(cells)
        self._align_sum: dict[str, float] = {}
        self._align_steps = 0

    def lambda_at(self, epoch: int) -> float:
        return LinearRamp(self.opts.lambda_, self.cfg.epochs)(epoch)

    def begin_epoch(self, ctx, alphas) -> None:
        self._align_sum, self._align_steps = {}, 0

    def weight_backward(self, supernet, forward, x, y, weights, ctx):
        loss, logits, values, _ = lambda_weight_backward(
            supernet, forward, x, y, weights, cells=self.cells, reg=self.opts.reg, lam=self.lambda_at(ctx.epoch),
            eps0=self.opts.epsilon_0, floor=self.opts.floor)
        for c, v in values.items():
            self._align_sum[c] = self._align_sum.get(c, 0.0) + float(v)
        self._align_steps += 1
        return loss, logits

    def end_epoch(self, ctx, end) -> EpochAction:
        # The reference logs this as train_corr: how aligned the per-cell gradients were over the epoch.
        for c, total in self._align_sum.items():
            end.record[f"alignment_{c}"] = total / max(self._align_steps, 1)
        end.record["lambda_t"] = self.lambda_at(ctx.epoch)
        return EpochAction()
