"""Wall time of one training step of the evaluation network (``robustdarts train``), default settings against the
stock build.

    python benchmarks/train_step.py                 # tiny train preset: C=8, 5 cells, batch 64, 16x16
    python benchmarks/train_step.py --standard      # DARTS' evaluation: C=36, 20 cells, batch 96, 32x32
    python benchmarks/train_step.py --variants default,stock,nhwc --steps 9

One step = forward with drop path and the auxiliary head, the two cross-entropies, backward (clipping and the SGD
update are the same for every variant and left out). Variants: ``stock`` (NCHW, the stock convolution backward:
the float order of the original code), ``nhwc`` (channels_last), ``dw`` (fast_depthwise), joined by ``+``;
``default`` is what a default ``train`` on this device runs (speed.resolve_layout of a default TrainConfig). All
variants hold the same weights and see the same batch; they take turns step by step (the order reversed every
round), medians of the timed steps and the median of the ratios of adjacent steps against ``stock``. One thread
unless told (``--threads``): the cores here are shared. Figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from robustdarts.config import TrainConfig
from robustdarts.evalnet import EvalNetwork
from robustdarts.speed import resolve_layout
from robustdarts.zoo import get_genotype

TINY = dict(C=8, layers=5, batch=64, size=16)
STANDARD = dict(C=36, layers=20, batch=96, size=32)
PARTS = {"stock": {}, "nhwc": dict(channels_last=True), "dw": dict(fast_depthwise=True)}


def options(name: str) -> dict:
    if name == "default":
        cfg = resolve_layout(TrainConfig())
        return dict(channels_last=cfg.channels_last, fast_depthwise=cfg.fast_depthwise)
    out = dict(channels_last=False, fast_depthwise=False)
    for part in name.split("+"):
        if part not in PARTS:
            raise SystemExit(f"unknown variant part {part!r}; parts are: default, {', '.join(PARTS)}")
        out.update(PARTS[part])
    return out


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--standard", action="store_true")
    parser.add_argument("--variants", default="default,stock,nhwc,nhwc+dw")
    parser.add_argument("--genotype", default="darts_v2")
    parser.add_argument("--steps", type=int, help="timed steps of each (default 7 tiny, 2 standard)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    size = STANDARD if args.standard else TINY
    steps = args.steps or (2 if args.standard else 7)
    variants = [v for v in args.variants.split(",") if v]
    if "stock" not in variants:
        variants.insert(0, "stock")
    torch.set_num_threads(args.threads)
    genotype = get_genotype(args.genotype)
    torch.manual_seed(0)
    nets = {}
    for v in variants:
        net = EvalNetwork(genotype, size["C"], size["layers"], 10, 3)
        if nets:
            net.load_state_dict(next(iter(nets.values())).state_dict())
        net.configure(**options(v))
        nets[v] = net.train()
    x, y = torch.randn(size["batch"], 3, size["size"], size["size"]), torch.randint(0, 10, (size["batch"],))
    print(f"evaluation-network training step ({args.genotype}): C={size['C']}, {size['layers']} cells, batch "
          f"{size['batch']}, {size['size']}x{size['size']}; {torch.get_num_threads()} thread(s); "
          f"{', '.join(f'{v} {options(v)}' for v in variants)}; load average {os.getloadavg()[0]:.1f}", flush=True)

    def step(v: str) -> float:
        t0 = time.perf_counter()
        logits, aux = nets[v](x, 0.2)
        (F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)).backward()
        return time.perf_counter() - t0

    for v in variants:
        step(v)  # warmup
    times = {v: [] for v in variants}
    for i in range(steps):
        for v in (variants if i % 2 == 0 else variants[::-1]):
            times[v].append(step(v))
    base = median(times["stock"])
    for v in variants:
        paired = median([a / b for a, b in zip(times[v], times["stock"])])
        print(f"  {v:12s} {median(times[v]):7.3f} s  ratio {median(times[v]) / base:5.2f}  paired {paired:5.2f}  ("
              + " ".join(f"{t:.2f}" for t in times[v]) + ")")
    print(f"ratios against stock (below 1: faster); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
