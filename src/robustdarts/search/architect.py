"""Architecture-gradient modes (spec D §1.5): first order, second order (unrolled), mixed level (MiLeNAS); and the
architecture optimizers (Adam, GAEA's exponentiated gradient).

Every function leaves ∇α in ``p.grad`` of the architecture parameters and touches no network-weight gradient:
``torch.autograd.grad`` is taken with respect to exactly the tensors that need it. The unrolled step evaluates
the virtual weights with ``torch.func.functional_call`` — no network copy per step (the reference builds one
with ``model.new()`` every step) — and on copies of the BN buffers, so virtual passes never move the supernet's
running statistics.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..errors import unknown
from ..relax import gaea_eg_update, per_group

WeightsFn = Callable[[], dict]  # builds fresh mixing weights (with a graph to α) for one pass


def _set_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    for p, g in zip(params, grads):
        g = torch.zeros_like(p) if g is None else g.detach()
        p.grad = g if p.grad is None else p.grad + g


def first_order(forward, arch_params, weights_fn: WeightsFn, x, y, penalty=None) -> torch.Tensor:
    """∇α L_val(w, α) from one pass on the validation batch (+ ``penalty()``, a regularizer of α, or None)."""
    logits = forward(x, weights_fn())
    loss = F.cross_entropy(logits, y)
    extra = penalty() if penalty is not None else None
    total = loss if extra is None else loss + extra
    _set_grads(arch_params, torch.autograd.grad(total, arch_params, allow_unused=True))
    return loss.detach()


def mixed_level(forward, arch_params, weights_fn: WeightsFn, x_train, y_train, x_val, y_val, lam: float = 1.0):
    """MiLeNAS: ∇α L_val + λ·∇α L_train."""
    loss_val = F.cross_entropy(forward(x_val, weights_fn()), y_val)
    loss_train = F.cross_entropy(forward(x_train, weights_fn()), y_train)
    _set_grads(arch_params, torch.autograd.grad(loss_val + lam * loss_train, arch_params, allow_unused=True))
    return loss_val.detach()


def unrolled(supernet, arch_params, weights_fn: WeightsFn, x_train, y_train, x_val, y_val, *, lr: float,
             momentum: float, weight_decay: float, momentum_buffers: Sequence[torch.Tensor | None],
             forward_kwargs: dict | None = None, r: float = 0.01,
             average: Callable[[list], list] | None = None) -> torch.Tensor:
    """Second-order DARTS with a finite-difference Hessian-vector product.

    w' = w − ξ(μ·m + ∇w L_train(w, α) + λ·w);  g = ∇α L_val(w', α) − ξ·[∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)]/(2ε)
    with w± = w ± ε·v, v = ∇w' L_val(w', α), ε = r/‖v‖. ``weight_decay`` is the *current* one (the RobustDARTS ADA
    code keeps a stale value after raising it; we do not). ``average`` (multi-process search: the mean over the
    ranks) is applied to the two inner weight gradients, so that w' and v are the global batch's; the α gradients
    are averaged by the caller.
    """
    average = average if average is not None else (lambda tensors: tensors)
    fw = forward_kwargs or {}
    names, w = zip(*[(n, p) for n, p in supernet.named_parameters()])
    buffers = {n: b.clone() for n, b in supernet.named_buffers()}

    def loss_at(params, x, y, weights):
        logits = functional_call(supernet, ({**dict(zip(names, params)), **buffers}), (x, weights), fw)
        low = logits.dtype in (torch.bfloat16, torch.float16)
        return F.cross_entropy(logits.float() if low else logits, y)  # float32 loss under bf16 autocast too

    with torch.no_grad():
        detached = {k: ([t.detach() for t in v] if isinstance(v, (list, tuple)) else v.detach())
                    for k, v in weights_fn().items()}
    g_train = average(list(torch.autograd.grad(loss_at(w, x_train, y_train, detached), w, allow_unused=True)))
    with torch.no_grad():
        w_virtual = [
            (p - lr * ((momentum * m if m is not None else 0) + (g if g is not None else 0) + weight_decay * p))
            for p, g, m in zip(w, g_train, momentum_buffers)
        ]
    w_virtual = [p.detach().requires_grad_(True) for p in w_virtual]
    loss_val = loss_at(w_virtual, x_val, y_val, weights_fn())
    grads = torch.autograd.grad(loss_val, list(w_virtual) + list(arch_params), allow_unused=True)
    v = average([torch.zeros_like(p) if g is None else g for p, g in zip(w, grads[: len(w)])])
    d_alpha = grads[len(w):]
    eps = r / torch.cat([t.reshape(-1) for t in v]).norm().clamp_min(1e-12)

    def alpha_grad_at(sign: float):
        with torch.no_grad():
            shifted = [p + sign * eps * t for p, t in zip(w, v)]
        return torch.autograd.grad(loss_at(shifted, x_train, y_train, weights_fn()), arch_params, allow_unused=True)

    g_plus, g_minus = alpha_grad_at(1.0), alpha_grad_at(-1.0)
    final = []
    for d, gp, gm, p in zip(d_alpha, g_plus, g_minus, arch_params):
        d = torch.zeros_like(p) if d is None else d
        if gp is None or gm is None:
            final.append(d)
        else:
            final.append(d - lr * (gp - gm) / (2 * eps))
    _set_grads(arch_params, final)
    return loss_val.detach()


# ---------------------------------------------------------------------------------------------------------------
# Architecture optimizers

class ExponentiatedGradient:
    """GAEA's arch "optimizer": α ← α·exp(−η∇α), clamped at ``floor``, renormalized per group.

    Groups are the space's distributions (edge rows; LHD node blocks) for α, the rows for LHD's β. Implements what
    the search loop calls on an optimizer: ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``.
    """

    def __init__(self, params: list[tuple[torch.nn.Parameter, Any]], lr: float = 0.1, floor: float = 1e-5):
        self.params, self.lr, self.floor = params, lr, floor
        self.param_groups = [{"params": [p for p, _ in params], "lr": lr}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p, _ in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for p, space in self.params:
            if p.grad is None:
                continue
            update = lambda a, g: gaea_eg_update(a, g, lr, self.floor)  # noqa: E731
            p.copy_(per_group(space, update, p.detach(), p.grad))

    def state_dict(self) -> dict:
        return {"lr": self.param_groups[0]["lr"], "floor": self.floor}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
        self.floor = float(state["floor"])


ARCH_UPDATES = ("adam", "eg")


def arch_optimizer(kind: str, arch, cfg):
    """The optimizer of the architecture parameters: Adam (DARTS: lr 3e-4, betas (0.5, 0.999), wd 1e-3) or GAEA's
    exponentiated gradient (η = arch_lr) on the space's simplexes."""
    if kind == "adam":
        return torch.optim.Adam(arch.parameters(), lr=cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                                weight_decay=cfg.arch_weight_decay)
    if kind == "eg":
        params = [(a, arch.space) for a in arch.alphas.values()] + [(b, None) for b in arch.betas.values()]
        return ExponentiatedGradient(params, lr=cfg.arch_lr)
    raise unknown("arch update", kind, ARCH_UPDATES)
