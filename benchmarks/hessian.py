"""Dominant Hessian eigenvalue: our batched exact Hessian against the RobustDARTS per-coordinate double backward.

The reference (automl/RobustDARTS src/search/analyze.py) takes the gradient of the validation loss w.r.t. α with
``create_graph=True`` and then calls ``torch.autograd.grad(g[i], α, retain_graph=True)`` once per coordinate: n
backward passes through the double-backward graph. Ours (``arch_hessian(method="exact")``) runs all n
forward-over-reverse HVPs in batched ``torch.func.vmap`` passes. Both run here, in one process, on the same
supernet, batch and α, with the network weights detached in both (so the reference is not charged for weight
gradients it never asked for) and BN in train mode (batch statistics). Both losses include the ½·wd·‖α‖² term.

    python benchmarks/hessian.py                 # darts space (n = 224), C=4, 5 cells, 16x16, batch 16
    python benchmarks/hessian.py --space s3 --batch 8

Also times the iterative path (``method="lanczos"``: one unbatched HVP per iteration, stopping once the top Ritz
value's residual bound is below ``--lanczos-tol`` relative), which RobustDARTS had no counterpart of.

Prints wall and CPU seconds of each, the ratios, and the agreement of the eigenvalues. A figure, not a test: the
machine may be shared, so CPU seconds (process time) are printed too.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from robustdarts.analysis.hessian import arch_hessian, flatten_arch, measurement_mode, unflatten_arch
from robustdarts.archparams import ArchParams
from robustdarts.relax import mixing_weights
from robustdarts.supernet import Supernet


def reference_hessian(net, arch, batch, weight_decay: float, rows: int | None = None) -> torch.Tensor:
    """RobustDARTS ``_hessian``: one retained double-backward per coordinate, upper triangle mirrored (``rows``:
    stop after that many, for the warm-up)."""
    x, y = batch
    theta = flatten_arch(arch).requires_grad_()
    alphas, betas = unflatten_arch(theta, arch)
    logits = net(x, mixing_weights(arch.space, alphas, betas))
    loss = F.cross_entropy(logits, y) + 0.5 * weight_decay * theta.pow(2).sum()
    (grad,) = torch.autograd.grad(loss, theta, create_graph=True)
    n = theta.numel()
    H = torch.zeros(n, n, dtype=theta.dtype)
    for i in range(n if rows is None else rows):
        (row,) = torch.autograd.grad(grad[i], theta, retain_graph=True)
        H[i, i:] = row[i:].detach()
    return torch.triu(H) + torch.triu(H, 1).T


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="darts")
    ap.add_argument("--C", type=int, default=4)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--chunk-size", type=int, default=None, help="HVP directions per vmap pass (default: auto)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--arch-weight-decay", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lanczos-iters", type=int, default=50)
    ap.add_argument("--lanczos-tol", type=float, default=1e-4,
                    help="relative residual bound of the top Ritz value at which Lanczos stops")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = Supernet(args.space, C=args.C, layers=args.layers, num_classes=10)
    arch = ArchParams(args.space)
    batch = (torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 10, (args.batch,)))
    n = arch.space.num_alpha
    print(f"space {args.space} (n = {n}), C={args.C}, {args.layers} cells, {args.size}x{args.size}, "
          f"batch {args.batch}, {args.threads} threads, torch {torch.__version__}")

    # Warm-up outside the timings, each path on this very problem: the first batched pass pays one-time costs
    # (the first exact call took 42 s here, the next ones 28 s: decompositions, kernels for new shapes) that a
    # search, which measures every few epochs, pays once. The reference's rows all have one shape, so a few rows
    # warm it up.
    frozen = copy.deepcopy(net)
    for p in frozen.parameters():
        p.requires_grad_(False)
    arch_hessian(net, arch, [batch], method="exact", chunk_size=args.chunk_size)
    arch_hessian(net, arch, [batch], method="lanczos", iters=2)
    with measurement_mode(frozen, "train"):
        reference_hessian(frozen, arch, batch, args.arch_weight_decay, rows=4)

    ours, ours_wall, ours_cpu = timed(lambda: arch_hessian(net, arch, [batch], method="exact",
                                                           arch_weight_decay=args.arch_weight_decay,
                                                           chunk_size=args.chunk_size))
    with measurement_mode(frozen, "train"):
        H_ref, ref_wall, ref_cpu = timed(lambda: reference_hessian(frozen, arch, batch, args.arch_weight_decay))
    ref_top = float(torch.linalg.eigvalsh(H_ref)[-1])

    lanczos, lz_wall, lz_cpu = timed(lambda: arch_hessian(net, arch, [batch], method="lanczos",
                                                          arch_weight_decay=args.arch_weight_decay,
                                                          iters=args.lanczos_iters, tol=args.lanczos_tol))

    rel = abs(ours["eigenvalue"] - ref_top) / abs(ref_top)
    lz_rel = abs(lanczos["eigenvalue"] - ref_top) / abs(ref_top)
    print(f"reference (n double-backward rows): {ref_wall:7.1f} s wall  {ref_cpu:7.1f} s CPU  λ_max = {ref_top:.6g}")
    print(f"ours (batched fwd-over-rev, {ours['hvps']} HVPs, chunk {ours['chunk_size']}): {ours_wall:7.1f} s wall  "
          f"{ours_cpu:7.1f} s CPU  λ_max = {ours['eigenvalue']:.6g}")
    print(f"ours, Lanczos (tol {args.lanczos_tol:g}, at most {args.lanczos_iters} HVPs): {lz_wall:7.1f} s wall  "
          f"{lz_cpu:7.1f} s CPU  λ_max = {lanczos['eigenvalue']:.6g}")
    print(f"speed-up, exact:   {ref_wall / ours_wall:.1f}x wall, {ref_cpu / ours_cpu:.1f}x CPU; "
          f"eigenvalues agree to {rel:.1e} (relative){'' if rel < 1e-3 else '  <-- DISAGREE'}")
    print(f"speed-up, Lanczos: {ref_wall / lz_wall:.1f}x wall, {ref_cpu / lz_cpu:.1f}x CPU; "
          f"eigenvalues agree to {lz_rel:.1e} (relative){'' if lz_rel < 1e-3 else '  <-- DISAGREE'}")


if __name__ == "__main__":
    main()
