"""Architecture parameters, kept apart from the network weights.

α (one (edges, ops) tensor per cell type) and, for LHD, β (one (2, steps) tensor per cell type: row 0 the sum-output
logits, row 1 the concat-gate logits) are ``nn.Parameter``s of this module, so they are saved in ``state_dict``
and move with ``.to()``, but they never enter the weight optimizer or the weight-gradient clipping: those take
``supernet.parameters()``, which does not contain them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .spaces import Space, get_space


class ArchParams(nn.Module):
    def __init__(self, space: Space | str, init_std: float = 1e-3, generator: torch.Generator | None = None,
                 edge_betas: bool = False):
        super().__init__()
        self.space = get_space(space)
        # 1e-3·N(0,1) as every reference does (the DARTS paper's "zero init" would make the first
        # genotype a pure tie-break).
        self.alphas = nn.ParameterDict({
            c: nn.Parameter(init_std * torch.randn(self.space.alpha_shape(c), generator=generator))
            for c in self.space.cell_types
        })
        self.betas = nn.ParameterDict({
            c: nn.Parameter(init_std * torch.randn(2, self.space.steps, generator=generator))
            for c in self.space.cell_types
        } if self.space.kind == "lhd" else {})
        # PC-DARTS' edge-normalization logits, one per edge (drawn last, so α and β do not depend on them).
        self.edges = nn.ParameterDict({
            c: nn.Parameter(init_std * torch.randn(self.space.num_edges, generator=generator))
            for c in self.space.cell_types
        } if edge_betas else {})

    def relax_inputs(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(alphas, betas) as a recipe's ``relax`` takes them: PC-DARTS' edge logits ride with β as
        '<cell>_edge' (only a recipe that asked for them finds them there)."""
        betas = dict(self.betas)
        betas.update({f"{c}_edge": p for c, p in self.edges.items()})
        return dict(self.alphas), betas

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Plain detached tensors keyed 'alpha/normal', 'beta/reduce', ... (the per-epoch archive format)."""
        out = {f"alpha/{c}": p.detach().clone() for c, p in self.alphas.items()}
        out.update({f"beta/{c}": p.detach().clone() for c, p in self.betas.items()})
        out.update({f"edge/{c}": p.detach().clone() for c, p in self.edges.items()})
        return out

    @torch.no_grad()
    def load_dict(self, values: dict[str, torch.Tensor]) -> None:
        for c, p in self.alphas.items():
            p.copy_(values[f"alpha/{c}"])
        for c, p in self.betas.items():
            p.copy_(values[f"beta/{c}"])
        for c, p in self.edges.items():
            p.copy_(values[f"edge/{c}"])
