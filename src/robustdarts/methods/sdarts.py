"""SDARTS-RS and SDARTS-ADV: the weight step on perturbed architecture probabilities (spec D §5).

Chen & Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based Regularization" (ICML 2020),
code xiangning-chen/SmoothDARTS (``attacker/perturb.py``, ``attacker/linf_sgd.py``, ``sota/cnn/train_search.py``).

Each step: the α step is plain first-order DARTS; then the weights are trained on the training batch with the
mixing probabilities softmax(α) perturbed inside an L∞ ball of radius ε_e = 0.03 + (0.3 − 0.03)·e/E (the
reference divides by E, so 0.3 is never quite reached; kept). The reference overwrites α.data with softmax(α) and
back around the weight step; here the perturbed probabilities are simply handed to ``supernet(x, weights)``.

Deliberate differences from the reference: the simplex clip is vectorized (the reference loops over rows in
Python); on LHD the simplexes are the node-joint blocks (``relax.per_group``) and only the edge weights are
perturbed (the sum-output softmax and the concat gates are left as they are; SDARTS never defined them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..relax import per_group, simplex_clip
from ..schedules import SdartsEpsilon
from . import register
from .base import Method


def _clip(space, p: torch.Tensor) -> torch.Tensor:
    return per_group(space, simplex_clip, p)


def rs_perturb(space, weights: dict, eps: float, generator: torch.Generator | None = None) -> dict:
    """SDARTS-RS: U[−ε, ε] noise on every edge probability, then the simplex clip of each distribution."""
    out = dict(weights)
    for c in space.cell_types:
        p = weights[c].detach()
        noise = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device) * (2 * eps) - eps
        out[c] = _clip(space, p + noise)
    return out


def pgd_attack(search, x, y, weights: dict, eps: float, steps: int = 7, random_start: bool = True) -> dict:
    """SDARTS-ADV: L∞ PGD on the edge probabilities that *maximises* the training loss on (x, y).

    ``steps`` sign-gradient ascent steps of size 2ε/steps from a uniform random start, each followed by the
    projection into the ε-ball around the unperturbed probabilities and the simplex clip. The supernet is in eval
    mode during the attack (BN on running statistics, nothing updated; as the reference) and its train/eval flag
    is restored after. If the attack did not raise the loss, the unperturbed probabilities are returned (the
    reference reverts too). No gradient reaches the network weights: ∂/∂p only.
    """
    space, supernet = search.space, search.supernet
    keys = list(space.cell_types)
    center = {c: weights[c].detach() for c in keys}
    was_training = supernet.training
    supernet.eval()
    try:
        def loss_at(probs: dict) -> torch.Tensor:
            return F.cross_entropy(search.forward(x, {**weights, **probs}), y)

        with torch.no_grad():
            loss_before = loss_at(center)
        probs = {c: center[c].clone() for c in keys}
        if random_start:
            probs = {c: _clip(space, p + torch.empty_like(p).uniform_(-eps, eps)) for c, p in probs.items()}
        step_size = 2 * eps / steps
        for _ in range(steps):
            leaves = {c: p.detach().requires_grad_(True) for c, p in probs.items()}
            grads = torch.autograd.grad(loss_at(leaves), [leaves[c] for c in keys])
            with torch.no_grad():
                probs = {}
                for c, g in zip(keys, grads):
                    stepped = leaves[c] + step_size * g.sign()
                    ball = torch.minimum(torch.maximum(stepped, center[c] - eps), center[c] + eps)
                    probs[c] = _clip(space, ball)
        with torch.no_grad():
            loss_after = loss_at(probs)
        if not bool(loss_after > loss_before):
            probs = center
    finally:
        supernet.train(was_training)
    return {**weights, **{c: p.detach() for c, p in probs.items()}}


class _Sdarts(Method):
    options = {"epsilon_min": 0.03, "epsilon_max": 0.3}

    def epsilon(self, search) -> float:
        schedule = SdartsEpsilon(float(self.opts["epsilon_min"]), float(self.opts["epsilon_max"]), self.cfg.epochs)
        return schedule(search.epoch)


@register
class SdartsRS(_Sdarts):
    """SDARTS-RS: the weight step sees softmax(α) + U[−ε, ε] noise, clipped back onto the simplex (spec D §5)."""

    name = "sdarts-rs"
    paper = "Chen & Hsieh, Stabilizing DARTS via Perturbation-based Regularization (ICML 2020), SDARTS-RS"
    summary = "weight step on randomly perturbed probabilities (uniform noise, ε 0.03→0.3, simplex clip)"

    def weight_weights(self, search, step: int) -> dict:
        return rs_perturb(self.space, super().weight_weights(search, step), self.epsilon(search))


@register
class SdartsADV(_Sdarts):
    """SDARTS-ADV: the weight step sees the worst-case probabilities found by 7-step L∞ PGD (spec D §5)."""

    name = "sdarts-adv"
    paper = "Chen & Hsieh, Stabilizing DARTS via Perturbation-based Regularization (ICML 2020), SDARTS-ADV"
    summary = "weight step on adversarially perturbed probabilities (7-step L∞ PGD, ε 0.03→0.3)"
    options = {**_Sdarts.options, "attack_steps": 7, "random_start": True}

    def weight_backward(self, search, x, y, weights):
        attacked = pgd_attack(search, x, y, weights, self.epsilon(search), int(self.opts["attack_steps"]),
                              bool(self.opts["random_start"]))
        return super().weight_backward(search, x, y, attacked)
