"""SDARTS-RS and SDARTS-ADV: the weight step on perturbed architecture probabilities (spec D §5).

Chen & Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based Regularization" (ICML 2020),
code xiangning-chen/SmoothDARTS (``attacker/perturb.py``, ``attacker/linf_sgd.py``, ``sota/cnn/train_search.py``).

Each step: the α step is plain first-order DARTS; then the weights are trained on the training batch with the
mixing probabilities softmax(α) perturbed inside an L∞ ball of radius ε_e = 0.03 + (0.3 − 0.03)·e/E (the
reference divides by E, so 0.3 is never quite reached; kept). The reference overwrites α.data with softmax(α) and
back around the weight step; here the perturbed probabilities are simply handed to ``supernet(x, weights)``.

Search cutout, when asked for, ramps its probability e/(E − 1), as the SDARTS code does.

Deliberate differences from the reference: the simplex clip is vectorized (the reference loops over rows in
Python); on LHD the simplexes are the node-joint blocks (``relax.per_group``) and only the edge weights are
perturbed (the sum-output softmax and the concat gates are left as they are; SDARTS never defined them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..config import AT_LEAST_0, AT_LEAST_1, Range
from ..errors import unknown
from ..relax import per_group, project_linf, sdarts_rs_perturb, simplex_clip
from ..schedules import SdartsEpsilon
from .darts import Darts


def pgd_attack(supernet, forward, space, x, y, weights: dict, eps: float, steps: int = 7,
               random_start: bool = True) -> dict:
    """SDARTS-ADV: L∞ PGD on the edge probabilities that *maximises* the training loss on (x, y).

    ``steps`` sign-gradient ascent steps of size 2ε/steps from a uniform random start, each followed by the
    projection into the ε-ball around the unperturbed probabilities and the simplex clip. The supernet is in eval
    mode during the attack (BN on running statistics, nothing updated; as the reference) and its train/eval flag
    is restored after. Those statistics include the ops that earlier weight steps skipped at weight 0 (the simplex
    clip makes exact zeros): the supernet keeps them current, so the attack, and α after it, do not depend on the
    skip (supernet ``_keep_current``; tests/test_skip_statistics.py). If the attack did not raise the loss, the
    unperturbed probabilities are returned (the reference reverts too). No gradient reaches the network weights:
    ∂/∂p only.
    """
    keys = list(space.cell_types)
    center = {c: weights[c].detach() for c in keys}
    was_training = supernet.training
    supernet.eval()
    try:
        def loss_at(probs: dict) -> torch.Tensor:
            return F.cross_entropy(forward(x, {**weights, **probs}), y)

        with torch.no_grad():
            loss_before = loss_at(center)
        probs = {c: center[c].clone() for c in keys}
        if random_start:
            probs = {c: per_group(space, simplex_clip, p + torch.empty_like(p).uniform_(-eps, eps))
                     for c, p in probs.items()}
        step_size = 2 * eps / steps
        for _ in range(steps):
            leaves = {c: p.detach().requires_grad_(True) for c, p in probs.items()}
            grads = torch.autograd.grad(loss_at(leaves), [leaves[c] for c in keys])
            with torch.no_grad():
                probs = {c: project_linf(leaves[c] + step_size * g.sign(), center[c], eps, space)
                         for c, g in zip(keys, grads)}
        with torch.no_grad():
            loss_after = loss_at(probs)
        if not bool(loss_after > loss_before):
            probs = center
    finally:
        supernet.train(was_training)
    return {**weights, **{c: p.detach() for c, p in probs.items()}}


@dataclass(frozen=True)
class SdartsOptions:
    RANGES: ClassVar[dict[str, Range]] = {"epsilon_min": AT_LEAST_0, "epsilon_max": AT_LEAST_0, "attack_steps": AT_LEAST_1}

    epsilon_min: float = 0.03
    epsilon_max: float = 0.3
    attack: str = "random"  # random (SDARTS-RS) | pgd (SDARTS-ADV)
    attack_steps: int = 7
    random_start: bool = True


class Sdarts(Darts):
    """SDARTS: the α step is plain first-order DARTS; the weight step sees perturbed probabilities —
    ``attack: random`` (SDARTS-RS: softmax(α) + U[−ε, ε], simplex clip) or ``attack: pgd`` (SDARTS-ADV: the
    worst case found by 7-step L∞ PGD), with ε_e = ε_min + (ε_max − ε_min)·e/E (spec D §5)."""

    Options = SdartsOptions
    cutout_rule = "ramp"

    def __init__(self, cfg, space):
        super().__init__(cfg, space)
        if self.opts.attack not in ("random", "pgd"):
            raise unknown("SDARTS attack", self.opts.attack, ("random", "pgd"))
        self.schedule = SdartsEpsilon(self.opts.epsilon_min, self.opts.epsilon_max, cfg.epochs)

    def reads_statistics(self) -> str | None:
        return "SDARTS-ADV's attack (the supernet in eval mode)" if self.opts.attack == "pgd" else None

    def epsilon(self, epoch: int) -> float:
        return self.schedule(epoch)

    def weight_backward(self, supernet, forward, x, y, weights, ctx):
        eps = self.epsilon(ctx.epoch)
        if self.opts.attack == "random":
            perturbed = sdarts_rs_perturb(self.space, weights, eps)
        else:
            perturbed = pgd_attack(supernet, forward, self.space, x, y, weights, eps, self.opts.attack_steps,
                                   self.opts.random_start)
        return super().weight_backward(supernet, forward, x, y, perturbed, ctx)


__all__ = ["pgd_attack", "SdartsOptions", "Sdarts"]
