"""Wall time and peak memory of one DARTS search step (α step + weight step), ours against the plain reference.

    python benchmarks/search_step.py                 # tiny: C=8, 5 cells, batch 32, 16x16; first and second order
    python benchmarks/search_step.py --standard      # C=16, 8 cells, batch 64, 32x32; 1 warmup + 1 timed step
    python benchmarks/search_step.py --orders second --steps 9

Ours is ``robustdarts.search.loop.Search`` (``dataset="synthetic"``) driven one step at a time through
``arch_step`` and ``weight_step``: first order takes ∇α from one pass on the val batch; second order is
``architect.unrolled`` (virtual weights through ``torch.func.functional_call``, no network copy); the weight step
uses detached mixing weights. The reference is ``reference_darts``: ``Network`` + ``ReferenceArchitect`` +
``weight_step``, the way quark0/darts runs a step — α's graph in every pass, a new network built for w' every
unrolled step, the finite-difference HVP moving ``p.data`` in place.

Both get the same pre-drawn batches (drawn from our streams, outside the clock), so data loading is not timed.
Time: both in this process, steps alternating ours/reference in ABBA order; medians and the median of paired ratios.
Memory: each (implementation, order) runs ``--memory-steps`` steps in a fresh spawned process; we report its peak
RSS (VmHWM, reset before the first step) minus its RSS before the first step. Before timing, on the tiny
configuration, a check that steps from the same state give the same α gradients, α and weights. Timings on a shared CPU are noisy; figures, not tests.

Variants of ours (``--variants``): the speed and memory config fields, set on the Search (``nhwc``: channels_last,
``cell`` / ``edge``: recompute, ``fold``: mix_in_bn, ``pools``: share_pools, ``compile``: compiled ops, ``bf16``:
amp), joined by ``+``; each takes its turn with the reference and runs its own memory process. ``default`` is what a
default search runs (the "auto" fields, chosen by speed.py and memory.py as a search would: on this CPU NHWC, fold
and pools, fold off for second order); ``eager`` is the plain NCHW build (the original code's float order), on which
every other part is laid. Every variant starts from the same weights and α and sees the same batches. Ours runs at
the process's thread count (``threads`` set to it), as the reference does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_darts import Network, ReferenceArchitect, copy_weights, weight_step  # noqa: E402
from supernet_step import current_rss_mb, median, peak_rss_mb, reset_peak_rss, run_isolated  # noqa: E402

from robustdarts.config import SearchConfig  # noqa: E402
from robustdarts.search.loop import Search  # noqa: E402
from robustdarts.speed import REFERENCE_ORDER  # noqa: E402

TINY = dict(C=8, layers=5, batch=32, size=16)
STANDARD = dict(C=16, layers=8, batch=64, size=32)
ORDERS = ("first", "second")
FIELDS = {"default": dict(channels_last="auto", mix_in_bn="auto", share_pools="auto", fast_depthwise="auto",
                      recompute="auto"),
          "eager": {}, "nhwc": dict(channels_last=True), "fold": dict(mix_in_bn=True), "pools": dict(share_pools=True),
          "dw": dict(fast_depthwise=True), "cell": dict(recompute="cell"), "edge": dict(recompute="edge"), "compile": dict(compile="ops"),
          "bf16": dict(amp="bf16")}
DEFAULT_VARIANTS = "default,eager,nhwc,nhwc+fold+pools,nhwc+fold+pools+edge"


def variant_fields(name: str) -> dict:
    """The SearchConfig fields of a variant name such as ``nhwc+edge``."""
    fields: dict = {}
    for part in name.split("+"):
        if part not in FIELDS:
            raise SystemExit(f"unknown variant part {part!r}; parts are: {', '.join(FIELDS)}")
        fields.update(FIELDS[part])
    return fields


class Pair:
    """Our Search and the reference (network, architect, SGD), starting from the same weights and α."""

    def __init__(self, cfg: dict, order: str, num_batches: int, seed: int = 2, variants=("eager",),
                 device: str = "cpu", with_reference: bool = True):
        scfg = SearchConfig(dataset="synthetic", method="darts", arch_order=order, init_channels=cfg["C"],
                            layers=cfg["layers"], batch_size=cfg["batch"], image_size=cfg["size"],
                            limit_images=4 * cfg["batch"], seed=seed, leakage_every=0, hessian_every=0,
                            device=device, threads=torch.get_num_threads(), **REFERENCE_ORDER)
        self.order, self.device = order, torch.device(device)
        self.search = s = Search(scfg, None, progress=False)
        # Every variant starts from the eager search's state (weights, α, optimizers): a copy configured its way.
        self.searches = {"eager": s}
        for v in variants:
            if v != "eager":
                other = Search(SearchConfig(**{**scfg.__dict__, **variant_fields(v)}), None, progress=False)
                other.supernet.load_state_dict(s.supernet.state_dict())
                other.arch.load_state_dict(s.arch.state_dict())
                self.searches[v] = other
        self.lr = s.lr_at(0)
        for g in s.w_opt.param_groups:
            g["lr"] = self.lr
        self.ctx, _ = s.begin_epoch()
        s.supernet.train()
        self.batches = [(*next(s.train_stream), *next(s.val_stream)) for _ in range(num_batches)]

        self.calls = {"ours": 0, "ref": 0, **{v: 0 for v in self.searches}}
        for v, other in self.searches.items():
            for g in other.w_opt.param_groups:
                g["lr"] = self.lr
            other.begin_epoch()
            other.supernet.train()
        if not with_reference:
            return
        torch.manual_seed(seed)
        with self._on_device():
            self.ref = Network(cfg["C"], 10, cfg["layers"])
        copy_weights(s.supernet, self.ref)
        with torch.no_grad():
            self.ref.alphas_normal.copy_(s.arch.alphas["normal"])
            self.ref.alphas_reduce.copy_(s.arch.alphas["reduce"])
        self.ref_opt = torch.optim.SGD(self.ref.parameters(), lr=self.lr, momentum=scfg.momentum,
                                       weight_decay=scfg.weight_decay)
        self.architect = ReferenceArchitect(self.ref, scfg.momentum, scfg.weight_decay, scfg.arch_lr,
                                            scfg.arch_weight_decay)
        self.ref.train()

    def _on_device(self):
        """The reference makes its α and its w' networks on the default device: point it at ours (a
        TorchFunctionMode, so only off the CPU, where it would slow the reference down)."""
        return torch.device(self.device) if self.device.type != "cpu" else contextlib.nullcontext()

    def step(self, impl: str) -> tuple[float, float]:
        """One search step of ``impl`` on the next batch pair; returns (arch step s, whole step s)."""
        x, y, xv, yv = self.batches[self.calls[impl] % len(self.batches)]
        self.calls[impl] += 1
        t0 = time.perf_counter()
        if impl != "ref":
            s = self.searches["eager" if impl == "ours" else impl]
            s.arch_step(self.ctx, (x, y), (xv, yv), self.lr)
            t1 = time.perf_counter()
            s.weight_step(self.ctx, x, y)
        else:
            with self._on_device():
                self.architect.step(x, y, xv, yv, self.lr, self.ref_opt, unrolled=self.order == "second")
                t1 = time.perf_counter()
                weight_step(self.ref, self.ref_opt, x, y, grad_clip=self.search.cfg.grad_clip)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t0


def check_same_steps(cfg: dict, order: str, steps: int = 2, dtype: torch.dtype = torch.float32) -> str:
    """``steps`` search steps of both from the same state on the same batches, in ``dtype``: per step, the max |Δ|
    of the α gradient relative to its largest entry; at the end, max |Δ| of α and of the weights."""
    pair = Pair(cfg, order, steps)
    s, ref = pair.search, pair.ref
    s.supernet.to(dtype)
    s.arch.to(dtype)
    ref.to(dtype)
    for a in ref.arch_parameters():
        a.data = a.data.to(dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the reference builds its w' network with the default dtype
    rel = []
    try:
        for x, y, xv, yv in pair.batches:
            x, xv = x.to(dtype), xv.to(dtype)
            s.arch_step(pair.ctx, (x, y), (xv, yv), pair.lr)
            pair.architect.step(x, y, xv, yv, pair.lr, pair.ref_opt, unrolled=order == "second")
            ours_g = torch.cat([s.arch.alphas[c].grad.reshape(-1) for c in ("normal", "reduce")])
            ref_g = torch.cat([a.grad.reshape(-1) for a in ref.arch_parameters()])
            rel.append(((ours_g - ref_g).abs().max() / ref_g.abs().max()).item())
            s.weight_step(pair.ctx, x, y)
            weight_step(ref, pair.ref_opt, x, y, grad_clip=s.cfg.grad_clip)
    finally:
        torch.set_default_dtype(previous)
    da = max((s.arch.alphas[c] - r).abs().max().item()
             for c, r in (("normal", ref.alphas_normal), ("reduce", ref.alphas_reduce)))
    dw = max((p - q).abs().max().item() for p, q in zip(s.supernet.parameters(), ref.parameters()))
    return (f"{order} order, {str(dtype)[6:]}, {steps} steps from the same state: alpha-gradient max |ours - ref| / max |grad| per "
            f"step {', '.join(f'{r:.2g}' for r in rel)}; after: alpha max |diff| {da:.2g}, weights {dw:.2g}")


def measure_memory(impl: str, order: str, cfg: dict, steps: int, threads: int) -> dict:
    """In a fresh process: ``steps`` search steps of ``impl``; peak RSS over them minus the RSS before."""
    if threads:
        torch.set_num_threads(threads)
    variant = "eager" if impl == "ours" else impl
    pair = Pair(cfg, order, steps, variants=(variant,) if impl != "ref" else ("eager",))
    if impl != "ref":
        pair.ref = pair.architect = pair.ref_opt = None
        if variant != "eager":
            pair.search.supernet = None  # only the variant's network stays
        if "compile" in variant:
            pair.step(impl)  # compile outside the measured steps
    else:
        pair.search.supernet = None  # keep the config, drop our network
    reset_peak_rss()
    baseline = current_rss_mb()
    times = [pair.step(impl)[1] for _ in range(steps)]
    return {"baseline_mb": baseline, "peak_delta_mb": peak_rss_mb() - baseline, "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--standard", action="store_true", help="C=16, 8 cells, batch 64, 32x32 (default: tiny)")
    parser.add_argument("--orders", default=",".join(ORDERS), help="first,second")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each before timing")
    parser.add_argument("--steps", type=int, help="timed steps of each (default 5 tiny, 1 standard)")
    parser.add_argument("--batch-size", type=int, help="override the configuration's batch")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="variants of ours: parts "
                        f"{','.join(FIELDS)} joined by + (default {DEFAULT_VARIANTS})")
    parser.add_argument("--memory-steps", type=int, default=1, help="steps in each isolated memory run (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default); 1 by default "
                        "because the cores are shared")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    cfg = dict(STANDARD if args.standard else TINY)
    if args.batch_size:
        cfg["batch"] = args.batch_size
    steps = args.steps or (1 if args.standard else 5)
    orders = [o for o in args.orders.split(",") if o]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        variant_fields(v)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"DARTS search step (arch + weight), {'standard' if args.standard else 'tiny'}: C={cfg['C']}, "
          f"{cfg['layers']} cells, batch {cfg['batch']}, {cfg['size']}x{cfg['size']}; torch threads "
          f"{torch.get_num_threads()}; {args.warmup} warmup + {steps} timed steps each, reference and "
          f"{', '.join(variants)} taking turns; load average {os.getloadavg()[0]:.1f}")
    if not args.skip_check and not args.standard:
        for order in orders:
            print("  check", check_same_steps(cfg, order), flush=True)
            if order == "second":  # fp32 finite differences are noisy (~2% of the α gradient); float64 is exact
                print("  check", check_same_steps(cfg, order, dtype=torch.float64), flush=True)

    impls = ["ref", *variants]
    mem = {}
    if args.memory_steps:
        for i, order in enumerate(orders):
            for impl in (impls if i % 2 == 0 else impls[::-1]):
                m = run_isolated(measure_memory, impl, order, cfg, args.memory_steps, args.threads)
                mem[(impl, order)] = m
                print(f"  memory {impl:12s} {order:6s} peak RSS +{m['peak_delta_mb'] / 1024:6.3f} GiB  (steps " +
                      " ".join(f"{t:.2f}s" for t in m["seconds"]) + ")", flush=True)

    timing, first = {}, {}
    for order in orders:
        pair = Pair(cfg, order, 4, variants=variants)
        for _ in range(args.warmup):
            for impl in impls:
                first[(impl, order)] = pair.step(impl)[1]
        t = {impl: [] for impl in impls}
        for i in range(steps):
            rotated = impls[i % len(impls):] + impls[:i % len(impls)]
            for impl in (rotated if i % 2 == 0 else rotated[::-1]):
                t[impl].append(pair.step(impl))
        timing[order] = t
        for impl in impls:
            print(f"  timed {order:6s} {impl:12s} " + " ".join(f"{a:.2f}+{b - a:.2f}" for a, b in t[impl]) +
                  "  (arch+weight s)", flush=True)
        del pair

    print()
    print(f"{'order':7s} {'variant':22s} {'s':>8s} {'ref s':>8s} {'time':>6s} {'paired':>6s} {'1st s':>7s} | "
          f"{'arch s':>7s} {'ratio':>6s} | {'weight s':>8s} {'ratio':>6s} | {'peak RSS GiB':>12s} {'ref':>7s} "
          f"{'ratio':>6s}")
    for order in orders:
        t = timing[order]
        step = {k: median([b for _, b in v]) for k, v in t.items()}
        arch = {k: median([a for a, _ in v]) for k, v in t.items()}
        wstep = {k: median([b - a for a, b in v]) for k, v in t.items()}
        for v in variants:
            paired = median([o[1] / r[1] for o, r in zip(t[v], t["ref"])])
            line = (f"{order:7s} {v:22s} {step[v]:8.3f} {step['ref']:8.3f} {step[v] / step['ref']:6.2f} "
                    f"{paired:6.2f} {first.get((v, order), float('nan')):7.2f} | {arch[v]:7.3f} "
                    f"{arch[v] / arch['ref']:6.2f} | {wstep[v]:8.3f} {wstep[v] / wstep['ref']:6.2f} |")
            if mem:
                mo, mr = mem[(v, order)]["peak_delta_mb"] / 1024, mem[("ref", order)]["peak_delta_mb"] / 1024
                line += f" {mo:12.3f} {mr:7.3f} {mo / mr:6.2f}"
            print(line)
    print("ratios are ours / reference (below 1: ours is faster or smaller); 'paired' is the median ratio of adjacent "
          "steps; '1st s' is the first (warmup) step, compilation included; peak RSS = the isolated process's "
          f"high-water mark minus its RSS before the first step; load average now {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
