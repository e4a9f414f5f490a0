"""The gradients of a depthwise convolution: oneDNN's backward against forward convolutions (robustdarts.dwconv).

    python benchmarks/depthwise_grad.py            # the depthwise shapes of the tiny and standard supernets
    python benchmarks/depthwise_grad.py --threads 2

For every depthwise convolution shape of the DARTS supernet (tiny: C=8, batch 32, 16x16; standard: C=16, batch 64,
32x32; the widths and sides of each stage; sep_conv 3x3/5x5 and dil_conv 3x3/5x5 at stride 1 and 2): the forward
time; for each gradient (input, weight) the stock backward (``aten.convolution_backward`` asked for that gradient
alone) against the direct formula of dwconv.py; then what decides (a weight step needs both gradients, which the
stock backward computes in one call, cheaper than its two one-gradient calls): ``DepthwiseConv2d`` forward +
backward of both with ``fast_grads`` off ('layer') and on ('fast'), and whether ``dwconv._direct`` takes the direct
road for the shape. The rule was read off the 'fast / layer' column: the direct road is taken only where it measured
faster here. Medians of ``--repeat`` calls, channels-last tensors (the CPU default), one thread unless told.
Single calls of tiny kernels vary by 10-30% from run to run here; the rule keeps to the clear cases.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from robustdarts.dwconv import DepthwiseConv2d, _direct, _input_grad, _weight_grad


def median_us(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def shapes(batch: int, C: int, side: int):
    """(B, C, side, k, stride, dilation) of every depthwise conv in a 3-stage DARTS supernet."""
    for stage in range(3):
        c, s = C * 2 ** stage, side // 2 ** stage
        for k, d in ((3, 1), (5, 1), (3, 2), (5, 2)):
            yield batch, c, s, k, 1, d
            if stage < 2:  # reduction cells' first depthwise conv: stride 2 from the previous stage's side
                yield batch, c * 2, s, k, 2, d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"depthwise convolution gradients, stock backward vs direct (dwconv.py); {torch.get_num_threads()} "
          f"thread(s), channels-last, median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'size':9s} {'B':>3s} {'C':>3s} {'side':>4s} {'k':>2s} {'s':>2s} {'d':>2s} {'fwd us':>7s} | "
          f"{'dx stock':>8s} {'direct':>7s} {'ratio':>5s} | {'dw stock':>8s} {'direct':>7s} {'ratio':>5s} | "
          f"{'both':>7s} {'layer':>7s} {'fast':>7s} {'ratio':>5s} {'rule':>6s}")
    totals = {"stock": 0.0, "rule": 0.0}
    for size, (batch, C, side) in (("tiny", (32, 8, 16)), ("standard", (64, 16, 32))):
        for B, c, s, k, stride, d in shapes(batch, C, side):
            torch.manual_seed(0)
            x = torch.randn(B, c, s, s).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c, 1, k, k)
            pad = d * (k - 1) // 2
            y = F.conv2d(x, w, None, stride, pad, d, c)
            g = torch.randn_like(y)
            args_ = ([stride] * 2, [pad] * 2, [d] * 2, False, [0, 0], c)
            fwd = median_us(lambda: F.conv2d(x, w, None, stride, pad, d, c), args.repeat)
            sx = median_us(lambda: torch.ops.aten.convolution_backward(g, x, w, None, *args_, [True, False, False]),
                           args.repeat)
            sw = median_us(lambda: torch.ops.aten.convolution_backward(g, x, w, None, *args_, [False, True, False]),
                           args.repeat)
            dx = median_us(lambda: _input_grad(g, w, x.shape, stride, pad, d), args.repeat)
            dw = median_us(lambda: _weight_grad(x, g, w.shape, stride, pad, d), args.repeat)
            road = "direct" if _direct(k, stride, d, *y.shape[-2:]) else "stock"
            # Both gradients (a weight step): the stock backward computes them in one call, which costs less than
            # its two one-gradient calls; the layer's own forward + backward, whichever roads it takes.
            both = median_us(lambda: torch.ops.aten.convolution_backward(g, x, w, None, *args_, [True, True, False]),
                             args.repeat)
            layer = DepthwiseConv2d(c, k, stride, pad, dilation=d).to(memory_format=torch.channels_last)
            layer.weight.data.copy_(w)
            xr = x.clone().requires_grad_()

            def fwd_bwd(fast: bool) -> None:
                layer.fast_grads = fast
                torch.autograd.grad(layer(xr), (xr, layer.weight), g)

            plain, fast = median_us(lambda: fwd_bwd(False), args.repeat), median_us(lambda: fwd_bwd(True), args.repeat)
            totals["stock"] += plain
            totals["rule"] += fast
            print(f"{size:9s} {B:3d} {c:3d} {s:4d} {k:2d} {stride:2d} {d:2d} {fwd:7.0f} | {sx:8.0f} {dx:7.0f} "
                  f"{dx / sx:5.2f} | {sw:8.0f} {dw:7.0f} {dw / sw:5.2f} | {both:7.0f} {plain:7.0f} {fast:7.0f} "
                  f"{fast / plain:5.2f} {road:>6s}")
    print(f"all shapes once, the layer's forward + both gradients: stock {totals['stock'] / 1e3:.1f} ms, "
          f"fast_depthwise {totals['rule'] / 1e3:.1f} ms ({totals['rule'] / totals['stock']:.2f}x); ratio = direct / "
          f"stock (below 1: the direct formula is faster); 'both': the stock backward of both gradients in one call; "
          f"'layer' / 'fast': DepthwiseConv2d forward + backward of both without / with fast_grads; load average now "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
