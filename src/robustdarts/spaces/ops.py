"""Candidate operations: one registry for the DARTS, LHD and NAS-Bench-201 op families.

Every op maps C channels to C channels at the given stride. Build flags:
- ``affine``: search builds use non-affine BN, evaluation builds affine BN (DARTS convention).
- ``pool_bn``: DARTS search follows each pooling op with a non-affine BN; evaluation does not. The LHD family always
  does (LHD keeps the non-affine pool BN in its evaluation network too).
- ``shared_relu``: ops that begin with ReLU leave it out and mark themselves ``takes_relu = True``; the caller feeds
  them ``relu(x)`` computed once per source state. This saves one activation copy per such op in the supernet,
  which is what bounds a search step on a CPU (see docs/design.md). Parameters are identical either way.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..dwconv import DepthwiseConv2d
from ..entrypoints import forget, load_group
from ..errors import RobustDartsError, unknown

FAMILIES = ("darts", "lhd", "nb201")


class Zero(nn.Module):
    """The `none` op: zeros shaped like the (strided) output."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class NoiseOp(nn.Module):
    """RobustDARTS S4 `noise`: fresh N(mean, std) noise of the output shape; no gradient reaches the input.

    Active in eval mode as in the reference (an evaluation network with `noise` injects noise at test time).
    ``draws_random``: the supernet runs it even where its weight is 0 and it is skipped, so that the random stream
    advances as computing it would (supernet._keep_current).
    """

    draws_random = True

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return torch.randn_like(x).mul_(self.std).add_(self.mean)


class Relu(nn.Sequential):
    """A Sequential that may start with a ReLU; with ``shared_relu`` the ReLU is dropped and the op says so."""

    def __init__(self, layers, shared_relu: bool):
        # An Identity placeholder keeps the module indices (and state_dict keys) the same in both builds.
        super().__init__(nn.Identity() if shared_relu else nn.ReLU(inplace=False), *layers)
        self.takes_relu = shared_relu


def relu_conv_bn(C_in, C_out, kernel, stride, padding, affine, shared_relu=False, dilation=1) -> Relu:
    return Relu(
        [nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
         nn.BatchNorm2d(C_out, affine=affine)],
        shared_relu,
    )


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs (the second on the input shifted by one pixel), concat, BN."""

    def __init__(self, C_in, C_out, affine=True, shared_relu=False):
        super().__init__()
        assert C_out % 2 == 0, "FactorizedReduce needs an even channel count"
        self.takes_relu = shared_relu
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        if not self.takes_relu:
            x = F.relu(x)
        # Odd sizes: the shifted branch is one pixel short; pad it back like the stride-2 conv of the unshifted one.
        a = self.conv_1(x)
        b = self.conv_2(x[:, :, 1:, 1:])
        if b.shape[-2:] != a.shape[-2:]:
            b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        return self.bn(torch.cat([a, b], dim=1))


def sep_conv(C, k, stride, affine, shared_relu, repeat=2) -> Relu:
    """DARTS separable conv: [ReLU, depthwise kxk, pointwise 1x1, BN] twice, the second at stride 1."""
    pad = k // 2
    first = [DepthwiseConv2d(C, k, stride, pad), nn.Conv2d(C, C, 1, bias=False),
             nn.BatchNorm2d(C, affine=affine)]
    if repeat == 1:
        return Relu(first, shared_relu)
    second = [nn.ReLU(inplace=False), DepthwiseConv2d(C, k, 1, pad), nn.Conv2d(C, C, 1, bias=False),
              nn.BatchNorm2d(C, affine=affine)]
    return Relu(first + second, shared_relu)


def dil_conv(C, k, stride, affine, shared_relu) -> Relu:
    """DARTS dilated conv: ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN."""
    return Relu([DepthwiseConv2d(C, k, stride, k - 1, dilation=2), nn.Conv2d(C, C, 1, bias=False),
                 nn.BatchNorm2d(C, affine=affine)], shared_relu)


def depthwise_conv(C, k, stride, dilation, affine, shared_relu) -> Relu:
    """LHD sep/dil conv: ReLU, one depthwise conv, BN — no pointwise conv and no repeat."""
    pad = dilation * (k - 1) // 2
    return Relu([DepthwiseConv2d(C, k, stride, pad, dilation=dilation),
                 nn.BatchNorm2d(C, affine=affine)], shared_relu)


def conv_7x1_1x7(C, stride, affine, shared_relu) -> Relu:
    return Relu([nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
                 nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
                 nn.BatchNorm2d(C, affine=affine)], shared_relu)


def _pool(kind: str, C, stride, bn: bool):
    pool = (nn.MaxPool2d(3, stride=stride, padding=1) if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
    return nn.Sequential(pool, nn.BatchNorm2d(C, affine=False)) if bn else pool


def _skip(C, stride, affine, shared_relu):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine, shared_relu=shared_relu)


OpBuilder = Callable[..., nn.Module]  # (C, stride, affine, pool_bn, shared_relu) -> module

_COMMON: dict[str, OpBuilder] = {
    "none": lambda C, s, a, pbn, sr: Zero(s),
    "noise": lambda C, s, a, pbn, sr: NoiseOp(s),
    "skip_connect": lambda C, s, a, pbn, sr: _skip(C, s, a, sr),
    "max_pool_3x3": lambda C, s, a, pbn, sr: _pool("max", C, s, pbn),
    "avg_pool_3x3": lambda C, s, a, pbn, sr: _pool("avg", C, s, pbn),
}

OPS: dict[str, dict[str, OpBuilder]] = {
    "darts": {
        **_COMMON,
        "sep_conv_3x3": lambda C, s, a, pbn, sr: sep_conv(C, 3, s, a, sr),
        "sep_conv_5x5": lambda C, s, a, pbn, sr: sep_conv(C, 5, s, a, sr),
        "sep_conv_7x7": lambda C, s, a, pbn, sr: sep_conv(C, 7, s, a, sr),
        "dil_conv_3x3": lambda C, s, a, pbn, sr: dil_conv(C, 3, s, a, sr),
        "dil_conv_5x5": lambda C, s, a, pbn, sr: dil_conv(C, 5, s, a, sr),
        "conv_7x1_1x7": lambda C, s, a, pbn, sr: conv_7x1_1x7(C, s, a, sr),
    },
    "lhd": {
        **_COMMON,
        # LHD pools carry a non-affine BN in search and evaluation alike.
        "max_pool_3x3": lambda C, s, a, pbn, sr: _pool("max", C, s, True),
        "avg_pool_3x3": lambda C, s, a, pbn, sr: _pool("avg", C, s, True),
        "sep_conv_3x3": lambda C, s, a, pbn, sr: depthwise_conv(C, 3, s, 1, a, sr),
        "sep_conv_5x5": lambda C, s, a, pbn, sr: depthwise_conv(C, 5, s, 1, a, sr),
        "dil_conv_3x3": lambda C, s, a, pbn, sr: depthwise_conv(C, 3, s, 2, a, sr),
        "dil_conv_5x5": lambda C, s, a, pbn, sr: depthwise_conv(C, 5, s, 2, a, sr),
    },
    "nb201": {
        "none": _COMMON["none"],
        "skip_connect": _COMMON["skip_connect"],
        "avg_pool_3x3": lambda C, s, a, pbn, sr: _pool("avg", C, s, False),
        "nor_conv_1x1": lambda C, s, a, pbn, sr: relu_conv_bn(C, C, 1, s, 0, a, sr),
        "nor_conv_3x3": lambda C, s, a, pbn, sr: relu_conv_bn(C, C, 3, s, 1, a, sr),
    },
}


# The ops shipped here; a user's op (register_op) is added beside them, never over them.
BUILTIN_OPS = frozenset(name for table in OPS.values() for name in table)
_OP_NAME = re.compile(r"^[A-Za-z_]\w*$")  # what genotype texts (DARTS repr, NB201 'op~k') can spell
OpFactory = Callable[[int, int, bool], nn.Module]  # factory(C, stride, affine) -> module mapping C to C channels


def register_op(name: str, factory: OpFactory, *, source: str | None = None) -> None:
    """Add candidate op ``name`` to every op family: ``factory(C, stride, affine)`` returns an ``nn.Module`` that
    maps C channels to C channels, halving the spatial size at stride 2 (``affine``: False in the supernet, True in
    the evaluation network). From then on the op may appear in any space, derived genotypes name it, the
    evaluation network builds it and drawings show it. Registering a name again replaces the user's earlier op;
    a built-in name is refused. The factory gets no ``pool_bn``/``shared_relu`` flags: it receives the plain input."""
    what = f"op plugin {source}" if source else f"op {name!r}"
    if not isinstance(name, str) or not _OP_NAME.match(name):
        raise RobustDartsError(f"{what}: an op name must be a Python identifier (letters, digits, _), not "
                               f"{name!r}.")
    if name in BUILTIN_OPS:
        raise RobustDartsError(f"{what} is named {name!r}, which is a built-in op; register it under another name.")
    if not callable(factory):
        raise RobustDartsError(f"{what} must be a factory(C, stride, affine) -> nn.Module, not "
                               f"{type(factory).__name__}.")

    def build(C, stride, affine, pool_bn, shared_relu):
        module = factory(C, stride, affine)
        if not isinstance(module, nn.Module):
            raise RobustDartsError(f"the factory of op {name!r} returned {type(module).__name__}, not an "
                                   f"nn.Module; return the op's module.")
        return module

    for table in OPS.values():
        table[name] = build


def unregister_op(name: str) -> None:
    """Take a user's op out of every family (tests); built-in ops stay."""
    if name not in BUILTIN_OPS:
        for table in OPS.values():
            table.pop(name, None)


# ---- op plugins: the entry-point group robustdarts.ops (methods': plugins.py; the loop both share: entrypoints.py) ---
OP_GROUP = "robustdarts.ops"
OP_SOURCES: dict[str, str] = {}  # op -> the entry point (and distribution) that registered it
BROKEN_OPS: dict[str, str] = {}  # entry point name -> the one-sentence error of a bad op plugin


def _register_op_plugin(name: str, factory, source) -> None:
    register_op(name, factory, source=str(source))
    OP_SOURCES[name] = str(source)


def load_op_plugins() -> None:
    """Register the factory of every ``robustdarts.ops`` entry point under its name (once per process); a bad entry
    point is left out silently, and asking for its op raises its sentence (``make_op``, a space file's check)."""
    load_group(OP_GROUP, "op", _register_op_plugin, BROKEN_OPS)


def reset_plugins() -> None:
    """Forget the op plugins read so far and take their ops out of the registry (tests)."""
    for name in OP_SOURCES:
        unregister_op(name)
    OP_SOURCES.clear()
    BROKEN_OPS.clear()
    forget(OP_GROUP)


def known_op(name: str, family: str = "darts") -> bool:
    """Whether ``family`` has op ``name``, the installed op plugins (entry points) included."""
    if name not in OPS.get(family, {}):
        load_op_plugins()  # plugins are read only when a name is not ours
    return name in OPS.get(family, {})


def op_names(family: str = "darts") -> tuple[str, ...]:
    return tuple(OPS[family])


def make_op(name: str, C: int, stride: int, *, family: str = "darts", affine: bool = True, pool_bn: bool = False,
            shared_relu: bool = False) -> nn.Module:
    """Build candidate op ``name`` of ``family`` for C channels at ``stride``."""
    if family not in OPS:
        raise unknown("op family", family, OPS)
    table = OPS[family]
    if not known_op(name, family):
        if name in BROKEN_OPS:
            raise RobustDartsError(BROKEN_OPS[name])
        message = str(unknown(f"op for the {family} family", name, table)).rstrip(".")
        if name not in BUILTIN_OPS and _OP_NAME.match(str(name)):  # a typo, or a plugin's op a run's space names
            message += (f"; a plugin's op needs its plugin installed here (entry point group {OP_GROUP}) or "
                        f"robustdarts.register_op (derive and plot need no op code)")
        raise RobustDartsError(message + ".")
    return table[name](C, stride, affine, pool_bn, shared_relu)


def takes_relu(op: nn.Module) -> bool:
    return getattr(op, "takes_relu", False)
