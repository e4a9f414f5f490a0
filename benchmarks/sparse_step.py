"""Step time of SP-DARTS after warmup versus dense DARTS, same space, batch and process.

After warmup SP-DARTS's weight steps use softmax(α/τ_s) with τ_s = 1e-3 (every step once C_e = 1). Once α has
spread, most mixing weights underflow to exactly 0, and the supernet skips those ops in the weight step (its weights
carry no graph): no backward and nothing saved for them, only a forward without autograd that keeps their BN running
statistics where computing them would (the eval-mode passes of a search read those). The arch step still evaluates
every op, as DARTS does (its weights carry a graph to α).

α is set to ``alpha_std``·N(0, 1) for both methods (a spread typical of mid-search α; the sparsity, and so the
speed-up, grows with the spread — right after a 1-epoch warmup the gaps are ~0.1, i.e. exp(−100), about the float32
underflow point), or loaded from a run's archive with ``--run DIR``. Repetitions are interleaved so that load on a
shared machine hits both alike; the medians are reported with the op calls counted by forward hooks.

    python benchmarks/sparse_step.py                      # ~1 min on 2 CPU cores
    python benchmarks/sparse_step.py --space darts-7 --channels 16 --layers 8 --batch 64 --image-size 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustdarts.methods import search_config
from robustdarts.search.loop import Search
from robustdarts.supernet import count_op_calls


def make_search(method: str, args) -> Search:
    cfg = search_config(dict(method=method, space=args.space, dataset="synthetic", epochs=args.epochs,
                             batch_size=args.batch, init_channels=args.channels, layers=args.layers,
                             image_size=args.image_size, limit_images=4 * args.batch, leakage_every=0,
                             seed=args.seed))
    return Search(cfg, None, progress=False)


def set_alpha(searches: list[Search], args) -> None:
    if args.run:
        from robustdarts.runs import RunDir
        archive, _ = RunDir(args.run).load_archive()
        values = archive[max(archive)]
    else:
        gen = torch.Generator().manual_seed(args.seed)
        values = {f"alpha/{c}": args.alpha_std * torch.randn(a.shape, generator=gen)
                  for c, a in searches[0].arch.alphas.items()}
        values.update({f"beta/{c}": args.alpha_std * torch.randn(b.shape, generator=gen)
                       for c, b in searches[0].arch.betas.items()})
    for s in searches:
        s.arch.load_dict(values)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="darts")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=50, help="SP-DARTS is measured at the last epoch (C_e = 1)")
    p.add_argument("--alpha-std", type=float, default=0.5)
    p.add_argument("--run", default=None, help="take α from the last epoch of this run's archive instead")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    dense, sparse = make_search("darts", args), make_search("sp-darts", args)
    set_alpha([dense, sparse], args)
    sparse.epoch = args.epochs - 1
    ctx, _ = sparse.begin_epoch()
    dense_ctx, _ = dense.begin_epoch()
    tau = sparse.recipe.tau(ctx)
    x, y = next(dense.train_stream)
    xv, yv = next(dense.val_stream)

    calls = {"darts": count_op_calls(dense.supernet, lambda: dense.weight_step(dense_ctx, x, y)),
             "sp-darts": count_op_calls(sparse.supernet, lambda: sparse.weight_step(ctx, x, y))}
    # Skipped ops still run a forward without autograd, to keep their BN statistics current (supernet._keep_current).
    statistics_calls = count_op_calls(sparse.supernet, lambda: sparse.weight_step(ctx, x, y), statistics=True)
    weights = sparse.relaxed(ctx, "weight")
    active = sum(int((w != 0).sum()) for k, w in weights.items() if k in sparse.space.cell_types)
    total = sum(w.numel() for k, w in weights.items() if k in sparse.space.cell_types)

    times: dict[str, list[float]] = {k: [] for k in ("darts_w", "sp_w", "darts_a", "sp_a")}
    for s, c in ((dense, dense_ctx), (sparse, ctx)):  # warm up allocators and caches
        s.weight_step(c, x, y)
        s.arch_step(c, (x, y), (xv, yv), 0.025)
    for _ in range(args.repeats):
        times["darts_w"].append(timed(lambda: dense.weight_step(dense_ctx, x, y)))
        times["sp_w"].append(timed(lambda: sparse.weight_step(ctx, x, y)))
        times["darts_a"].append(timed(lambda: dense.arch_step(dense_ctx, (x, y), (xv, yv), 0.025)))
        times["sp_a"].append(timed(lambda: sparse.arch_step(ctx, (x, y), (xv, yv), 0.025)))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"space {args.space}, C={args.channels}, {args.layers} cells, batch {args.batch}, "
          f"{args.image_size}x{args.image_size}, {args.threads} thread(s), α std {args.alpha_std}"
          + (f" (from {args.run})" if args.run else ""))
    print(f"SP-DARTS at τ_s = {tau:g}: {active}/{total} mixing weights non-zero "
          f"({100 * active / total:.1f}%, 'none' included)")
    print(f"op calls per weight step: DARTS {calls['darts']}, SP-DARTS {calls['sp-darts']} (+ {statistics_calls} "
          f"forwards without autograd of skipped ops, for their BN statistics)")
    print(f"weight step: DARTS {med['darts_w'] * 1e3:.1f} ms, SP-DARTS {med['sp_w'] * 1e3:.1f} ms, "
          f"ratio {med['darts_w'] / med['sp_w']:.2f}x")
    print(f"arch step:   DARTS {med['darts_a'] * 1e3:.1f} ms, SP-DARTS {med['sp_a'] * 1e3:.1f} ms (both dense)")
    full_dense, full_sparse = med["darts_w"] + med["darts_a"], med["sp_w"] + med["sp_a"]
    print(f"full step:   DARTS {full_dense * 1e3:.1f} ms, SP-DARTS {full_sparse * 1e3:.1f} ms, "
          f"ratio {full_dense / full_sparse:.2f}x")


if __name__ == "__main__":
    main()
