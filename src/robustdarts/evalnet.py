"""The discrete network built from a genotype, for training from scratch (spec D §1.7, L §1.3, §1.7).

Macros: ``cifar`` (stem 3C, reductions at L//3 and 2L//3, auxiliary head after cell 2L//3), ``imagenet`` (the DARTS
mobile setting: two stride-2 stems, 14 cells), ``lhd`` (two stems, cells wired by (sum, concat) outputs) and
``nb201`` (three stages of cells joined by residual blocks). Evaluation builds use affine BN. Drop path hits every
op output except identities, out of place, in training mode only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dwconv import set_fast_grads
from .errors import RobustDartsError
from .layers import ResBlock, count_parameters, drop_path, reduction_layers
from .spaces import make_op
from .spaces.ops import FactorizedReduce, relu_conv_bn


class _GenotypeCell(nn.Module):
    """Nodes that each sum a few (op, input) genes; subclasses choose inputs and outputs."""

    def _build_ops(self, genes, C, reduction, num_inputs, family):
        self.genes = [tuple(g) for g in genes]
        self.ops = nn.ModuleList(
            make_op(g[0], C, 2 if reduction and g[1] < num_inputs else 1, family=family, affine=True)
            for g in self.genes
        )

    def _run_op(self, k, x, drop_prob):
        op = self.ops[k]
        y = op(x)
        if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
            y = drop_path(y, drop_prob)
        return y


class DartsEvalCell(_GenotypeCell):
    def __init__(self, genotype, cell, C_pp, C_p, C, reduction, reduction_prev):
        super().__init__()
        self.pre0 = FactorizedReduce(C_pp, C) if reduction_prev else relu_conv_bn(C_pp, C, 1, 1, 0, True)
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, True)
        self._build_ops(genotype.genes(cell), C, reduction, 2, "darts")
        # Genes per node: node i owns genes 2i and 2i+1, or, in a user's space that keeps another number of edges
        # per node, the genes that name it, (op, input, node); the genotype says which (Genotype.gene_node). Gene
        # indices, not Genotype.node_inputs' (op, input) pairs: ops.<k> follows gene order (state_dict keys), and
        # explicit-node genes need not come sorted by node, so a node's genes are not always a contiguous run.
        nodes = [genotype.gene_node(cell, k) for k in range(len(self.genes))]
        self.steps = genotype.cell_num_nodes(cell)
        self.node_genes = [[k for k, n in enumerate(nodes) if n == node] for node in range(self.steps)]
        self.concat = list(getattr(genotype, f"{cell}_concat"))
        self.multiplier = len(self.concat)

    def forward(self, s0, s1, drop_prob=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        for node_genes in self.node_genes:
            terms = [self._run_op(k, states[self.genes[k][1]], drop_prob) for k in node_genes]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class LhdEvalCell(_GenotypeCell):
    """LHD discrete cell: node = Σ op(input) over its kept genes; sum output over the sum set, concat output over
    the concat set in node order. Nodes without genes are never consumed (pruned by the discretizer)."""

    def __init__(self, genes, output, C_pp, C_p, C, reduction, steps=5):
        super().__init__()
        self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, True) if C_pp != C else nn.Identity()
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, True)
        self._build_ops(genes, C, reduction, 2, "lhd")
        self.steps = steps
        self.sum_set = list(output["sum"])
        self.concat = sorted(output["concat"])
        self.multiplier = len(self.concat)

    def forward(self, s0, s1, drop_prob=0.0):
        states: list = [self.pre0(s0), self.pre1(s1)] + [None] * self.steps
        for node in range(self.steps):
            terms = [self._run_op(k, states[g[1]], drop_prob) for k, g in enumerate(self.genes) if g[2] == node]
            if terms:
                states[2 + node] = sum(terms[1:], terms[0])
        return sum(states[2 + i] for i in self.sum_set), torch.cat([states[2 + i] for i in self.concat], dim=1)


class Nb201EvalCell(_GenotypeCell):
    def __init__(self, genes, C, steps=3):
        super().__init__()
        kept = [g for g in genes if g[0] != "none"]
        self._build_ops(kept, C, False, 1, "nb201")
        self.steps = steps

    def forward(self, x, drop_prob=0.0):
        states = [x]
        for node in range(self.steps):
            terms = [self._run_op(k, states[g[1]], drop_prob) for k, g in enumerate(self.genes) if g[2] == node]
            states.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return states[-1]


class AuxiliaryHead(nn.Module):
    """DARTS auxiliary classifier. Built for 8x8 (CIFAR) or 7x7 (ImageNet) inputs; other sizes (tiny presets,
    28x28 Fashion-MNIST) are pooled adaptively to the 2x2 the head expects, with the same parameters."""

    def __init__(self, C, num_classes, pool_stride=3):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = F.relu(x)
        h = x.shape[-1]
        if h >= 5 and (h - 5) // self.pool.stride + 1 == 2:
            x = self.pool(x)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """``logits, aux_logits = net(x, drop_prob)``; aux_logits is None in eval mode or without the head."""

    def __init__(self, genotype, C: int = 36, layers: int = 20, num_classes: int = 10, in_channels: int = 3,
                 auxiliary: bool = True, macro: str | None = None, stem_multiplier: int = 3):
        super().__init__()
        kind = genotype.kind
        macro = macro or {"darts": "cifar", "lhd": "lhd", "nb201": "nb201"}[kind]
        allowed = {"darts": ("cifar", "imagenet"), "lhd": ("lhd",), "nb201": ("nb201",)}[kind]
        if macro not in allowed:
            raise RobustDartsError(f"a {kind} genotype cannot use the {macro!r} macro; use one of {', '.join(allowed)}.")
        self.genotype, self.macro, self.layers = genotype, macro, layers
        self.aux_index = 2 * layers // 3 if auxiliary and macro != "nb201" else -1
        cells, aux_C = [], None
        reductions = reduction_layers(layers)

        if macro in ("cifar", "imagenet"):
            if macro == "cifar":
                C_curr = stem_multiplier * C
                self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                                          nn.BatchNorm2d(C_curr))
                C_pp, C_p, red_prev = C_curr, C_curr, False
            else:
                self.stem0 = nn.Sequential(
                    nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
                    nn.ReLU(inplace=False), nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(C))
                self.stem1 = nn.Sequential(nn.ReLU(inplace=False),
                                           nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
                C_pp, C_p, red_prev = C, C, True
            C_curr = C
            for i in range(layers):
                red = i in reductions
                C_curr = C_curr * 2 if red else C_curr
                cell = DartsEvalCell(genotype, "reduce" if red else "normal", C_pp, C_p, C_curr, red, red_prev)
                cells.append(cell)
                C_pp, C_p, red_prev = C_p, cell.multiplier * C_curr, red
                if i == self.aux_index:
                    aux_C = C_p
            head_in = C_p
        elif macro == "lhd":
            self.stem0 = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            self.stem1 = nn.Sequential(nn.Conv2d(in_channels, stem_multiplier * C, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(stem_multiplier * C))
            C_pp, C_p, C_curr = C, stem_multiplier * C, C
            for i in range(layers):
                red = i in reductions
                C_curr = C_curr * 2 if red else C_curr
                genes, output = ((genotype.reduce, genotype.reduce_output) if red
                                 else (genotype.normal, genotype.normal_output))
                # The genotype's own node count (a space of more than LHD's 5 nodes, spaces as data), at least
                # what its outputs name (trailing nodes without genes are pruned by the discretizer).
                kind = "reduce" if red else "normal"
                steps = max(genotype.cell_num_nodes(kind), 1 + max((*output["sum"], *output["concat"]), default=-1))
                cell = LhdEvalCell(genes, output, C_pp, C_p, C_curr, red, steps)
                cells.append(cell)
                C_pp, C_p = C_curr, cell.multiplier * C_curr
                if i == self.aux_index:
                    aux_C = C_pp + C_p
            head_in = C_pp + C_p
        else:  # nb201: layers = cells per stage
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            C_curr = C
            for stage in range(3):
                if stage > 0:
                    cells.append(ResBlock(C_curr, 2 * C_curr))
                    C_curr *= 2
                # Its own node count: a fixed 3 built a 4-node genotype's last node and never ran it.
                cells += [Nb201EvalCell(genotype.normal, C_curr, genotype.cell_num_nodes("normal"))
                          for _ in range(layers)]
            self.lastact = nn.Sequential(nn.BatchNorm2d(C_curr), nn.ReLU(inplace=False))
            head_in = C_curr
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = (AuxiliaryHead(aux_C, num_classes, 3 if macro != "imagenet" else 2)
                               if aux_C is not None else None)
        self.classifier = nn.Linear(head_in, num_classes)

    channels_last = False

    def configure(self, channels_last: bool = False, fast_depthwise: bool = False) -> None:
        """How, not what, the network computes (TrainConfig fields of the same names; same logits and gradients to
        float tolerance): NHWC activations and weights; the depthwise gradients as forward convolutions."""
        set_fast_grads(self, fast_depthwise)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x, drop_prob: float = 0.0):
        aux = None
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.macro in ("cifar", "imagenet"):
            if self.macro == "cifar":
                s0 = s1 = self.stem(x)
            else:
                s0 = self.stem0(x)
                s1 = self.stem1(s0)
            for i, cell in enumerate(self.cells):
                s0, s1 = s1, cell(s0, s1, drop_prob)
                if i == self.aux_index and self.auxiliary_head is not None and self.training:
                    aux = self.auxiliary_head(s1)
            out = s1
        elif self.macro == "lhd":
            s0, s1 = self.stem0(x), self.stem1(x)
            for i, cell in enumerate(self.cells):
                s0, s1 = cell(s0, s1, drop_prob)
                if i == self.aux_index and self.auxiliary_head is not None and self.training:
                    aux = self.auxiliary_head(torch.cat([s0, s1], dim=1))
            out = torch.cat([s0, s1], dim=1)
        else:
            out = self.stem(x)
            for cell in self.cells:
                out = cell(out) if isinstance(cell, ResBlock) else cell(out, drop_prob)
            out = self.lastact(out)
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1)), aux

    def num_parameters(self, with_aux: bool = False) -> int:
        return sum(p.numel() for p in self.parameters()) if with_aux else count_parameters(self)
