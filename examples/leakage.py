"""Information-bypass leakage and the discretization gap: SP-DARTS versus DARTS on Fashion-MNIST (CPU-sized).

Two searches on the same data, space, sizes and seed; each method keeps its own algorithm settings (DARTS: cosine
weight lr 0.025, arch wd 1e-3; SP-DARTS: constant weight lr 0.05, arch wd 0, warmup 1 epoch at τ = 10 then the
mixed-sparsity ramp stretched to the run). The search loop logs, every epoch, the leaked mass (mixing mass on
pairs the derived genotype drops) and the discretization gap (supernet accuracy with its relaxed weights minus
with the genotype's one-hot weights, BN recalibrated alike); see ``robustdarts.analysis.leakage``. After the
search the gap is measured once more on the whole validation half.

    python examples/leakage.py                    # about 12-15 min on 2 busy CPU cores
    python examples/leakage.py --epochs 2 --limit-images 640   # a 1-minute smoke run

Writes ``docs/leakage.json`` and ``docs/leakage.png`` (``--out``) and the two run directories under ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustdarts.analysis.leakage import leakage_metrics
from robustdarts.methods import get_preset, search_config
from robustdarts.methods.recipe import derive_weights
from robustdarts.search.loop import Search
from robustdarts.speed import REFERENCE_ORDER

METHODS = ("darts", "sp-darts")


def active_fraction(search: Search, tau: float) -> float:
    """Share of the mixing weights (all cell types, 'none' included) that are not exactly 0 at τ (float32)."""
    total = active = 0
    for a in search.arch.alphas.values():
        w = torch.softmax(a.detach() / tau, dim=-1)
        active += int((w != 0).sum())
        total += w.numel()
    return active / total


def run_method(method: str, args) -> dict:
    # Each method's DARTS-space code, as docs/leakage.md reports it (on S3 the preset table would otherwise pick
    # SP-DARTS' S1-S4 code).
    fields, options = get_preset(method).settings("darts")
    cfg = search_config(dict(method=method, space=args.space, dataset="fashion-mnist", data_dir=args.data_dir,
                             epochs=args.epochs, batch_size=args.batch, init_channels=args.channels,
                             layers=args.layers, image_size=args.image_size, limit_images=args.limit_images,
                             seed=args.seed, leakage_every=1, method_options=options,
                             # docs/leakage.md was measured on the NCHW path (the original code's float order),
                             # before channels_last and its companions became the CPU default: pinned to reproduce it.
                             **REFERENCE_ORDER), preset_base=fields)
    run_dir = Path(args.runs) / method
    if (run_dir / "checkpoint.pt").exists():
        search = Search.resume(run_dir, progress=False)
    else:
        search = Search(cfg, run_dir, progress=False)
    start = time.perf_counter()
    search.run()
    records = search.run_dir.read_metrics()
    weights = derive_weights(search.recipe, search.arch.as_dict(), search.epoch)
    final = leakage_metrics(search, weights, search.genotype, calibration_batches=8,
                            eval_batches=len(search.val_set) // args.batch + 1)
    result = {
        "method": method,
        "config": {k: getattr(search.cfg, k) for k in ("space", "epochs", "batch_size", "init_channels", "layers",
                                                       "image_size", "limit_images", "lr", "lr_schedule", "arch_lr",
                                                       "arch_weight_decay", "seed")},
        "per_epoch": [{k: r.get(k) for k in ("epoch", "train_acc", "val_acc", "leaked_normal", "leaked_reduce",
                                             "gap", "val_acc_relaxed", "val_acc_onehot", "skip_normal")}
                      for r in records],
        "final": {**final, "supernet_val_acc": records[-1]["val_acc"]},
        "genotype": search.genotype.to_dict(),
        "wall_seconds": time.perf_counter() - start,
    }
    if method == "sp-darts":
        result["active_weights_at_tau_s"] = active_fraction(search, search.recipe.schedule.sparse_tau)
    print(f"{method}: gap {final['gap']:+.3f} (relaxed {final['val_acc_relaxed']:.3f}, one-hot "
          f"{final['val_acc_onehot']:.3f}), leaked normal {final['leaked_normal']:.3f} reduce "
          f"{final['leaked_reduce']:.3f}, {result['wall_seconds']:.0f}s", flush=True)
    return result


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for (method, r), color in zip(results.items(), ("tab:blue", "tab:orange")):
        epochs = [e["epoch"] for e in r["per_epoch"]]
        series = {k: [e[k] for e in r["per_epoch"]] for k in r["per_epoch"][0]}
        axes[0].plot(epochs, series["leaked_normal"], color=color, marker="o", label=f"{method} normal")
        axes[0].plot(epochs, series["leaked_reduce"], color=color, marker="x", ls="--", label=f"{method} reduce")
        axes[1].plot(epochs, series["gap"], color=color, marker="o", label=method)
        axes[2].plot(epochs, series["val_acc_relaxed"], color=color, marker="o", label=f"{method} relaxed")
        axes[2].plot(epochs, series["val_acc_onehot"], color=color, marker="x", ls="--", label=f"{method} one-hot")
    axes[0].set_title("leaked mass")
    axes[1].set_title("discretization gap (relaxed − one-hot acc)")
    axes[2].set_title("supernet val acc (BN recalibrated)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="s3")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--limit-images", type=int, default=4000)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/leakage-example")
    p.add_argument("--out", default="docs")
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from OUT/leakage.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.plot_only:
        plot(json.loads((out / "leakage.json").read_text()), out / "leakage.png")
        return

    results = {m: run_method(m, args) for m in METHODS}
    out.mkdir(parents=True, exist_ok=True)
    (out / "leakage.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "leakage.png")
    print(f"wrote {out / 'leakage.json'} and {out / 'leakage.png'}")


if __name__ == "__main__":
    main()
