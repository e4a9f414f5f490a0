"""The method interface: a named preset composed from relaxation, arch-gradient mode, regularizers and callbacks.

The search loop (search/loop.py) is one fixed path; a method changes it only through these hooks. Defaults are
plain DARTS (Liu et al., ICLR 2019), so a method overrides only what its paper changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..relax import arch_weights, detached


class Method:
    name: ClassVar[str] = "darts"
    paper: ClassVar[str] = "Liu et al., DARTS: Differentiable Architecture Search (ICLR 2019)"
    summary: ClassVar[str] = "first-order DARTS: alternating α step on a val batch, w step on a train batch"
    # SearchConfig fields this method's paper sets (applied under the preset and the user's flags).
    defaults: ClassVar[dict[str, Any]] = {}
    # Defaults of this method's own knobs, overridable through SearchConfig.method_options.
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg, space):
        self.cfg, self.space = cfg, space
        unknown = sorted(set(cfg.method_options) - set(self.options))
        if unknown:
            from ..errors import RobustDartsError
            known = ", ".join(sorted(self.options)) or "none"
            raise RobustDartsError(f"method {self.name!r} has no option {unknown[0]!r}; its options are: {known}.")
        self.opts = {**self.options, **cfg.method_options}

    # --- relaxation -------------------------------------------------------------------------------------------
    def tau(self, search, step: int) -> float:
        """Temperature of this step (the same for its arch and weight updates)."""
        return self.cfg.tau

    def arch_weights(self, search, step: int) -> dict:
        """Mixing weights with a graph to α, for the arch step."""
        return arch_weights(search.arch, self.tau(search, step))

    def weight_weights(self, search, step: int) -> dict:
        """Mixing weights for the weight step: no graph, so exactly-zero ops are skipped."""
        with torch.no_grad():
            return detached(arch_weights(search.arch, self.tau(search, step)))

    def derive_weights(self, search) -> dict:
        """The weights the discretization policy reads (default: softmax at τ = 1)."""
        with torch.no_grad():
            return detached(arch_weights(search.arch, 1.0))

    def eval_weights(self, search) -> dict:
        """The weights the supernet is validated with each epoch (default: those of the derivation)."""
        return self.derive_weights(search)

    # --- schedules ----------------------------------------------------------------------------------------------
    def drop_prob(self, search) -> float:
        """Search-time drop path on every mixed-edge output, ramped linearly (R-DARTS(DP))."""
        epochs = max(self.cfg.epochs - 1, 1)
        return self.cfg.drop_path * search.epoch / epochs

    def cutout_prob(self, search) -> float:
        """RobustDARTS switches cutout on with drop path and ramps its probability alike."""
        return search.epoch / max(self.cfg.epochs - 1, 1) if self.cfg.drop_path > 0 else 1.0

    def aux_skip_scale(self, search) -> float:
        return 0.0

    # --- steps ----------------------------------------------------------------------------------------------------
    def begin_epoch(self, search) -> None:
        pass

    def arch_loss_extra(self, search) -> torch.Tensor | None:
        """A regularizer of α added to the validation loss in the arch step (β-DARTS)."""
        return None

    def weight_backward(self, search, x, y, weights) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the supernet's weight gradients for this step; returns (loss, logits)."""
        logits = search.forward(x, weights)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()

    def end_epoch(self, search, record: dict) -> dict | None:
        """Return None to go on, {'stop': True, 'reason': ...}, or {'rollback': epoch, ...} (DARTS-ADA)."""
        return None

    # --- state --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
