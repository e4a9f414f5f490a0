"""The search step on a GPU: time and peak memory of each variant against the reference, and a tiny search run.

    python benchmarks/gpu_step.py                          # tiny and standard, first and second order
    python benchmarks/gpu_step.py --sizes tiny --orders first --steps 3

Without a CUDA device it prints one line and exits 0 (this project's CI machines have none). With one, for each
size and order: the reference (``reference_darts`` on the GPU) and each variant of ours (``search_step.FIELDS``:
``eager``, ``nhwc``, ``bf16``, ``edge``, ``cell``, ``fold``, ``pools``, ``compile``, joined by ``+``) take turns
step by step; times are taken after ``torch.cuda.synchronize`` (medians), peak memory is
``torch.cuda.max_memory_allocated`` over the timed steps of each in turn (reset before each). Then a whole tiny
search (``device=cuda``, synthetic data, 1 epoch, eigenvalue and leakage diagnostics on) runs end to end, the
check that nothing in a search needs the CPU. Figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from search_step import STANDARD, TINY, Pair, variant_fields  # noqa: E402
from supernet_step import median  # noqa: E402

from robustdarts.config import SearchConfig  # noqa: E402
from robustdarts.search.loop import Search  # noqa: E402


def measure(cfg: dict, order: str, variants, warmup: int, steps: int, device: str) -> dict:
    """Per implementation: median step seconds, first (warmup) step seconds and peak GiB allocated."""
    pair = Pair(cfg, order, 4, variants=variants, device=device)
    impls = ["ref", *variants]
    first, times, peak = {}, {impl: [] for impl in impls}, {}
    for _ in range(warmup):
        for impl in impls:
            first.setdefault(impl, pair.step(impl)[1])
    for impl in impls:  # peak memory of each on its own
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        pair.step(impl)
        peak[impl] = (torch.cuda.max_memory_allocated(device) - before) / 2**30
    for i in range(steps):
        rotated = impls[i % len(impls):] + impls[:i % len(impls)]
        for impl in rotated:
            times[impl].append(pair.step(impl)[1])
    return {impl: {"step": median(times[impl]), "first": first.get(impl, float("nan")), "peak": peak[impl]}
            for impl in impls}


def tiny_search(device: str) -> str:
    """One tiny search end to end on ``device``: steps, evaluation, derivation, eigenvalue and leakage."""
    cfg = SearchConfig(dataset="synthetic", device=device, epochs=1, batch_size=32, init_channels=8, layers=5,
                       image_size=16, limit_images=256, hessian_every=1, leakage_every=1)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        genotype = Search(cfg, f"{out}/run", progress=False).run()
        seconds = time.perf_counter() - t0
    return f"tiny search on {device}: 1 epoch in {seconds:.1f} s, normal cell {[g[0] for g in genotype.normal]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,standard")
    parser.add_argument("--orders", default="first,second")
    parser.add_argument("--variants", default="eager,nhwc,bf16,nhwc+bf16,nhwc+fold+pools,nhwc+edge")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU benchmark is skipped (the device-agnostic paths are tested on the CPU).")
        return
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        variant_fields(v)
    torch.backends.cudnn.benchmark = True
    print(f"search step on {torch.cuda.get_device_name(args.device)}, torch {torch.__version__}; {args.warmup} warmup "
          f"+ {args.steps} timed steps each, reference and {', '.join(variants)} taking turns")
    print(f"{'size':9s} {'order':7s} {'impl':20s} {'step ms':>9s} {'vs ref':>7s} {'1st s':>7s} {'peak GiB':>9s} "
          f"{'vs ref':>7s}")
    for size in [s for s in args.sizes.split(",") if s]:
        cfg = dict(TINY if size == "tiny" else STANDARD)
        for order in [o for o in args.orders.split(",") if o]:
            r = measure(cfg, order, variants, args.warmup, args.steps, args.device)
            ref = r["ref"]
            for impl, m in r.items():
                print(f"{size:9s} {order:7s} {impl:20s} {1e3 * m['step']:9.1f} {m['step'] / ref['step']:7.2f} "
                      f"{m['first']:7.2f} {m['peak']:9.3f} {m['peak'] / max(ref['peak'], 1e-9):7.2f}", flush=True)
    print(tiny_search(args.device))


if __name__ == "__main__":
    main()
