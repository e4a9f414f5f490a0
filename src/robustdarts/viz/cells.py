"""Draw a genotype's cells: graphviz when the ``dot`` binary exists, matplotlib otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import RobustDartsError

_COLORS = {"skip_connect": "#8da0cb", "none": "#dddddd", "max_pool_3x3": "#a6d854", "avg_pool_3x3": "#66c2a5",
           "noise": "#e78ac3"}


def _cell_graph(genotype, cell: str):
    """(nodes, edges, outputs): nodes are labels; edges are (src, dst, op)."""
    kind = genotype.kind
    genes = genotype.genes(cell)
    if kind == "darts":
        inputs = ["c_{k-2}", "c_{k-1}"]
        steps = len(genes) // 2
        edges = [(inputs[g[1]] if g[1] < 2 else str(g[1] - 2), str(i // 2), g[0]) for i, g in enumerate(genes)]
        concat = getattr(genotype, f"{cell}_concat")
        outputs = {"c_{k}": [inputs[c] if c < 2 else str(c - 2) for c in concat]}
        return inputs + [str(i) for i in range(steps)], edges, outputs
    if kind == "lhd":
        inputs = ["sum_{k-1}", "cat_{k-1}"]
        edges = [(inputs[g[1]] if g[1] < 2 else str(g[1] - 2), str(g[2]), g[0]) for g in genes]
        out = getattr(genotype, f"{cell}_output")
        nodes = sorted({e[1] for e in edges} | {str(i) for i in out["sum"]} | {str(i) for i in out["concat"]})
        return inputs + nodes, edges, {"sum_{k}": [str(i) for i in out["sum"]],
                                       "cat_{k}": [str(i) for i in sorted(out["concat"])]}
    edges = [(("in" if g[1] == 0 else str(g[1])), str(g[2] + 1), g[0]) for g in genes if g[0] != "none"]
    return ["in", "1", "2", "3"], edges, {"out": ["3"]}


def _dot(genotype, cells, path: Path) -> None:
    lines = ["digraph G {", "rankdir=LR; node [shape=box, style=filled, fontname=Helvetica];"]
    for cell in cells:
        nodes, edges, outputs = _cell_graph(genotype, cell)
        lines.append(f'subgraph cluster_{cell} {{ label="{cell}";')
        for n in nodes:
            lines.append(f'"{cell}:{n}" [label="{n}"];')
        for s, d, op in edges:
            lines.append(f'"{cell}:{s}" -> "{cell}:{d}" [label="{op}"];')
        for o, srcs in outputs.items():
            lines.append(f'"{cell}:{o}" [label="{o}", fillcolor="#fdd49e"];')
            for s in srcs:
                lines.append(f'"{cell}:{s}" -> "{cell}:{o}" [color=gray];')
        lines.append("}")
    lines.append("}")
    fmt = path.suffix.lstrip(".")
    subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input="\n".join(lines).encode(), check=True)


def _matplotlib(genotype, cells, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cells), figsize=(7 * len(cells), 5))
    axes = [axes] if len(cells) == 1 else list(axes)
    for ax, cell in zip(axes, cells):
        nodes, edges, outputs = _cell_graph(genotype, cell)
        inputs = [n for n in nodes if not n.isdigit()]
        inner = [n for n in nodes if n.isdigit()]
        pos = {n: (0.0, 1.0 - i) for i, n in enumerate(inputs)}
        for i, n in enumerate(inner):
            pos[n] = (1.0 + i, 0.5 - (i % 2) * 1.2)
        for j, o in enumerate(outputs):
            pos[o] = (len(inner) + 1.5, 0.5 - 1.2 * j)
        for s, d, op in edges:
            (x0, y0), (x1, y1) = pos[s], pos[d]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=_COLORS.get(op, "#fc8d62"), lw=1.8,
                                        connectionstyle="arc3,rad=0.15"))
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.08, op, fontsize=7, ha="center")
        for o, srcs in outputs.items():
            for s in srcs:
                (x0, y0), (x1, y1) = pos[s], pos[o]
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="gray", lw=0.8))
        for n, (x, y) in pos.items():
            color = "#fdd49e" if n in outputs else ("#c6dbef" if n in inputs else "#ffffff")
            ax.text(x, y, n, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", facecolor=color, edgecolor="black"))
        ax.set_title(f"{cell} cell")
        ax.set_xlim(-0.6, len(inner) + 2.2)
        ax.set_ylim(-2.0, 1.6)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_genotype(genotype, path: str | Path) -> Path:
    """Draw every cell of ``genotype`` into one PNG or SVG file."""
    path = Path(path)
    if path.suffix not in (".png", ".svg"):
        raise RobustDartsError(f"cannot draw to {path.name!r}: the file must end in .png or .svg.")
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = genotype.cells
    if shutil.which("dot"):
        _dot(genotype, cells, path)
    else:
        _matplotlib(genotype, cells, path)
    return path
