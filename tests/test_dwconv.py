"""The depthwise convolution whose gradients are forward convolutions (dwconv.py) against independent truths.

- torch.autograd.gradcheck (finite differences, float64) of both formulas, together and each alone, at stride 1
  and 2, dilation 1 and 2, 3x3 and 5x5, odd sides, NCHW and NHWC (whether or not the shape rule takes them);
- the stock convolution's gradients in float32 for the depthwise ops of every family at supernet shapes;
- a search step with ``fast_depthwise`` on against one with it off from the same state (float tolerance), two runs
  with it on giving the same floats, and the Hessian (torch.func) running the stock convolution.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdarts.dwconv import DepthwiseConv2d, _direct, _DepthwiseConv
from robustdarts.spaces.ops import depthwise_conv, dil_conv, sep_conv

CASES = [  # (k, stride, dilation, side)
    (3, 1, 1, 8), (5, 1, 1, 7), (3, 1, 2, 8), (5, 1, 2, 9), (3, 2, 1, 8), (5, 2, 1, 7), (3, 2, 2, 9), (5, 2, 2, 8),
]


@pytest.mark.parametrize("k,stride,dilation,side", CASES)
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_each_formula_against_finite_differences(k, stride, dilation, side, nhwc):
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    w = torch.randn(3, 1, k, k, dtype=torch.float64)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(), w.requires_grad_()
    pad = dilation * (k - 1) // 2
    assert torch.autograd.gradcheck(lambda x, w: _DepthwiseConv.apply(x, w, stride, pad, dilation), (x, w))
    # and each gradient alone (an α-only backward asks for the input's)
    assert torch.autograd.gradcheck(lambda x: _DepthwiseConv.apply(x, w.detach(), stride, pad, dilation), (x,))
    assert torch.autograd.gradcheck(lambda w: _DepthwiseConv.apply(x.detach(), w, stride, pad, dilation), (w,))


@pytest.mark.parametrize("k,stride,dilation,side", CASES)
def test_layer_gradients_equal_the_stock_convolution(k, stride, dilation, side):
    """The layer as the ops build it (the rule of _direct choosing), float32, against nn.Conv2d's own backward;
    also when only the input (an α-only backward) or only the weight needs a gradient."""
    torch.manual_seed(1)
    fast = DepthwiseConv2d(8, k, stride, dilation * (k - 1) // 2, dilation=dilation)
    fast.fast_grads = True
    x = torch.randn(4, 8, side, side).contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(F.conv2d(x, fast.weight, None, stride, fast.padding, dilation, 8))
    stock = torch.autograd.grad(F.conv2d(x.requires_grad_(), fast.weight, None, stride, fast.padding, dilation, 8),
                                (x, fast.weight), g)
    mine = torch.autograd.grad(fast(x), (x, fast.weight), g)
    for a, b in zip(mine, stock):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    only_x = torch.autograd.grad(fast(x), (x,), g)[0]
    assert torch.allclose(only_x, stock[0], rtol=1e-4, atol=1e-5 * stock[0].abs().max().item())


def test_the_rule_takes_both_roads_at_supernet_shapes():
    """The shapes of the tiny and standard supernets take the direct road for some convolutions and the stock one
    for others (else the rule or its test would be empty)."""
    assert _direct(3, 1, 2, 16, 16) and _direct(5, 2, 2, 16, 16) and _direct(5, 1, 2, 32, 32)  # dilated
    assert not _direct(3, 1, 2, 32, 32)
    assert _direct(5, 1, 1, 16, 16) and not _direct(5, 1, 1, 32, 32)
    assert not _direct(3, 1, 1, 8, 8) and not _direct(5, 2, 1, 8, 8)  # the stock backward was as fast


@pytest.mark.parametrize("build", [
    lambda C, s: sep_conv(C, 5, s, False, True), lambda C, s: dil_conv(C, 3, s, False, True),
    lambda C, s: depthwise_conv(C, 5, s, 2, False, True)], ids=["sep_conv_5x5", "dil_conv_3x3", "lhd_dil_5x5"])
@pytest.mark.parametrize("stride", [1, 2])
def test_ops_of_every_family(build, stride):
    torch.manual_seed(2)
    op = build(8, stride).to(memory_format=torch.channels_last)
    x = torch.randn(4, 8, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    grads = []
    for fast in (False, True):
        for m in op.modules():
            if isinstance(m, DepthwiseConv2d):
                m.fast_grads = fast
        grads.append(torch.autograd.grad(op(x).square().sum(), [x, *op.parameters()]))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


def _step(fast: bool):
    from conftest import tiny_config
    from robustdarts.search.loop import Search

    search = Search(tiny_config("darts", "darts", channels_last=True, fast_depthwise=fast), None, progress=False)
    ctx, lr = search.begin_epoch()
    search.supernet.train()
    x, y = next(search.train_stream)
    xv, yv = next(search.val_stream)
    search.arch_step(ctx, (x, y), (xv, yv), lr)
    search.weight_step(ctx, x, y)
    return search


def test_search_step_with_and_without():
    a, b, again = _step(False), _step(True), _step(True)
    for name in ("normal", "reduce"):
        ga, gb = a.arch.alphas[name].grad, b.arch.alphas[name].grad
        assert torch.allclose(ga, gb, rtol=1e-3, atol=1e-4 * ga.abs().max().item())
        assert torch.equal(gb, again.arch.alphas[name].grad)  # deterministic
    for p, q, r in zip(a.supernet.parameters(), b.supernet.parameters(), again.supernet.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
        assert torch.equal(q, r)


def test_the_hessian_runs_the_stock_convolution():
    """torch.func transforms (the Hessian's batched HVPs) take the plain convolution: the same eigenvalues, bit for
    bit, with the option on and off."""
    from robustdarts.analysis.hessian import arch_hessian
    from robustdarts.archparams import ArchParams
    from robustdarts.supernet import Supernet

    torch.manual_seed(3)
    net = Supernet("darts", C=4, layers=3, num_classes=10)
    arch = ArchParams(net.space, generator=torch.Generator().manual_seed(0))
    batch = (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))
    values = []
    for fast in (False, True):
        net.configure(fast_depthwise=fast)
        values.append(arch_hessian(net, arch, [batch], method="lanczos", iters=5)["eigenvalue"])
    assert values[0] == values[1]


def test_autocast_runs_the_stock_convolution():
    """amp=bf16: the stock op under autocast (its casts and their backward), so the gradients reach the float32
    parameters in float32, as without the option."""
    torch.manual_seed(4)
    conv = DepthwiseConv2d(8, 5, 1, 2)
    conv.fast_grads = True
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    gx, gw = torch.autograd.grad(y.float().sum(), (x, conv.weight))
    assert gx.dtype == gw.dtype == torch.float32
