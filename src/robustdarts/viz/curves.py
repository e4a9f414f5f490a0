"""Pictures of search runs: metric curves from metrics.jsonl and α trajectories from archive.pt, one run or several
overlaid (one line style per run).

The α trajectories show, per edge, the weight of each op over the epochs: the picture every DARTS paper draws to
show collapse. The weights are the ones the run's own recipe derives its genotype from (``derive_weights``:
softmax at τ = 1 for DARTS, the small τ of SP-DARTS, GAEA's α itself, ...), so the picture shows what the method
decides on, not a softmax it never uses. LHD cells add their sum and concat output weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import RobustDartsError
from ..runs import RunDir
from .cells import op_color, state_name
from .plain import plain_text

PANELS = [
    ("loss", ("train_loss", "val_loss")),
    ("accuracy", ("train_acc", "val_acc")),
    ("dominant eigenvalue of ∇²_α L_val", ("eigenvalue",)),
    ("skip connections in the normal cell", ("skip_normal",)),
    ("mean edge entropy", ("entropy_normal", "entropy_reduce")),
    ("leaked mixing mass", ("leaked_normal", "leaked_reduce")),
    ("discretization gap (val acc)", ("gap",)),
]
LINE_STYLES = ["-", "--", ":", "-."]
KEY_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]


def _names(run_dirs) -> list[str]:
    """A short, distinct name per run: its directory name, or its path where two names coincide."""
    names = [Path(p).name or str(p) for p in run_dirs]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, run_dirs)]


def _style(i: int) -> str:
    return LINE_STYLES[i % len(LINE_STYLES)]


@plain_text  # run names are directory names: '$' in one is text, not mathtext
def render_curves(run_dirs):
    """(figure, {panel title: axes}) of the metric panels that any run has, every run overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {}
    for name, path in zip(_names(run_dirs), run_dirs):
        records[name] = RunDir(path).read_metrics()
        if not records[name]:
            raise RobustDartsError(f"{path} has no metrics.jsonl records yet; run a search there first.")
    panels = [(t, keys) for t, keys in PANELS if any(k in r for rs in records.values() for r in rs for k in keys)]
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    axes = {}
    for ax, (title, keys) in zip(grid.flat, panels):
        for i, (name, rs) in enumerate(records.items()):
            for j, k in enumerate(keys):
                pts = [(r["epoch"], r[k]) for r in rs if r.get(k) is not None]
                if pts:
                    label = k if len(records) == 1 else f"{name}: {k}"
                    ax.plot(*zip(*pts), _style(i), marker="o", ms=3, color=KEY_COLORS[j % 4], label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
        axes[title] = ax
    for ax in list(grid.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig, axes


@dataclass
class Trajectory:
    """One run's derivation weights over its archive: ``weights[cell]`` is (epochs, edges, ops), ``outputs`` the
    LHD sum / concat weights per cell, (epochs, nodes); x = epochs trained (0 = the initial α)."""

    name: str
    space: object
    epochs: list
    weights: dict
    outputs: dict


def alpha_trajectory(run_dir, name: str | None = None) -> Trajectory:
    """The derivation weights of every archived epoch of a search run, by the run's own recipe."""
    import torch

    from ..config import SearchConfig
    from ..methods import make_recipe
    from ..methods.recipe import derive_weights
    from ..spaces import get_space

    run = RunDir(run_dir)
    cfg = run.load_config(SearchConfig)
    if not run.archive_path.exists():
        raise RobustDartsError(f"{run_dir} has no archive.pt (α per epoch); plot a search run directory.")
    archive, _ = run.load_archive(cfg.space)
    space = get_space(cfg.space)
    recipe = make_recipe(cfg, space)
    epochs = sorted(archive)
    per_epoch = [derive_weights(recipe, archive[e], e) for e in epochs]
    weights = {c: torch.stack([w[c].float() for w in per_epoch]) for c in space.cell_types}
    outputs = {}
    if space.kind == "lhd":
        outputs = {f"{c} {part}": torch.stack([w[f"{c}_{part}"].float() for w in per_epoch])
                   for c in space.cell_types for part in ("sum", "cat")}
    return Trajectory(name or Path(run_dir).name, space, [e + 1 for e in epochs], weights, outputs)


@plain_text
def render_alpha(run_dirs):
    """(figure, {(cell, edge index) or LHD output key: axes}, trajectories): per edge one panel with one line per
    op (coloured as in the cell drawings) and per run (its line style); panels in a grid of node (row) × source
    (column), one block per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    trajectories = [alpha_trajectory(p, n) for p, n in zip(run_dirs, _names(run_dirs))]
    spaces = sorted({t.space.name for t in trajectories})
    if len(spaces) > 1:
        raise RobustDartsError(f"the runs search different spaces ({', '.join(spaces)}); overlay α of runs on one "
                               f"space, or plot them one by one.")
    space = trajectories[0].space
    cols = space.num_inputs + space.steps - 1
    out_rows = 1 if space.kind == "lhd" else 0
    rows_per_cell = space.steps + out_rows
    rows = rows_per_cell * len(space.cell_types)
    fig, grid = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.55 * rows + 0.9), squeeze=False, sharex=True)
    for ax in grid.flat:
        ax.axis("off")
    axes, ops_seen = {}, {}
    for b, cell in enumerate(space.cell_types):
        for k, (node, source) in enumerate(space.edges):
            ax = grid[b * rows_per_cell + node][source]
            ax.axis("on")
            ops = space.ops[cell][k]
            for i, t in enumerate(trajectories):
                for j, op in enumerate(ops):
                    ax.plot(t.epochs, t.weights[cell][:, k, j].tolist(), _style(i), color=op_color(op), lw=1.2)
                    ops_seen.setdefault(op, None)
            target = state_name(space.kind, space.num_inputs + node)
            ax.set_title(f"{cell}: {state_name(space.kind, source)} → {target}", fontsize=7, pad=2)
            ax.tick_params(labelsize=6)
            ax.set_ylim(-0.03, 1.03)
            axes[(cell, k)] = ax
        if out_rows:
            for j, part in enumerate(("sum", "cat")):
                key = f"{cell} {part}"
                ax = grid[b * rows_per_cell + space.steps][j]
                ax.axis("on")
                for i, t in enumerate(trajectories):
                    for node in range(space.steps):
                        ax.plot(t.epochs, t.outputs[key][:, node].tolist(), _style(i), lw=1.2,
                                color=plt.get_cmap("tab10")(node), label=f"node {node}" if i == 0 else None)
                ax.set_title(f"{cell}: {'sum output' if part == 'sum' else 'concat gates'}", fontsize=7, pad=2)
                ax.tick_params(labelsize=6)
                ax.legend(fontsize=5, ncol=2)
                axes[key] = ax
    for ax in grid[-1]:
        ax.set_xlabel("epochs trained", fontsize=6)
    handles = [Line2D([], [], color=op_color(op), lw=2, label=op) for op in ops_seen]
    if len(trajectories) > 1:
        handles += [Line2D([], [], color="black", ls=_style(i), label=t.name) for i, t in enumerate(trajectories)]
    height = fig.get_figheight()
    fig.suptitle(f"derivation weights per edge over the search ({space.name})", fontsize=9, y=1 - 0.08 / height,
                 va="top")
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / height), ncol=min(len(handles), 6),
               fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
    return fig, axes, trajectories


@plain_text  # the figures are saved (their tick labels made) under it too
def plot_runs(run_dirs, out: str | Path | None = None, alpha: bool = True) -> list[Path]:
    """Curves (and α trajectories) of one run or several overlaid; returns the files written. Default files: one
    run -> RUN/curves.png and RUN/alpha.png; several -> curves.png and alpha.png here; ``out`` names the curves
    file and the α picture goes beside it as <stem>-alpha<suffix>."""
    import matplotlib.pyplot as plt

    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise RobustDartsError("plot needs at least one run directory.")
    if out is not None:
        curves_path = Path(out)
        alpha_path = curves_path.with_name(f"{curves_path.stem}-alpha{curves_path.suffix}")
    else:
        base = run_dirs[0] if len(run_dirs) == 1 else Path(".")
        curves_path, alpha_path = base / "curves.png", base / "alpha.png"
    from ..atomic import atomic_write
    from ..paths import PLOT_SUFFIXES, check_output_file

    draw_alpha = alpha and all(RunDir(p).archive_path.exists() for p in run_dirs)
    for path in [curves_path] + ([alpha_path] if draw_alpha else []):  # before any drawing, not after
        check_output_file(path, "--out" if out is not None else "plot file", PLOT_SUFFIXES)
    # Every figure is drawn before any file is written: a run that cannot be drawn (runs on different spaces, a
    # method not installed here) refuses the plot and leaves no file of it behind.
    figures = []
    try:
        figures.append((curves_path, render_curves(run_dirs)[0]))
        if draw_alpha:
            figures.append((alpha_path, render_alpha(run_dirs)[0]))
        for path, fig in figures:
            # Atomic: a plot interrupted mid-write (or refreshed while a viewer reads it) leaves the old file whole.
            atomic_write(path, lambda f: fig.savefig(f, dpi=110, format=path.suffix[1:].lower()))
    finally:
        for _, fig in figures:
            plt.close(fig)
    return [path for path, _ in figures]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """The curves picture of one run (``plot_runs`` also draws its α trajectories)."""
    return plot_runs([run_dir], out, alpha=False)[0]
