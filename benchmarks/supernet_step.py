"""Time and memory of one forward+backward of the DARTS supernet, ours against the plain reference.

    python benchmarks/supernet_step.py            # the standard search configuration: batch 64, 32x32, C=16, 8 cells
    python benchmarks/supernet_step.py --tiny     # C=8, 5 cells, batch 32, 16x16 (the `tiny` preset's sizes)
    python benchmarks/supernet_step.py --tiny --steps 11 --threads 2

Ours is ``robustdarts.supernet.Supernet``; the reference is ``reference_darts.Network`` (every op on every edge,
``none`` computed, one ReLU per op, softmax inside forward). Five kinds of mixing weights:

- ``graph``   softmax(α) with α requiring grad: an arch step (and, in the original code, the weight step too);
- ``nograph`` the same weights detached: our weight step;
- ``onehot``  one op per edge (seeded, drawn from all 8), detached: a sparse relaxation (SP-DARTS at small τ) in a
  weight step, where ours skips every zero-weight op (yet runs it without autograd for its BN statistics, as the
  reference's 0·op(x) moves them) and the reference computes them all;
- ``stale``   the same with ``skipped_statistics: stale`` (``Supernet.keep_skipped_current(True, False)``): the
  skipped ops' statistics forward left out (random draws kept); α and weights unchanged, eval-mode reads differ;
- ``sampled`` the same weights where ours runs only the nonzero op (GDAS, whose reference does the same:
  ``Supernet.keep_skipped_current(False)``); the reference network still computes every op.

Memory: each (implementation, weights) pair runs one step in a fresh process (multiprocessing spawn), so its peak
resident set size (VmHWM, reset just before the step) is the step's own; we report it minus the RSS just before the
step. In the same step we sum the bytes autograd saves for backward (``saved_tensors_hooks``; each storage once),
which is the quantity the design is about (docs/design.md, "What limits speed here").

Time: both networks in this process, steps alternating ours/reference in ABBA order so that changes in machine
load hit both alike; medians over the timed steps, and the median of the paired ratios. One torch thread by default
(the cores are shared). Timings on a shared CPU are noisy; these are figures, not tests.

Before timing, a correctness check: with the parameters copied across, both networks give the same logits for the
same weights (and, on the tiny configuration, the same gradients).

Variants of ours (``--variants``, each a configuration of the same supernet, ``Supernet.configure``): ``default``
(what a default search on this device runs: speed.resolve_layout of a default SearchConfig; on the CPU
nhwc+fold+pools+dw), ``eager`` (the plain NCHW build, the original code's float order), ``nhwc`` (channels_last),
``cell`` / ``edge`` (recompute whole cells / whole mixed edges in backward), ``fold`` (mix_in_bn), ``pools`` (share_pools), ``dw`` (fast_depthwise), ``compile`` (torch.compile of each op; its first step, which
compiles, is reported apart), ``bf16`` (autocast), and ``+`` combinations (``nhwc+edge``). Each is checked against
``eager`` (logits and gradients), timed in the same round-robin as the reference, and measured in its own process.
``--profile VARIANT`` prints which kernels dominate one step of that variant (torch.profiler, self CPU time).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_darts import Network, copy_weights  # noqa: E402

from robustdarts.archparams import ArchParams  # noqa: E402
from robustdarts.relax import arch_weights, detached  # noqa: E402
from robustdarts.supernet import Supernet  # noqa: E402

TINY = dict(C=8, layers=5, batch=32, size=16)
STANDARD = dict(C=16, layers=8, batch=64, size=32)
KINDS = ("graph", "nograph", "onehot", "stale", "sampled")
OPTIONS = {"eager": {}, "nhwc": dict(channels_last=True), "fold": dict(mix_in_bn=True), "pools": dict(share_pools=True),
           "dw": dict(fast_depthwise=True), "cell": dict(recompute="cell"), "edge": dict(recompute="edge"), "compile": dict(compile="ops"),
           "bf16": {}}  # bf16: autocast around the forward (not a supernet option)
DEFAULT_VARIANTS = "default,eager,nhwc,nhwc+fold+pools,edge,nhwc+fold+pools+edge"


def default_options(device: str = "cpu") -> dict:
    """The supernet options a default search on ``device`` runs with (speed.py chooses them; recompute stays none
    where the memory suffices)."""
    from robustdarts.config import SearchConfig
    from robustdarts.speed import resolve_layout

    cfg = resolve_layout(SearchConfig(device=device))
    return dict(channels_last=cfg.channels_last, mix_in_bn=cfg.mix_in_bn, share_pools=cfg.share_pools,
                fast_depthwise=cfg.fast_depthwise)


def variant_options(name: str) -> tuple[dict, bool]:
    """``Supernet.configure`` options of a variant name such as ``nhwc+edge``, and whether it autocasts to bf16."""
    options: dict = {}
    for part in name.split("+"):
        if part == "default":
            options.update(default_options())
            continue
        if part not in OPTIONS:
            raise SystemExit(f"unknown variant part {part!r}; parts are: default, {', '.join(OPTIONS)}")
        options.update(OPTIONS[part])
    return options, "bf16" in name.split("+")


# --- measurement helpers (search_step.py uses them too) ---------------------------------------------------------------

def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: that one starts at the parent's RSS at fork time and
    survives exec, so a spawned child would inherit a high-water mark set by its parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - non-Linux


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class SavedBytes:
    """Bytes autograd saves for backward while active: ``total`` counts every saved tensor, ``unique`` each
    storage once (several ops often save the same tensor; the unique figure is the memory actually held)."""

    def __init__(self):
        self.storages: dict[int, int] = {}
        self.total = 0
        self.count = 0

    def _pack(self, t):
        self.count += 1
        self.total += t.numel() * t.element_size()
        try:
            s = t.untyped_storage()
            self.storages[s.data_ptr()] = max(self.storages.get(s.data_ptr(), 0), s.nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    @property
    def unique(self) -> int:
        return sum(self.storages.values())

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def run_isolated(fn, *args):
    """``fn(*args)`` in a fresh spawned process; returns its result."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# --- building both networks and their weights ------------------------------------------------------------------------

def build(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    ours = Supernet("darts", cfg["C"], cfg["layers"], 10, 3)
    ref = Network(cfg["C"], 10, cfg["layers"])
    copy_weights(ours, ref)
    arch = ArchParams("darts", generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref.alphas_normal.copy_(arch.alphas["normal"])
        ref.alphas_reduce.copy_(arch.alphas["reduce"])
    return ours, ref, arch


def variant_net(ours: Supernet, variant: str) -> Supernet:
    """A copy of ``ours`` (same weights) configured as ``variant``; ``eager`` is ``ours`` itself."""
    if variant in ("eager", "bf16", "ours"):
        return ours
    options, _ = variant_options(variant)
    net = Supernet("darts", ours.C, ours.layers, 10, 3)
    net.load_state_dict(ours.state_dict())
    notes = net.configure(**options)
    for note in notes:
        print(f"  note ({variant}): {note}")
    return net


def onehot_weights(arch: ArchParams, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for c, a in arch.alphas.items():
        idx = torch.randint(0, a.shape[1], (a.shape[0],), generator=gen)
        out[c] = F.one_hot(idx, a.shape[1]).to(a.dtype)
    return out


def make_forward(impl: str, kind: str, ours, ref, arch):
    """A closure running one forward; returns logits. Weights are rebuilt each call (the softmax is part of a step).
    ``impl``: ``ref``, ``ours`` or a variant name (``ours`` must then be that variant's network)."""
    if impl not in ("ours", "ref"):
        _, bf16 = variant_options(impl)  # the network passed in is already the variant's
        plain = make_forward("ours", kind, ours, ref, arch)
        if not bf16:
            return plain
        return lambda x: _autocast_forward(plain, x)
    onehot = onehot_weights(arch)
    if impl == "ours":
        if kind == "graph":
            return lambda x: ours(x, arch_weights(arch))
        if kind == "nograph":
            def fwd(x):
                with torch.no_grad():
                    w = detached(arch_weights(arch))
                return ours(x, w)
            return fwd
        def sparse(x, keep=kind != "sampled", statistics=kind == "onehot"):
            ours.keep_skipped_current(keep, statistics)
            return ours(x, onehot)
        return sparse
    if kind == "graph":
        return lambda x: ref(x)  # softmax(α) inside forward, α requires grad: the original in every step
    if kind == "nograph":
        def fwd(x):
            with torch.no_grad():
                w = {"normal": F.softmax(ref.alphas_normal, -1), "reduce": F.softmax(ref.alphas_reduce, -1)}
            return ref(x, w)
        return fwd
    return lambda x: ref(x, onehot)


def _autocast_forward(plain, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return plain(x).float()


# --- steps -----------------------------------------------------------------------------------------------------------

def make_step(impl: str, kind: str, ours, ref, arch, x, y):
    """A closure doing one forward+backward (gradients of every leaf cleared first); returns (forward s, step s)."""
    model = ref if impl == "ref" else ours
    fwd = make_forward(impl, kind, ours, ref, arch)
    leaves = list(model.parameters()) + list(arch.parameters()) + ref.arch_parameters()

    def step():
        for p in leaves:
            p.grad = None
        t0 = time.perf_counter()
        loss = F.cross_entropy(fwd(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t0

    return step


def inputs(cfg: dict):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(cfg["batch"], 3, cfg["size"], cfg["size"], generator=gen)
    return x, torch.randint(0, 10, (cfg["batch"],), generator=gen)


def measure_memory(impl: str, kind: str, cfg: dict, threads: int) -> dict:
    """In a fresh process: one step of ``impl`` with weights of ``kind``, counting saved bytes and peak RSS."""
    if threads:
        torch.set_num_threads(threads)
    ours, ref, arch = build(cfg)
    x, y = inputs(cfg)
    if impl != "ref":
        ours = variant_net(ours, impl)
        if "compile" in impl:
            make_step(impl, kind, ours, ref, arch, x, y)()  # compile outside the measured step
    step = make_step(impl, kind, ours, ref, arch, x, y)
    reset_peak_rss()
    baseline = current_rss_mb()
    with SavedBytes() as saved:
        _, seconds = step()
    return {"saved_total": saved.total, "saved_unique": saved.unique, "saved_count": saved.count,
            "baseline_mb": baseline, "peak_delta_mb": peak_rss_mb() - baseline, "seconds": seconds}


def time_alternating(cfg: dict, kinds, warmup: int, steps: int, variants=("eager",)) -> dict:
    """Median step/forward seconds per (impl, kind) and the median of paired ours/ref ratios; the reference and
    every variant of ours take turns step by step (the order rotating each round), so a change in machine load
    hits all alike. ``first`` is each one's first (warmup) step: for compiled variants it includes compilation."""
    ours, ref, arch = build(cfg)
    nets = {v: variant_net(ours, v) for v in variants}
    x, y = inputs(cfg)
    impls = ["ref", *variants]
    out = {}
    for kind in kinds:
        fns = {"ref": make_step("ref", kind, ours, ref, arch, x, y)}
        fns.update({v: make_step(v, kind, nets[v], ref, arch, x, y) for v in variants})
        first = {}
        for w in range(warmup):
            for impl in impls:
                t = fns[impl]()
                first.setdefault(impl, t[1])
        times = {impl: [] for impl in impls}
        for i in range(steps):
            order = impls[i % len(impls):] + impls[:i % len(impls)]
            for impl in (order if i % 2 == 0 else order[::-1]):
                times[impl].append(fns[impl]())
        out[kind] = {
            impl: {"step": median([t[1] for t in ts]), "fwd": median([t[0] for t in ts]), "all": [t[1] for t in ts],
                   "first": first.get(impl, float("nan"))}
            for impl, ts in times.items()
        }
        for v in variants:
            out[kind][v]["paired_ratio"] = median([a[1] / b[1] for a, b in zip(times[v], times["ref"])])
        out[kind]["paired_ratio"] = out[kind][variants[0]]["paired_ratio"]
        out[kind]["ours"] = out[kind][variants[0]]
        for impl in impls:
            print(f"  timed {kind:8s} {impl:12s} " + " ".join(f"{t[1]:.3f}" for t in times[impl]), flush=True)
    return out


def check_variants(cfg: dict, batch: int, variants) -> list[str]:
    """Max |variant - eager| of the logits and of every gradient (weights and α), from the same weights."""
    ours, ref, arch = build(cfg)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, cfg["size"], cfg["size"], generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def run(impl, net):
        fwd = make_forward(impl, "graph", net, ref, arch)
        for p in list(net.parameters()) + list(arch.parameters()):
            p.grad = None
        logits = fwd(x)
        F.cross_entropy(logits, y).backward()
        return logits.detach(), [p.grad.clone() for p in net.parameters()], [a.grad.clone() for a in arch.parameters()]

    base = run("eager", ours)
    lines = []
    for v in variants:
        if v == "eager":
            continue
        got = run(v, variant_net(ours, v))
        dl = (got[0] - base[0]).abs().max().item()
        dw = max((a - b).abs().max().item() for a, b in zip(got[1], base[1]))
        da = max((a - b).abs().max().item() for a, b in zip(got[2], base[2]))
        lines.append(f"{v} vs eager: logits max |diff| {dl:.2g}, weight gradients {dw:.2g}, alpha gradients {da:.2g} "
                     f"(max |grad alpha| {max(a.abs().max().item() for a in base[2]):.3g})")
    return lines


def profile_step(cfg: dict, variant: str, kind: str = "graph", rows: int = 15) -> str:
    """Which kernels dominate one step of ``variant``: torch.profiler's self CPU time per op, and the convolutions
    split by kind (depthwise kxk, pointwise, dense), forward and backward."""
    import collections

    from torch.profiler import ProfilerActivity, profile

    ours, ref, arch = build(cfg)
    net = variant_net(ours, variant)
    x, y = inputs(cfg)
    step = make_step(variant, kind, net, ref, arch, x, y)
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1
    lines = [f"profile of one {kind} step, {variant}: {total / 1e6:.2f} s of self CPU time"]
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:rows]:
        lines.append(f"  {e.key:45s} {e.self_cpu_time_total / 1e3:9.1f} ms {100 * e.self_cpu_time_total / total:5.1f}% "
                     f"({e.count} calls)")
    convs = collections.Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in ("aten::convolution_backward", "aten::mkldnn_convolution") and e.input_shapes:
            w = e.input_shapes[2 if e.key == "aten::convolution_backward" else 1]
            if len(w) == 4:
                kind_ = f"depthwise {w[2]}x{w[3]}" if w[1] == 1 else ("pointwise" if w[2:] == [1, 1] else "dense")
                convs[(kind_, "backward" if "backward" in e.key else "forward")] += e.self_cpu_time_total
    for (k, d), t in sorted(convs.items(), key=lambda kv: -kv[1]):
        lines.append(f"  conv {k:14s} {d:8s} {t / 1e3:9.1f} ms {100 * t / total:5.1f}%")
    return "\n".join(lines)


# --- correctness ---------------------------------------------------------------------------------------------------

def check_equal(cfg: dict, batch: int, grads: bool) -> list[str]:
    """Max |ours - reference| of the logits (softmax and one-hot weights) and, with ``grads``, of the gradients."""
    ours, ref, arch = build(cfg)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, cfg["size"], cfg["size"], generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    lines = []
    with torch.no_grad():
        a, b = ours(x, arch_weights(arch)), ref(x)
        lines.append(f"logits, softmax weights: max |diff| {(a - b).abs().max().item():.3g} "
                     f"(max |logit| {b.abs().max().item():.3g})")
        w = onehot_weights(arch)
        a, b = ours(x, w), ref(x, w)
        lines.append(f"logits, one-hot weights: max |diff| {(a - b).abs().max().item():.3g}")
    if grads:
        F.cross_entropy(ours(x, arch_weights(arch)), y).backward()
        F.cross_entropy(ref(x), y).backward()
        dw = max((p.grad - q.grad).abs().max().item() for p, q in zip(ours.parameters(), ref.parameters()))
        da = max((arch.alphas[c].grad - r.grad).abs().max().item()
                 for c, r in (("normal", ref.alphas_normal), ("reduce", ref.alphas_reduce)))
        ga = max(r.grad.abs().max().item() for r in ref.arch_parameters())
        lines.append(f"gradients: weights max |diff| {dw:.3g}; alpha max |diff| {da:.3g} (max |grad alpha| {ga:.3g})")
    return lines


# --- main ----------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="C=8, 5 cells, batch 32, 16x16 (default: the standard "
                        "C=16, 8 cells, batch 64, 32x32)")
    parser.add_argument("--batch-size", type=int, help="override the configuration's batch")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each before timing")
    parser.add_argument("--steps", type=int, help="timed steps of each (default 2 standard, 7 tiny)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="weights kinds to measure: graph,nograph,onehot,stale,sampled")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="variants of ours: parts "
                        f"default,{','.join(OPTIONS)} joined by + (default {DEFAULT_VARIANTS})")
    # One thread by default: the machine's 2 cores are shared with other jobs, and multi-threaded OpenMP timings
    # swing wildly when the cores are oversubscribed.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-check", action="store_true", help="skip the logits/gradients equality checks")
    parser.add_argument("--skip-memory", action="store_true", help="skip the isolated memory runs")
    parser.add_argument("--profile", help="after timing, profile one step of this variant (e.g. eager, nhwc)")
    args = parser.parse_args()
    cfg = dict(TINY if args.tiny else STANDARD)
    if args.batch_size:
        cfg["batch"] = args.batch_size
    steps = args.steps or (7 if args.tiny else 2)
    kinds = [k for k in args.kinds.split(",") if k]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        variant_options(v)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "tiny" if args.tiny else "standard"
    print(f"DARTS supernet forward+backward, {name}: C={cfg['C']}, {cfg['layers']} cells, batch {cfg['batch']}, "
          f"{cfg['size']}x{cfg['size']}; torch threads {torch.get_num_threads()}; {args.warmup} warmup + {steps} "
          f"timed steps each, reference and {', '.join(variants)} taking turns; load average "
          f"{os.getloadavg()[0]:.1f}")
    if not args.skip_check:
        for line in check_equal(cfg, min(8, cfg["batch"]), grads=args.tiny):
            print("  check", line)
        for line in check_variants(cfg, min(8, cfg["batch"]), variants):
            print("  check", line, flush=True)

    mem = {}
    if not args.skip_memory:
        for i, kind in enumerate(kinds):
            impls = ["ref", *variants]
            for impl in (impls if i % 2 == 0 else impls[::-1]):
                m = run_isolated(measure_memory, impl, kind, cfg, args.threads)
                mem[(impl, kind)] = m
                print(f"  memory {impl:12s} {kind:8s} saved {m['saved_unique'] / 2**30:6.3f} GiB "
                      f"({m['saved_count']} tensors, {m['saved_total'] / 2**30:.3f} GiB counting repeats)  "
                      f"peak RSS +{m['peak_delta_mb'] / 1024:6.3f} GiB  (step {m['seconds']:.2f}s)", flush=True)
    timing = time_alternating(cfg, kinds, args.warmup, steps, variants)

    print()
    print(f"{'weights':9s} {'variant':22s} {'s':>8s} {'ref s':>8s} {'time':>6s} {'paired':>6s} {'1st s':>7s} | "
          f"{'saved GiB':>9s} {'ratio':>6s} | {'peak RSS GiB':>12s} {'ref':>7s} {'ratio':>6s}")
    for kind in kinds:
        f = timing[kind]["ref"]
        for v in variants:
            o = timing[kind][v]
            line = (f"{kind:9s} {v:22s} {o['step']:8.3f} {f['step']:8.3f} {o['step'] / f['step']:6.2f} "
                    f"{o['paired_ratio']:6.2f} {o['first']:7.2f} |")
            if mem:
                mo, mf = mem[(v, kind)], mem[("ref", kind)]
                line += (f" {mo['saved_unique'] / 2**30:9.3f} {mo['saved_unique'] / mf['saved_unique']:6.2f} | "
                         f"{mo['peak_delta_mb'] / 1024:12.3f} {mf['peak_delta_mb'] / 1024:7.3f} "
                         f"{mo['peak_delta_mb'] / mf['peak_delta_mb']:6.2f}")
            print(line)
    if "graph" in timing:
        f = timing["graph"]["ref"]
        for kind in ("nograph", "onehot", "stale", "sampled"):
            for v in variants:
                if kind not in timing:
                    continue
                o = timing[kind][v]
                line = (f"{v} {kind} vs the original's weight step (the reference with alpha's graph): "
                        f"time {o['step'] / f['step']:.2f}")
                if mem:
                    mo, mf = mem[(v, kind)], mem[("ref", "graph")]
                    line += (f", saved bytes {mo['saved_unique'] / mf['saved_unique']:.2f}, "
                             f"peak RSS {mo['peak_delta_mb'] / mf['peak_delta_mb']:.2f}")
                print(line)
    print("ratios are ours / reference (below 1: ours is faster or smaller); 'paired' is the median of the ratios of "
          "adjacent steps; '1st s' is the first (warmup) step, compilation included; saved = bytes autograd keeps "
          "for backward, each storage once (recomputing variants: only what the checkpoints' own hooks let through, "
          "the checkpoint inputs; their peak RSS includes the recomputation); peak RSS = the isolated process's "
          f"high-water mark minus its RSS before the step; load average now {os.getloadavg()[0]:.1f}")
    if args.profile:
        print()
        print(profile_step(cfg, args.profile, kinds[0]))

if __name__ == "__main__":
    main()
