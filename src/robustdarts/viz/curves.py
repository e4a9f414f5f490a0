"""Curves of a search run from its metrics.jsonl: accuracy, eigenvalue, skip count, entropy, leakage."""

from __future__ import annotations

from pathlib import Path

from ..errors import RobustDartsError
from ..runs import RunDir

PANELS = [
    ("accuracy", ("train_acc", "val_acc")),
    ("dominant eigenvalue of ∇²_α L_val", ("eigenvalue",)),
    ("skip connections in the normal cell", ("skip_normal",)),
    ("mean edge entropy", ("entropy_normal", "entropy_reduce")),
    ("leaked mixing mass", ("leaked_normal", "leaked_reduce")),
    ("discretization gap (val acc)", ("gap",)),
]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    records = run.read_metrics()
    if not records:
        raise RobustDartsError(f"{run_dir} has no metrics.jsonl records yet; run a search there first.")
    panels = [(t, keys) for t, keys in PANELS if any(k in r for r in records for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for k in keys:
            pts = [(r["epoch"], r[k]) for r in records if k in r and r[k] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out) if out else run.path / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
