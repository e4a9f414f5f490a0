"""Draw a genotype's cells, left to right, with each op's name on its own edge.

Inputs stand at the left, intermediate nodes one column each in topological order, outputs at the right (LHD cells:
their sum and concat outputs). Edges are quadratic curves bent just enough to clear the nodes they do not join (and
apart from parallel edges); each op label sits on its edge, at the first point along it where it overlaps no other
label and no node, and edges are coloured by op. The layout is computed here (``cell_layout``), not by graphviz, so
that the picture's geometry (labels on their edges, nothing overlapping) is known and tested rather than hoped for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write
from ..errors import RobustDartsError
from .plain import plain_text

# One colour per op across every space (ColorBrewer Set2/Dark2-like): the same op looks the same in every cell.
OP_COLORS = {
    "none": "#bbbbbb", "noise": "#e7298a", "skip_connect": "#4c72b0", "max_pool_3x3": "#55a868",
    "avg_pool_3x3": "#8c9e2b", "sep_conv_3x3": "#dd8452", "sep_conv_5x5": "#c44e52", "sep_conv_7x7": "#8b3a3a",
    "dil_conv_3x3": "#8172b3", "dil_conv_5x5": "#5a3d99", "conv_7x1_1x7": "#937860", "nor_conv_1x1": "#da8bc3",
    "nor_conv_3x3": "#c44e52",
}
FONT_SIZE = 7.0  # points, op labels
NODE_FONT_SIZE = 8.0
INCH_PER_UNIT = 1.1  # figure inches per layout unit, in x and in y
X_STEP = 1.7  # layout units between columns
LABEL_PAD = 2.0  # points of white around a label's text
NODE_PAD = 4.0  # points between a node's name and its border


def op_color(op: str) -> str:
    return OP_COLORS.get(op, "#666666")


@dataclass
class Edge:
    src: str
    dst: str
    op: str | None  # None: an output connection (drawn grey, unlabeled)
    curve: tuple = ()  # quadratic Bézier control points (p0, c, p1) in layout units
    label_t: float = 0.5  # where along the curve the label sits
    label_xy: tuple = (0.0, 0.0)
    label_size: tuple = (0.0, 0.0)  # width, height in layout units (text + padding)


@dataclass
class CellLayout:
    cell: str
    nodes: dict  # name -> (x, y)
    roles: dict  # name -> "input" | "node" | "output"
    sizes: dict  # name -> (width, height) of the node box in layout units
    edges: list = field(default_factory=list)  # labeled op edges, then output connections

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = [x for x, _ in self.nodes.values()]
        ys = [y for _, y in self.nodes.values()]
        return min(xs) - 0.6, max(xs) + 0.6, min(ys) - 0.5, max(ys) + 0.5


CELL_INPUTS = {"darts": ("c[k-2]", "c[k-1]"), "lhd": ("sum[k-1]", "cat[k-1]"), "nb201": ("in",)}


def state_name(kind: str, source: int) -> str:
    """The drawn name of source index ``source`` (genotype/space numbering): a cell input, else its node number
    (nb201 numbers nodes from 1, as NAS-Bench-201 does, so that 0 is the input)."""
    inputs = CELL_INPUTS[kind]
    if source < len(inputs):
        return inputs[source]
    return str(source) if kind == "nb201" else str(source - len(inputs))


def _cell_graph(genotype, cell: str):
    """(inputs, intermediate nodes, op edges (src, dst, op), outputs {name: [sources]}), names as drawn."""
    kind = genotype.kind
    genes = genotype.genes(cell)
    inputs = list(CELL_INPUTS[kind])
    name = lambda i: state_name(kind, i)  # noqa: E731
    if kind == "darts":
        edges = [(name(g[1]), str(genotype.gene_node(cell, i)), g[0]) for i, g in enumerate(genes)]
        concat = getattr(genotype, f"{cell}_concat")
        nodes = [str(i) for i in range(genotype.cell_num_nodes(cell))]
        return inputs, nodes, edges, {"c[k]": [name(c) for c in concat]}
    if kind == "lhd":
        edges = [(name(g[1]), str(g[2]), g[0]) for g in genes]
        out = getattr(genotype, f"{cell}_output")
        used = ({int(e[1]) for e in edges} | {int(e[0]) for e in edges if e[0].isdigit()}
                | set(out.sum) | set(out.concat))
        return inputs, [str(i) for i in sorted(used)], edges, {"sum[k]": [str(i) for i in out.sum],
                                                               "cat[k]": [str(i) for i in out.concat]}
    # nb201: node 0 is the cell input, node 3 its output; 'none' edges carry nothing and are not drawn
    edges = [(name(g[1]), str(g[2] + 1), g[0]) for g in genes if g[0] != "none"]
    return inputs, ["1", "2", "3"], edges, {"out": ["3"]}


def _text_size(text: str, size: float, pad: float) -> tuple[float, float]:
    """Width and height (layout units) of ``text`` at ``size`` points with ``pad`` points around it."""
    from matplotlib.textpath import TextPath

    box = TextPath((0, 0), text, size=size).get_extents()
    to_units = 1.0 / 72.0 / INCH_PER_UNIT
    return (box.width + 2 * pad) * to_units, (size * 1.25 + 2 * pad) * to_units


def _bezier(curve, t: float) -> tuple[float, float]:
    (x0, y0), (cx, cy), (x1, y1) = curve
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t ** 2
    return a * x0 + b * cx + c * x1, a * y0 + b * cy + c * y1


def _curve(p0, p1, bend: float):
    """Quadratic curve from p0 to p1 whose middle is ``bend`` units to the left of the straight line."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    # the curve's midpoint is halfway between the chord's midpoint and the control point
    return (p0, ((x0 + x1) / 2 + 2 * bend * nx, (y0 + y1) / 2 + 2 * bend * ny), p1)


def _box_overlap(a, b, margin: float = 0.0) -> float:
    """Overlap area of boxes (cx, cy, w, h), each grown by ``margin``."""
    ox = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2) + 2 * margin
    oy = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2) + 2 * margin
    return max(ox, 0.0) * max(oy, 0.0)


def _inside(point, box, margin: float) -> bool:
    return abs(point[0] - box[0]) < box[2] / 2 + margin and abs(point[1] - box[1]) < box[3] / 2 + margin


_BENDS = (0.0, 0.3, -0.3, 0.55, -0.55, 0.8, -0.8, 1.1, -1.1)
_LABEL_TS = tuple(k / 20 for k in range(3, 18))


@plain_text  # label sizes measured as drawn: plain text (viz.plain)
def cell_layout(genotype, cell: str) -> CellLayout:
    """Positions of nodes, curves of edges and places of labels for one cell (layout units; see module doc)."""
    inputs, inner, op_edges, outputs = _cell_graph(genotype, cell)
    nodes, roles = {}, {}
    spread = 1.0 if len(inputs) > 1 else 0.0
    for i, n in enumerate(inputs):
        nodes[n], roles[n] = (0.0, spread * (1 - 2 * i)), "input"
    for i, n in enumerate(inner):  # a zigzag, so that no three nodes stand on one line
        nodes[n], roles[n] = (X_STEP * (i + 1), 0.6 * (1 if i % 2 == 0 else -1)), "node"
    x_out = X_STEP * (len(inner) + 1)
    for i, n in enumerate(outputs):
        nodes[n], roles[n] = (x_out, 0.0 if len(outputs) == 1 else 0.9 * (1 - 2 * i)), "output"
    sizes = {n: _text_size(n, NODE_FONT_SIZE, NODE_PAD) for n in nodes}
    boxes = {n: (*nodes[n], *sizes[n]) for n in nodes}
    layout = CellLayout(cell, nodes, roles, sizes)

    edges = [Edge(s, d, op) for s, d, op in op_edges] + [Edge(s, o, None) for o, srcs in outputs.items() for s in srcs]
    taken: dict[tuple[str, str], list[float]] = {}
    for e in edges:  # bend each edge the least that clears other nodes and parallel edges
        def cost(bend: float) -> float:
            curve = _curve(nodes[e.src], nodes[e.dst], bend)
            points = [_bezier(curve, k / 40) for k in range(1, 40)]
            hits = sum(_inside(p, boxes[n], 0.12) for n in nodes if n not in (e.src, e.dst) for p in points)
            close = sum(abs(bend - b) < 0.25 for b in taken.get((e.src, e.dst), []))
            return 100 * hits + 100 * close + abs(bend)
        bend = min(_BENDS, key=cost)
        taken.setdefault((e.src, e.dst), []).append(bend)
        e.curve = _curve(nodes[e.src], nodes[e.dst], bend)

    placed: list[tuple] = []
    samples = {id(e): [_bezier(e.curve, k / 60) for k in range(61)] for e in edges}
    for e in edges:  # each label on its edge, where it covers no node and no earlier label, and few other edges
        if e.op is None:
            continue
        w, h = _text_size(e.op, FONT_SIZE, LABEL_PAD)
        e.label_size = (w, h)

        def clash(t: float) -> tuple:
            x, y = _bezier(e.curve, t)
            box = (x, y, w, h)
            overlap = (sum(_box_overlap(box, b, 0.03) for b in placed)
                       + sum(_box_overlap(box, boxes[n], 0.03) for n in nodes))
            crossed = sum(any(_inside(p, box, 0.02) for p in samples[id(o)]) for o in edges if o is not e)
            return overlap > 0, crossed, overlap, abs(t - 0.5)
        t = min(_LABEL_TS, key=clash)
        e.label_t, e.label_xy = t, _bezier(e.curve, t)
        placed.append((*e.label_xy, w, h))
    layout.edges = edges
    return layout


def _trimmed(curve, start_box, end_box, steps: int = 200):
    """The curve's part outside both end boxes, as a list of points (so arrows start and end at node borders)."""
    points = [_bezier(curve, k / steps) for k in range(steps + 1)]
    inside = [_inside(p, start_box, 0.02) or _inside(p, end_box, 0.02) for p in points]
    kept = [p for p, hidden in zip(points, inside) if not hidden]
    return kept if len(kept) >= 2 else points


@plain_text
def render_cells(genotype):
    """(figure, {cell: CellLayout}, {cell: axes}): every cell stacked top to bottom, 1 layout unit = INCH_PER_UNIT
    inches in both directions, so label sizes computed in the layout are the sizes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    layouts = {cell: cell_layout(genotype, cell) for cell in genotype.cells}
    title_in = 0.3
    extents = {c: lay.bounds for c, lay in layouts.items()}
    width = max(x1 - x0 for x0, x1, _, _ in extents.values()) * INCH_PER_UNIT
    heights = {c: (y1 - y0) * INCH_PER_UNIT for c, (_, _, y0, y1) in extents.items()}
    total = sum(heights.values()) + title_in * len(layouts)
    fig = plt.figure(figsize=(width, total))
    axes, top = {}, total
    for cell, lay in layouts.items():
        x0, x1, y0, y1 = extents[cell]
        top -= title_in + heights[cell]
        ax = fig.add_axes([0, top / total, (x1 - x0) * INCH_PER_UNIT / width, heights[cell] / total])
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.axis("off")
        ax.set_title(f"{cell} cell ({genotype.space or genotype.kind})", fontsize=9, pad=2)
        axes[cell] = ax
        boxes = {n: (*lay.nodes[n], *lay.sizes[n]) for n in lay.nodes}
        for i, e in enumerate(lay.edges):
            points = _trimmed(e.curve, boxes[e.src], boxes[e.dst])
            codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
            style = dict(color=op_color(e.op), lw=1.6) if e.op else dict(color="#999999", lw=0.9, linestyle=(0, (3, 2)))
            arrow = FancyArrowPatch(path=MplPath(points, codes), arrowstyle="-|>", mutation_scale=9, zorder=1, **style)
            arrow.set_gid(f"edge:{cell}:{i}")
            ax.add_patch(arrow)
            if e.op:
                label = ax.text(*e.label_xy, e.op, fontsize=FONT_SIZE, ha="center", va="center", zorder=3,
                                color="#222222", bbox=dict(boxstyle=f"square,pad={LABEL_PAD / FONT_SIZE:.3f}",
                                                           facecolor="white", edgecolor=op_color(e.op), lw=0.8))
                label.set_gid(f"label:{cell}:{i}")
        for n, (x, y) in lay.nodes.items():
            color = {"input": "#c6dbef", "node": "#ffffff", "output": "#fdd49e"}[lay.roles[n]]
            text = ax.text(x, y, n, ha="center", va="center", fontsize=NODE_FONT_SIZE, zorder=4,
                           bbox=dict(boxstyle=f"round,pad={NODE_PAD / NODE_FONT_SIZE:.3f}", facecolor=color,
                                     edgecolor="black", lw=0.8))
            text.set_gid(f"node:{cell}:{n}")
    return fig, layouts, axes


@plain_text
def draw_genotype(genotype, path: str | Path) -> Path:
    """Draw every cell of ``genotype`` into one PNG or SVG file, written atomically (an interrupted drawing leaves
    the previous file, never a truncated one)."""
    path = Path(path)
    if path.suffix not in (".png", ".svg"):
        raise RobustDartsError(f"cannot draw to {path.name!r}: the file must end in .png or .svg.")
    import matplotlib.pyplot as plt

    fig, _, _ = render_cells(genotype)
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=150, format=path.suffix[1:]))
    finally:
        plt.close(fig)
    return path
