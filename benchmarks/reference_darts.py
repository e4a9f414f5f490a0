"""A plain reference DARTS search supernet and second-order architect, the way quark0/darts ``cnn/`` does it.

This is the *baseline* for the benchmarks in this folder, written from the spec (spec D §1.1-1.5), not copied:

- every one of the 8 ops runs on every edge, ``none`` included (a zero tensor is computed and multiplied);
- every op that starts with a ReLU has its own ReLU (one activation copy per op, not per source state);
- ``MixedOp(x, w) = sum(w_o * op_o(x))`` over all ops; the softmax of α is taken inside ``forward``, per cell;
- α are plain tensors with ``requires_grad`` (not ``nn.Parameter``s), so they carry a graph in every pass,
  the weight step included;
- the same macro as ``robustdarts.supernet.Supernet``: stem conv 3x3 to 3C + affine BN, reductions at layers//3
  and 2·layers//3, preprocessing (FactorizedReduce after a reduction, else ReLU-conv1x1-BN), 4 nodes concatenated.

``ReferenceArchitect`` does the unrolled (second-order) step the original way: a whole new network is built for
w' every step (``model.new()`` + ``load_state_dict``), and the finite-difference Hessian-vector product moves the
live weights in place through ``p.data``.

Parameters are registered in the same order as in ``Supernet`` (the modules differ only in where the ReLU sits
and in ``none`` having a module), so ``copy_weights`` maps one network onto the other by position.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


# --- operations (cnn/operations.py, search flavour: affine=False) ---------------------------------------------------

class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ReLUConvBN(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    """[ReLU, depthwise, pointwise, BN] twice, the second at stride 1."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class FactorizedReduce(nn.Module):
    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda C, s, a: Zero(s),
    "max_pool_3x3": lambda C, s, a: nn.MaxPool2d(3, stride=s, padding=1),
    "avg_pool_3x3": lambda C, s, a: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "skip_connect": lambda C, s, a: Identity() if s == 1 else FactorizedReduce(C, C, affine=a),
    "sep_conv_3x3": lambda C, s, a: SepConv(C, C, 3, s, 1, affine=a),
    "sep_conv_5x5": lambda C, s, a: SepConv(C, C, 5, s, 2, affine=a),
    "dil_conv_3x3": lambda C, s, a: DilConv(C, C, 3, s, 2, 2, affine=a),
    "dil_conv_5x5": lambda C, s, a: DilConv(C, C, 5, s, 4, 2, affine=a),
}


# --- search network (cnn/model_search.py) ---------------------------------------------------------------------------

class MixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self._ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = OPS[name](C, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class Cell(nn.Module):
    def __init__(self, steps, multiplier, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._steps, self._multiplier = steps, multiplier
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                self._ops.append(MixedOp(C, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class Network(nn.Module):
    def __init__(self, C=16, num_classes=10, layers=8, steps=4, multiplier=4, stem_multiplier=3, in_channels=3):
        super().__init__()
        self._C, self._num_classes, self._layers = C, num_classes, layers
        self._steps, self._multiplier, self._stem_multiplier, self._in_channels = steps, multiplier, stem_multiplier, in_channels
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self._initialize_alphas()

    def _initialize_alphas(self):
        k = sum(2 + i for i in range(self._steps))
        self.alphas_normal = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_(True)
        self.alphas_reduce = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_(True)
        self._arch_parameters = [self.alphas_normal, self.alphas_reduce]

    def arch_parameters(self):
        return self._arch_parameters

    def new(self):
        """A fresh network with a copy of α (the original builds one of these every unrolled step)."""
        model_new = Network(self._C, self._num_classes, self._layers, self._steps, self._multiplier,
                            self._stem_multiplier, self._in_channels)
        for x, y in zip(model_new.arch_parameters(), self.arch_parameters()):
            x.data.copy_(y.data)
        return model_new

    def forward(self, x, weights: dict | None = None):
        """``weights``: optional {'normal', 'reduce'} mixing weights used instead of softmax(α) (benchmarks only)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if weights is not None:
                w = weights["reduce" if cell.reduction else "normal"]
            else:
                w = F.softmax(self.alphas_reduce if cell.reduction else self.alphas_normal, dim=-1)
            s0, s1 = s1, cell(s0, s1, w)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))

    def _loss(self, x, target):
        return F.cross_entropy(self(x), target)


# --- second-order architect (cnn/architect.py) ------------------------------------------------------------------------

def _concat(xs):
    return torch.cat([x.reshape(-1) for x in xs])


class ReferenceArchitect:
    """α step: first order (``unrolled=False``) or unrolled with a finite-difference HVP, as the original does it."""

    def __init__(self, model: Network, momentum=0.9, weight_decay=3e-4, arch_lr=3e-4, arch_weight_decay=1e-3):
        self.network_momentum = momentum
        self.network_weight_decay = weight_decay
        self.model = model
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                          weight_decay=arch_weight_decay)

    def _compute_unrolled_model(self, x, y, eta, network_optimizer):
        loss = self.model._loss(x, y)
        theta = _concat(self.model.parameters()).data
        try:
            moment = _concat(network_optimizer.state[v]["momentum_buffer"]
                             for v in self.model.parameters()).mul_(self.network_momentum)
        except KeyError:
            moment = torch.zeros_like(theta)
        dtheta = _concat(torch.autograd.grad(loss, list(self.model.parameters()))).data \
            + self.network_weight_decay * theta
        return self._construct_model_from_theta(theta - eta * (moment + dtheta))

    def _construct_model_from_theta(self, theta):
        model_new = self.model.new()
        model_dict = self.model.state_dict()
        params, offset = {}, 0
        for k, v in self.model.named_parameters():
            n = v.numel()
            params[k] = theta[offset:offset + n].view(v.size())
            offset += n
        assert offset == len(theta)
        model_dict.update(params)
        model_new.load_state_dict(model_dict)
        return model_new

    def step(self, x_train, y_train, x_val, y_val, eta, network_optimizer, unrolled: bool):
        self.optimizer.zero_grad()
        if unrolled:
            self._backward_step_unrolled(x_train, y_train, x_val, y_val, eta, network_optimizer)
        else:
            self.model._loss(x_val, y_val).backward()  # fills the weight grads too, as the original does
        self.optimizer.step()

    def _backward_step_unrolled(self, x_train, y_train, x_val, y_val, eta, network_optimizer):
        unrolled_model = self._compute_unrolled_model(x_train, y_train, eta, network_optimizer)
        unrolled_model._loss(x_val, y_val).backward()
        dalpha = [v.grad for v in unrolled_model.arch_parameters()]
        vector = [v.grad.data for v in unrolled_model.parameters()]
        implicit = self._hessian_vector_product(vector, x_train, y_train)
        for g, ig in zip(dalpha, implicit):
            g.data.sub_(eta * ig.data)
        for v, g in zip(self.model.arch_parameters(), dalpha):
            if v.grad is None:
                v.grad = g.data.clone()
            else:
                v.grad.data.copy_(g.data)

    def _hessian_vector_product(self, vector, x, y, r=1e-2):
        R = r / _concat(vector).norm()
        for p, v in zip(self.model.parameters(), vector):
            p.data.add_(R * v)
        grads_p = torch.autograd.grad(self.model._loss(x, y), self.model.arch_parameters())
        for p, v in zip(self.model.parameters(), vector):
            p.data.sub_(2 * R * v)
        grads_n = torch.autograd.grad(self.model._loss(x, y), self.model.arch_parameters())
        for p, v in zip(self.model.parameters(), vector):
            p.data.add_(R * v)
        return [(a - b).div_(2 * R) for a, b in zip(grads_p, grads_n)]


def weight_step(model: Network, optimizer, x, y, grad_clip=5.0):
    """The original's w step: a full forward/backward with α's graph, clipped gradients, SGD."""
    optimizer.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


# --- mapping onto robustdarts.supernet.Supernet ---------------------------------------------------------------------

@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers by position (both networks register them in the same order)."""
    for kind in ("parameters", "buffers"):
        a, b = list(getattr(src, kind)()), list(getattr(dst, kind)())
        if len(a) != len(b):
            raise ValueError(f"{kind}: {len(a)} vs {len(b)}")
        for s, d in zip(a, b):
            if s.shape != d.shape:
                raise ValueError(f"{kind}: shape {tuple(s.shape)} vs {tuple(d.shape)}")
            d.copy_(s)
