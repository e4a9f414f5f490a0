"""Skip-connection collapse and the dominant eigenvalue: DARTS versus R-DARTS(L2) and Λ-DARTS (CPU-sized).

Three methods per seed on the same data (Fashion-MNIST), space (RobustDARTS S3: none / skip_connect /
sep_conv_3x3 on every edge by default), sizes and seed. Every run measures, every ``--hessian-every`` epochs and
at the last, the dominant eigenvalue of the Hessian of the validation loss w.r.t. α (``analysis.hessian``, exact,
as RobustDARTS), and logs how many of the normal cell's 8 kept ops are skip connections. RobustDARTS' observation
is that under plain DARTS the eigenvalue rises and the normal cell fills with skips, and that a larger L2
(R-DARTS(L2)) keeps both down; Λ-DARTS claims the same through per-cell gradient alignment.

The supernet has the standard 8 cells (skip connections pay off with depth; at 5 cells the normal cell lost skips
as the convolutions trained) at C = 4 on 16x16 images, batch 8 (160 arch steps per epoch: α needs thousands of
steps to move, and at these sizes a step costs mostly per-op overhead) and α's Adam LR 3e-3 (``--arch-lr``; at
DARTS' 3e-4 these noisy batch-8 steps left α within 0.2 of its start). To fit a CPU budget all three use the
first-order arch step (the R-DARTS presets default to second order; the regularizer under test is the only
difference between the runs). Λ-DARTS keeps its own knobs (corr, λ = 0.125, ε₀ = 1e-4; ``--lambda-option``
changes them). R-DARTS(L2) is what RobustDARTS defines it to be: DARTS searched over a weight-decay grid
(``--l2-grid``, default 9e-4, 27e-4, 81e-4; DARTS' own run is the 3e-4 point), returning per seed the search whose
architecture validates best. Every searched genotype is trained from scratch (``--retrain-epochs``, DARTS'
evaluation recipe at small sizes) and R-DARTS(L2) selects by the held-out accuracy of those networks (``--select
oneshot``: by the supernet's final validation accuracy, the one-shot error RobustDARTS logs). The test accuracy of
every retrained genotype is reported, never selected on. Every grid run stays in the JSON.

    python examples/collapse.py                # 5 searches + 5 retrainings x 3 seeds: about 3.5 h on 2 CPU cores
    python examples/collapse.py --seeds 2      # the seed that collapses under DARTS, all methods: about 70 min
    python examples/collapse.py --methods darts --seeds 2 --retrain-epochs 0   # its DARTS search alone: 20 min
    python examples/collapse.py --epochs 2 --limit-images 512 --seeds 0 --retrain-epochs 1 --retrain-images 600 \
        --retrain-valid 200 --runs /tmp/smoke --out /tmp/smoke                  # smoke

Run directories go to ``--runs``/seed<N>/<method>[-wd<value>][-<option>=<value>] and are resumed (or reused when
finished) by a second call.
Writes ``collapse.json`` and ``collapse.png`` to ``--out`` (default docs/); docs/collapse.md discusses them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import mean

import torch

from robustdarts.analysis.hessian import arch_hessian
from robustdarts.config import SearchConfig, TrainConfig, build, parse_value
from robustdarts.data.stream import BatchStream
from robustdarts.genotype import Genotype
from robustdarts.methods import search_config
from robustdarts.methods.recipe import derive_weights
from robustdarts.preserve import preserved
from robustdarts.runs import atomic_write_text
from robustdarts.search.loop import Search
from robustdarts.train import Train

METHODS = ("darts", "rdarts-l2", "lambda-darts")


def run_dir_name(method: str, weight_decay: float | None, options: dict) -> str:
    """One directory per distinct search: R-DARTS(L2) per grid value, Λ-DARTS per option set."""
    name = method if weight_decay is None else f"{method}-wd{weight_decay:g}"
    return name + "".join(f"-{k}={v:g}" if isinstance(v, float) else f"-{k}={v}" for k, v in sorted(options.items()))


def run_method(method: str, seed: int, weight_decay: float | None, args) -> dict:
    torch.set_num_threads(args.threads)
    options = dict(args.lambda_options) if method == "lambda-darts" else {}
    cfg = search_config(dict(method=method, space=args.space, dataset="fashion-mnist", data_dir=args.data_dir,
                             epochs=args.epochs, batch_size=args.batch, init_channels=args.channels,
                             layers=args.layers, image_size=args.image_size, limit_images=args.limit_images,
                             seed=seed, hessian_every=args.hessian_every, leakage_every=0,
                             arch_order=args.arch_order, arch_lr=args.arch_lr, method_options=options),
                        preset_base=None if weight_decay is None else {"weight_decay": weight_decay})
    run_dir = Path(args.runs) / f"seed{seed}" / run_dir_name(method, weight_decay, options)
    # A finished or interrupted run is resumed (a finished one returns at once), so re-running the example only
    # computes what is missing.
    search = Search.resume(run_dir, progress=False) if (run_dir / "checkpoint.pt").exists() else \
        Search(cfg, run_dir, progress=False)
    if search.cfg != cfg:  # e.g. another --batch into the same --runs: never mix results
        raise SystemExit(f"{run_dir} holds a run with other settings than these; pass another --runs or remove it.")
    search.run()
    records = search.run_dir.read_metrics()
    weights = derive_weights(search.recipe, search.arch.as_dict(), search.epoch)
    return {
        "method": method,
        "seed": seed,
        "weight_decay": cfg.weight_decay,
        "options": options,
        "epochs": [r["epoch"] for r in records],
        "eigenvalue": {r["epoch"]: r["eigenvalue"] for r in records if "eigenvalue" in r},
        "skip_normal": [r["skip_normal"] for r in records],
        "val_acc": [r["val_acc"] for r in records],
        "train_acc": [r["train_acc"] for r in records],
        "alignment_normal": [r.get("alignment_normal") for r in records],
        # Mean softmax mass of each op over the normal cell's edges (over the edges that offer it): the genotype
        # ranks skip against the convolutions by these, with none excluded.
        "op_mass_normal": op_mass(weights["normal"], search.space.ops["normal"]),
        # Norm of every searched op's weights: with BN (no affine) after each conv, weight decay shrinks these
        # without changing what the op computes, and raises the op's effective step size (∝ 1/‖w‖²).
        "op_weight_norm": float(torch.sqrt(sum(p.detach().pow(2).sum() for n, p in search.supernet.named_parameters()
                                               if ".ops." in n))),
        "eigenvalue_settled": settled_eigenvalue(search, args.settled_batches),
        "genotype": search.genotype.to_dict(),
        "seconds": records[-1]["wall_seconds"],
        "run_dir": str(run_dir),
    }


def retrain(run_dir: str, seed: int, args) -> dict:
    """Train the search's genotype from scratch: DARTS' evaluation recipe (auxiliary head, cutout, drop path,
    cosine SGD) at the example's sizes, on ``--retrain-images`` Fashion-MNIST training images of which
    ``--retrain-valid`` are held out. The held-out accuracy is what R-DARTS(L2) selects by; the test accuracy (all
    10 000 test images) is only reported. Same seed for every method of a seed. Resumed or reused like the search."""
    torch.set_num_threads(args.threads)
    cfg = build(TrainConfig, dict(genotype=str(run_dir), dataset="fashion-mnist", data_dir=args.data_dir, seed=seed,
                                  epochs=args.retrain_epochs, batch_size=64, init_channels=args.retrain_channels,
                                  layers=args.layers, image_size=args.image_size, limit_images=args.retrain_images,
                                  valid_images=args.retrain_valid))
    out = Path(run_dir) / "retrain"
    train = Train.resume(out, progress=False) if (out / "checkpoint.pt").exists() else \
        Train(cfg, Genotype.load(Path(run_dir) / "genotype.json"), out, progress=False)
    if train.cfg != cfg:
        raise SystemExit(f"{out} holds a training run with other settings than these; pass another --runs or "
                         f"remove it.")
    summary = train.run()
    return {"valid_acc": summary["final_valid_acc"], "test_acc": summary["final_test_acc"],
            "params": summary["params"], "epochs": summary["epochs"], "seconds": summary["wall_seconds"]}


def op_mass(weights: torch.Tensor, ops: list[list[str]]) -> dict[str, float]:
    mass: dict[str, list[float]] = {}
    for edge, names in enumerate(ops):
        for j, name in enumerate(names):
            mass.setdefault(name, []).append(float(weights[edge, j]))
    return {name: mean(values) for name, values in mass.items()}


def settled_eigenvalue(search: Search, batches: int) -> float:
    """λ_max at the end of the search over ``batches`` validation batches (the same batches for every method of a
    seed). The run's per-epoch measurement uses one batch, as RobustDARTS does; at batch 8 that is a noisy estimate,
    and this is the end value to compare methods by. Cached in the run directory."""
    path = search.run_dir.path / f"eigenvalue-{batches}batches.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("epoch") == search.epoch:
        return cached["eigenvalue"]
    cfg = search.cfg
    stream = BatchStream(search.val_set, cfg.batch_size, search.augment, 7919, search.device)
    with preserved(device=search.device):
        value = float(arch_hessian(search.supernet, search.arch, [next(stream) for _ in range(batches)],
                                   bn_mode=cfg.hessian_bn_mode,
                                   arch_weight_decay=cfg.arch_weight_decay)["eigenvalue"])
    atomic_write_text(path, json.dumps({"batches": batches, "epoch": search.epoch, "eigenvalue": value}))
    return value


def select_l2(results: list[dict], by: str = "retrain") -> list[dict]:
    """R-DARTS(L2) as RobustDARTS defines it: per seed, of the searches over the weight-decay grid (DARTS' own
    3e-4 run included where it ran), the one whose architecture validates best. ``by="retrain"``: the held-out
    accuracy of the genotype trained from scratch (``retrain``); ``by="oneshot"``: the supernet's validation
    accuracy at the end of the search (the one-shot error RobustDARTS logs). The selected run is returned as method
    ``rdarts-l2`` with its ``weight_decay``; the others stay in the JSON."""
    score = {"retrain": lambda r: r["retrain"]["valid_acc"], "oneshot": lambda r: r["val_acc"][-1]}[by]
    selected = []
    for seed in sorted({r["seed"] for r in results}):
        grid = [r for r in results if r["seed"] == seed and r["method"] == "rdarts-l2"]
        if not grid:
            continue
        grid += [r for r in results if r["seed"] == seed and r["method"] == "darts"]
        best = max(grid, key=score)
        selected.append({**best, "method": "rdarts-l2", "selected_by": by, "grid": {f"{r['weight_decay']:g}": {
            "val_acc": r["val_acc"][-1], "skip_normal": r["skip_normal"][-1],
            "eigenvalue": r["eigenvalue"][max(r["eigenvalue"])],
            "eigenvalue_settled": r["eigenvalue_settled"], **({"retrain": r["retrain"]} if "retrain" in r else {})}
            for r in grid}})
    return selected


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE read as ``--set`` reads it (``lambda=0.25`` and ``epsilon_0=1e-3`` are numbers)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE; write e.g. lambda=0.25")
    return key, parse_value(value)


def _grid(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of weight decays; "
                                         "write e.g. 9e-4,27e-4,81e-4") from None


def plot(results: list[dict], path: Path, title: str, every: list[dict] | None = None) -> None:
    """Thin lines: one per seed; thick lines: the mean over seeds of each method. With retrained runs in ``every``
    (all searches, R-DARTS(L2)'s grid included), a fourth panel: skips in the normal cell against the genotype's
    from-scratch test accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    retrained = [r for r in every or [] if "retrain" in r]
    fig, axes = plt.subplots(1, 4 if retrained else 3, figsize=(17.5 if retrained else 13, 3.8))
    methods = sorted(dict.fromkeys(r["method"] for r in results),
                     key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))  # fixed colours
    for i, method in enumerate(methods):
        color = f"C{i}"
        runs = [r for r in results if r["method"] == method]
        for r in runs:
            ev = sorted((int(e), v) for e, v in r["eigenvalue"].items())
            axes[0].plot([e for e, _ in ev], [v for _, v in ev], color=color, alpha=0.3, lw=0.8)
            axes[1].plot(r["epochs"], r["skip_normal"], color=color, alpha=0.3, lw=0.8)
            axes[2].plot(r["epochs"], [100 * a for a in r["val_acc"]], color=color, alpha=0.3, lw=0.8)
        epochs = sorted(set.intersection(*(set(int(e) for e in r["eigenvalue"]) for r in runs)))
        axes[0].plot(epochs, [mean(r["eigenvalue"][e] for r in runs) for e in epochs], color=color, marker="o",
                     lw=2, label=f"{method}{' (best of its grid)' if method == 'rdarts-l2' else ''} "
                                f"({len(runs)} seeds)")
        # The end value over more batches: a star just after the last epoch.
        axes[0].plot([max(r["epochs"][-1] for r in runs) + 0.7], [mean(r["eigenvalue_settled"] for r in runs)],
                     color=color, marker="*", ms=12)
        n = min(len(r["epochs"]) for r in runs)
        axes[1].plot(range(n), [mean(r["skip_normal"][e] for r in runs) for e in range(n)], color=color, lw=2)
        axes[2].plot(range(n), [100 * mean(r["val_acc"][e] for r in runs) for e in range(n)], color=color, lw=2)
    axes[0].set(title="dominant eigenvalue of ∇²α L_val\n(dots: 1 val batch; star: end value over more batches)",
                xlabel="epoch")
    axes[1].set(title="skip connections in the normal cell (of 8)", xlabel="epoch", ylim=(-0.3, 8.3))
    axes[2].set(title="supernet validation accuracy (%)", xlabel="epoch")
    if retrained:
        names = {"darts": "DARTS", "rdarts-l2": "DARTS, larger L2 (R-DARTS(L2)'s grid)", "lambda-darts": "Λ-DARTS"}
        for i, method in enumerate(METHODS):
            runs = [r for r in retrained if r["method"] == method]
            if runs:
                axes[3].scatter([r["skip_normal"][-1] for r in runs], [100 * r["retrain"]["test_acc"] for r in runs],
                                color=f"C{i}", marker="os^"[i], label=names[method])
        axes[3].set(title="genotype trained from scratch", xlabel="skip connections in the normal cell",
                    ylabel="test accuracy (%)", xlim=(-0.3, 8.3))
        axes[3].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="s3")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8,
                   help="8: 160 arch steps per epoch; α needs thousands of steps to move (32 gave 1200 in all)")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--limit-images", type=int, default=2560)
    p.add_argument("--hessian-every", type=int, default=5)
    p.add_argument("--settled-batches", type=int, default=16,
                   help="validation batches of the end eigenvalue each run reports besides its per-epoch one-batch "
                        "measurements")
    p.add_argument("--seeds", default="2,3,4", help="comma-separated; every method runs with every seed")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per search (1 is fastest here)")
    p.add_argument("--arch-lr", type=float, default=3e-3,
                   help="Adam LR of α: 10x DARTS' 3e-4 so that α drifts as far in 4800 noisy batch-8 steps as in "
                        "DARTS' ~19 500 batch-64 steps (docs/collapse.md); 3e-4 leaves α within 0.2 of its start")
    p.add_argument("--arch-order", default="first", choices=("first", "second"),
                   help="arch gradient of every method (first: the regularizer is the only difference)")
    p.add_argument("--l2-grid", type=_grid, default="9e-4,27e-4,81e-4",
                   help="R-DARTS(L2)'s weight decays, comma-separated; the best by final validation accuracy, "
                        "DARTS' 3e-4 run included, is its result (RobustDARTS' grid is 3e-4·3^k)")
    p.add_argument("--lambda-option", dest="lambda_options", type=_option, action="append", default=[],
                   metavar="KEY=VALUE", help="a Λ-DARTS option, repeatable (e.g. reg=signcorr, lambda=0.25, "
                                             "epsilon_0=1e-3: the values of its shipped S4/SVHN script)")
    p.add_argument("--retrain-epochs", type=int, default=15,
                   help="train every searched genotype from scratch for this many epochs (0: no retraining; "
                        "R-DARTS(L2) then selects by the one-shot validation accuracy)")
    p.add_argument("--retrain-images", type=int, default=10000, help="training images of the from-scratch runs")
    p.add_argument("--retrain-valid", type=int, default=2000,
                   help="of those, held out: R-DARTS(L2) selects by this accuracy, never by the test accuracy")
    p.add_argument("--retrain-channels", type=int, default=8)
    p.add_argument("--select", choices=("retrain", "oneshot"), default=None,
                   help="R-DARTS(L2)'s selection: the retrained genotype's held-out accuracy (the default when "
                        "--retrain-epochs > 0) or the supernet's final validation accuracy")
    p.add_argument("--jobs", type=int, default=2, help="searches run in parallel, one process each")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", default="runs/collapse")
    p.add_argument("--out", default="docs")
    args = p.parse_args()
    select = args.select or ("retrain" if args.retrain_epochs > 0 else "oneshot")
    if select == "retrain" and args.retrain_epochs <= 0:
        p.error("--select retrain needs --retrain-epochs > 0")
    jobs = [(m, int(seed), wd) for seed in args.seeds.split(",") for m in args.methods.split(",")
            for wd in (args.l2_grid if m == "rdarts-l2" else [None])]
    # Longest first (Λ-DARTS runs three forward passes per arch step), so the last job to start is a short one.
    jobs.sort(key=lambda job: job[0] != "lambda-darts")
    # One search per process (spawned, one thread each): the searches are independent and a 2-core machine runs
    # two at once. Results come back in the order of the jobs.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(run_method, *zip(*jobs), [args] * len(jobs)))
        if args.retrain_epochs > 0:
            retrained = pool.map(retrain, [r["run_dir"] for r in results], [r["seed"] for r in results],
                                 [args] * len(results))
            for r, scratch in zip(results, retrained):
                r["retrain"] = scratch
    results.sort(key=lambda r: (r["seed"], METHODS.index(r["method"]) if r["method"] in METHODS else len(METHODS),
                                r["weight_decay"]))
    for r in results:
        evs = [round(v, 3) for _, v in sorted((int(e), v) for e, v in r["eigenvalue"].items())]
        scratch = (f"  retrained: valid {100 * r['retrain']['valid_acc']:.1f}% "
                   f"test {100 * r['retrain']['test_acc']:.1f}%" if "retrain" in r else "")
        print(f"{r['method']:14s} seed {r['seed']} wd {r['weight_decay']:g}  skip_normal {r['skip_normal']}  "
              f"eigenvalues {evs}  end over more batches {r['eigenvalue_settled']:.3f}  "
              f"val_acc {100 * r['val_acc'][-1]:.1f}%  {r['seconds']:.0f}s{scratch}", flush=True)
    # The comparison: DARTS, R-DARTS(L2) selected from its grid, Λ-DARTS.
    compared = [r for r in results if r["method"] != "rdarts-l2"] + select_l2(results, select)
    compared.sort(key=lambda r: (r["seed"], METHODS.index(r["method"]) if r["method"] in METHODS else len(METHODS)))
    for r in compared:
        if r["method"] == "rdarts-l2":
            print(f"R-DARTS(L2) seed {r['seed']} selects wd {r['weight_decay']:g} by {select}: "
                  f"{r['skip_normal'][-1]} skips", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = {k: getattr(args, k) for k in ("space", "epochs", "batch", "channels", "layers", "image_size",
                                           "limit_images", "hessian_every", "seeds", "l2_grid", "arch_lr",
                                           "retrain_epochs", "retrain_images", "retrain_valid", "retrain_channels")}
    setup.update(dataset="fashion-mnist", arch_order=args.arch_order, select=select,
                 lambda_options=dict(args.lambda_options), torch=torch.__version__)
    atomic_write_text(out / "collapse.json", json.dumps({"setup": setup, "compared": compared, "results": results},
                                                        indent=1))
    title = (f"{args.space}, Fashion-MNIST {args.limit_images} images at {args.image_size}px, C={args.channels}, "
             f"{args.layers} cells, {args.epochs} epochs, batch {args.batch}, arch LR {args.arch_lr:g}, "
             f"seeds {args.seeds}")
    if args.retrain_epochs > 0:
        title += (f"\nretrained from scratch: {args.retrain_epochs} epochs, C={args.retrain_channels}, "
                  f"{args.retrain_images - args.retrain_valid} training + {args.retrain_valid} held-out images; "
                  f"R-DARTS(L2) selected by {select}")
    plot(compared, out / "collapse.png", title, results)
    print(f"wrote {out / 'collapse.json'} and {out / 'collapse.png'}")


if __name__ == "__main__":
    main()
