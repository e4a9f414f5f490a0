"""A default tiny search epoch against the same number of the original DARTS code's first-order steps, the two
alternating in one run (issue 28: the epoch should cost at most half of those steps).

    python benchmarks/search_epoch.py                 # darts space, --preset tiny, 2 rounds + warmup: ~4-5 min
    python benchmarks/search_epoch.py --rounds 4 --dataset synthetic

Ours is what ``robustdarts search --space darts --preset tiny`` runs (``methods.search_config``, the CLI's default
dataset fashion-mnist, every "auto" field chosen as the CLI would: layout, recomputation, threads), one whole epoch
per round through ``Search.run``: drawing and augmenting its batches, the α and weight steps, the end-of-epoch
evaluation of the val half, derivation and diagnostics (no run directory, so no checkpoint is written). The
reference is ``reference_darts`` (``Network`` + ``ReferenceArchitect`` first order + ``weight_step``, at one thread,
as the issue's figure was taken) for as many steps as our epoch has, on batches of the same shape pre-drawn from our
streams (its data loading is not timed, its evaluation pass not run: both favour the reference). Rounds alternate
ours/reference in ABBA order; the summary is the median of each and the median of the paired ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_darts import Network, ReferenceArchitect, copy_weights, weight_step  # noqa: E402

from robustdarts.methods import search_config  # noqa: E402
from robustdarts.search.loop import Search  # noqa: E402


def reference_steps(search: Search, steps: int, ref_threads: int):
    """A callable that runs ``steps`` first-order steps of the reference on pre-drawn batches of ``search``'s shape
    and returns the seconds they took."""
    cfg = search.cfg
    torch.manual_seed(cfg.seed)
    ref = Network(cfg.init_channels, 10, cfg.layers, in_channels=search.train_set.channels)
    copy_weights(search.supernet, ref)
    ref.to(memory_format=torch.contiguous_format)  # our weights may be NHWC: the reference runs NCHW, as the original
    opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    architect = ReferenceArchitect(ref, cfg.momentum, cfg.weight_decay, cfg.arch_lr, cfg.arch_weight_decay)
    batches = [(*next(search.train_stream), *next(search.val_stream)) for _ in range(min(steps, 8))]
    batches = [tuple(t.contiguous() for t in b) for b in batches]
    ref.train()

    def run() -> float:
        torch.set_num_threads(ref_threads)
        t0 = time.perf_counter()
        for i in range(steps):
            x, y, xv, yv = batches[i % len(batches)]
            architect.step(x, y, xv, yv, cfg.lr, opt, unrolled=False)
            weight_step(ref, opt, x, y, grad_clip=cfg.grad_clip)
        return time.perf_counter() - t0

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="darts")
    parser.add_argument("--dataset", default="fashion-mnist", help="the CLI's default (synthetic needs no data)")
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs of ours and step runs of the reference")
    parser.add_argument("--reference-threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field of ours (e.g. channels_last=false to time an option's effect)")
    args = parser.parse_args()
    overrides = dict(space=args.space, dataset=args.dataset, preset="tiny", epochs=args.rounds + 1)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    cfg = search_config(overrides)
    search = Search(cfg, None, progress=False)
    ours_threads = search.threads
    steps = search.train_stream.steps_per_epoch
    ref_run = reference_steps(search, steps, args.reference_threads)

    def ours() -> float:
        torch.set_num_threads(ours_threads)
        t0 = time.perf_counter()
        search.run(stop_after=search.epoch)  # one whole epoch, evaluation and diagnostics included
        return time.perf_counter() - t0

    print(f"default tiny search epoch ({cfg.space}, {cfg.dataset}: {steps} steps + evaluation; channels_last "
          f"{cfg.channels_last}, mix_in_bn {cfg.mix_in_bn}, share_pools {cfg.share_pools}, fast_depthwise "
          f"{cfg.fast_depthwise}, recompute "
          f"{search.cfg.recompute}, {ours_threads} thread(s)) against {steps} first-order steps of the reference "
          f"({args.reference_threads} thread(s)); load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"  warmup: ours {ours():.2f} s, reference {ref_run():.2f} s", flush=True)
    times = {"ours": [], "ref": []}
    for r in range(args.rounds):
        order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
        for impl in order:
            times[impl].append(ours() if impl == "ours" else ref_run())
        print(f"  round {r}: ours {times['ours'][-1]:.2f} s, reference {times['ref'][-1]:.2f} s", flush=True)
    mo, mr = statistics.median(times["ours"]), statistics.median(times["ref"])
    paired = statistics.median(o / r for o, r in zip(times["ours"], times["ref"]))
    print(f"epoch {mo:.2f} s, reference steps {mr:.2f} s: ratio {mo / mr:.2f} (paired {paired:.2f}; target <= 0.5); "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
