"""Depthwise convolutions whose gradients are computed as forward convolutions where that is faster (CPU).

The candidate ops' depthwise convolutions (sep_conv, dil_conv, LHD's convs) are most of a CPU search step, and
their backward is most of that: oneDNN's depthwise backward took 2-70x its forward here
(benchmarks/depthwise_grad.py), the dilated and 5x5 ones worst. Both of their gradients are convolutions too:

- input gradient, stride 1: the output gradient convolved with the flipped kernel, same dilation, padding
  ``d(k-1) - p`` — a depthwise *forward* convolution, as cheap as the forward (2-14x faster than the stock
  backward); stride 2 with dilation: the same on the output gradient spread onto the stride-1 grid (zeros between);
- weight gradient: for each channel the correlation of the input with the output gradient, i.e. one grouped
  convolution whose "images" are the (channel, image) pairs and whose kernels are the output gradients
  (stride and dilation swap roles), summed over the images.

Which convolutions take this road is decided by their shape alone (``_direct``: measured on this CPU, where it
pays against the stock backward of both gradients in one call), never by timing, so a run computes the same floats
every time and resumes bit-exactly. The values are those of the stock
backward up to float summation order (tests/test_dwconv.py: gradcheck in float64 and the stock gradients in
float32 for every op shape of the spaces). Off by default; ``Supernet.configure(fast_depthwise=True)`` turns it on
(the config field of that name, chosen by speed.py). Inside torch.func transforms (the Hessian's HVPs) and under
autocast (``amp``) the stock convolution runs: a custom autograd function there would need rules of its own.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def under_torch_func() -> bool:
    """Whether this runs inside a torch.func transform (grad, jvp, vmap: the Hessian's HVPs)."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def set_fast_grads(network: nn.Module, on: bool) -> None:
    """``fast_grads`` of every DepthwiseConv2d in ``network`` (Supernet.configure, EvalNetwork.configure)."""
    for module in network.modules():
        if isinstance(module, DepthwiseConv2d):
            module.fast_grads = on


def _direct(k: int, stride: int, dilation: int, out_h: int, out_w: int) -> bool:
    """Both gradients as forward convolutions? Read off benchmarks/depthwise_grad.py ('layer' against 'fast': the
    layer's forward and backward of both gradients, as a weight step runs it; every depthwise shape of the tiny and
    standard DARTS supernets; 2-core x86 CPU, torch 2.13, one thread): dilated kernels at either stride (0.1-0.85x,
    most 0.2-0.5x; a dilated 3x3 at 32x32 outputs measured 0.6-1.35x, so not there), and 5x5 kernels at stride 1
    up to 16x16 outputs (0.6-0.9x). Elsewhere the stock backward, which computes both gradients in one call, was as
    fast or faster: 3x3 undilated kernels (0.9-1.1x), 5x5 at stride 2 (1.0x), 5x5 at 32x32 (1.0-1.4x)."""
    if dilation > 1:
        return k >= 5 or out_h * out_w <= 256
    return k >= 5 and stride == 1 and out_h * out_w <= 256


def _input_grad(g: torch.Tensor, weight: torch.Tensor, x_shape, stride: int, padding: int, dilation: int):
    C, _, kh, kw = weight.shape
    if stride > 1:  # spread g onto the stride-1 output grid (zeros between), then the stride-1 rule
        B, _, H, W = x_shape
        grid = torch.zeros(B, C, H + 2 * padding - dilation * (kh - 1), W + 2 * padding - dilation * (kw - 1),
                           dtype=g.dtype, device=g.device).contiguous(memory_format=_layout(g))
        grid[:, :, ::stride, ::stride] = g
        g = grid
    return F.conv2d(g, weight.flip(-1, -2), None, 1, (dilation * (kh - 1) - padding, dilation * (kw - 1) - padding),
                    dilation, C)


def _layout(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() \
        else torch.contiguous_format


def _weight_grad(x: torch.Tensor, g: torch.Tensor, weight_shape, stride: int, padding: int, dilation: int):
    B, C, H, W = x.shape
    kh, kw = weight_shape[-2:]
    Ho, Wo = g.shape[-2:]
    images = x.transpose(0, 1).reshape(1, C * B, H, W)  # one "channel" per (channel, image) pair
    kernels = g.transpose(0, 1).reshape(C * B, 1, Ho, Wo)
    corr = F.conv2d(images, kernels, None, dilation, padding, stride, C * B)  # stride and dilation swap roles
    return corr[..., :kh, :kw].reshape(C, B, kh, kw).sum(1).unsqueeze(1)


class _DepthwiseConv(torch.autograd.Function):
    """The stock forward; a backward of the two gradients that are asked for (an α-only backward needs the input's
    alone), each as a forward convolution."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_x, need_w = ctx.needs_input_grad[:2]
        g = g.contiguous(memory_format=_layout(x))
        grad_x = _input_grad(g, weight, x.shape, stride, padding, dilation) if need_x else None
        grad_w = _weight_grad(x, g, weight.shape, stride, padding, dilation) if need_w else None
        return grad_x, grad_w, None, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)`` (same parameters, same state_dict)
    whose backward takes the faster road above when ``fast_grads`` is set."""

    fast_grads = False

    def __init__(self, C: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__(C, C, kernel_size, stride, padding, dilation=dilation, groups=C, bias=False)

    def forward(self, x):
        if (not self.fast_grads or not torch.is_grad_enabled() or under_torch_func() or x.dim() != 4
                or torch.is_autocast_enabled(x.device.type)):
            return super().forward(x)  # autocast (amp): its own casts and their backward, as the stock op
        (k, kw), (s, sw), (p, pw), (d, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        if k != kw or s != sw or p != pw or d != dw or 2 * p > d * (k - 1):
            return super().forward(x)
        out_h = (x.shape[-2] + 2 * p - d * (k - 1) - 1) // s + 1
        out_w = (x.shape[-1] + 2 * p - d * (k - 1) - 1) // s + 1
        if not _direct(k, s, d, out_h, out_w):
            return super().forward(x)
        return _DepthwiseConv.apply(x, self.weight, s, p, d)
