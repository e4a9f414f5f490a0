"""Pictures checked by their geometry, not their pixels: cell drawings (each op label on its own edge, nothing
overlapping, inputs → nodes → outputs left to right, LHD sum and concat outputs) and α trajectories (one line per
op and run on each edge's panel, holding the run's own derivation weights), for darts, S1-S4, NB201 and LHD runs."""

import math

import pytest
import torch
from typer.testing import CliRunner

from robustdarts.cli import app
from robustdarts.errors import RobustDartsError
from robustdarts.genotype import Genotype
from robustdarts.viz.cells import _bezier, render_cells
from robustdarts.viz.curves import alpha_trajectory, render_alpha

from conftest import LHD_EXAMPLE, SEARCH_RUN_SPACES


def genotypes(search_runs):
    out = {space: Genotype.load(path / "genotype.json") for space, path in search_runs.items()}
    from robustdarts.zoo import get_genotype
    out["darts_v2"] = get_genotype("darts_v2")
    if LHD_EXAMPLE.exists():
        from robustdarts.lhd_pl import genotype_from_pl
        out["lhd-pl"] = genotype_from_pl(LHD_EXAMPLE)
    return out


def overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


def distance_to_curve(point, curve, transform) -> float:
    """Pixels from ``point`` (display coordinates) to the layout curve, sampled finely and mapped to the display."""
    samples = transform.transform([_bezier(curve, k / 400) for k in range(401)])
    return min(math.hypot(x - point[0], y - point[1]) for x, y in samples)


def test_cell_drawings_put_each_label_on_its_edge_and_nothing_overlaps(search_runs):
    import matplotlib.pyplot as plt

    for name, genotype in genotypes(search_runs).items():
        fig, layouts, axes = render_cells(genotype)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        figure_box = fig.bbox
        for cell, layout in layouts.items():
            ax = axes[cell]
            texts = {t.get_gid(): t for t in ax.texts}
            labels = {gid: t for gid, t in texts.items() if gid.startswith(f"label:{cell}:")}
            nodes = {gid.split(":", 2)[2]: t for gid, t in texts.items() if gid.startswith(f"node:{cell}:")}
            # every gene is one labeled edge (nb201 draws no 'none' edges)
            genes = [g for g in genotype.genes(cell) if not (genotype.kind == "nb201" and g[0] == "none")]
            assert sorted(t.get_text() for t in labels.values()) == sorted(g[0] for g in genes), (name, cell)
            boxes = {gid: t.get_bbox_patch().get_window_extent(renderer) for gid, t in labels.items()}
            node_boxes = {n: t.get_bbox_patch().get_window_extent(renderer) for n, t in nodes.items()}
            for gid, text in labels.items():
                edge = layout.edges[int(gid.rsplit(":", 1)[1])]
                assert text.get_text() == edge.op
                extent = text.get_window_extent(renderer)
                centre = ((extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2)
                # the label sits on its own edge: the edge passes within 2 px of the label's centre
                assert distance_to_curve(centre, edge.curve, ax.transData) < 2.0, (name, cell, edge)
                assert all(overlap(boxes[gid], b) == 0 for other, b in boxes.items() if other != gid), (name, gid)
                assert all(overlap(boxes[gid], b) == 0 for b in node_boxes.values()), (name, gid)
                assert figure_box.contains(boxes[gid].x0, boxes[gid].y0) and \
                    figure_box.contains(boxes[gid].x1, boxes[gid].y1), (name, gid)
            # left to right: inputs, then nodes in order, then outputs
            x = {n: layout.nodes[n][0] for n in layout.nodes}
            inputs = [n for n, r in layout.roles.items() if r == "input"]
            inner = sorted((n for n, r in layout.roles.items() if r == "node"), key=int)
            outputs = [n for n, r in layout.roles.items() if r == "output"]
            assert max(x[n] for n in inputs) < min(x[n] for n in inner)
            assert [x[n] for n in inner] == sorted(x[n] for n in inner) and len(set(x[n] for n in inner)) == len(inner)
            assert max(x[n] for n in inner) < min(x[n] for n in outputs)
            wired = {(e.src, e.dst) for e in layout.edges if e.op is None}
            if genotype.kind == "lhd":  # LHD cells end in their sum and concat outputs, wired from those node sets
                out = getattr(genotype, f"{cell}_output")
                assert set(outputs) == {"sum[k]", "cat[k]"}
                assert wired == {(str(i), "sum[k]") for i in out.sum} | {(str(i), "cat[k]") for i in out.concat}
            elif genotype.kind == "darts":
                assert wired == {(str(c - 2) if c >= 2 else inputs[c], "c[k]")
                                 for c in getattr(genotype, f"{cell}_concat")}
        plt.close(fig)


def test_alpha_trajectories_hold_the_derivation_weights_of_each_edge(search_runs):
    import matplotlib.pyplot as plt

    from robustdarts.config import SearchConfig
    from robustdarts.methods import make_recipe
    from robustdarts.methods.recipe import derive_weights
    from robustdarts.runs import RunDir

    for space_name in SEARCH_RUN_SPACES:
        path = search_runs[space_name]
        fig, axes, (trajectory,) = render_alpha([path])
        fig.canvas.draw()
        space = trajectory.space
        archive, _ = RunDir(path).load_archive()
        assert trajectory.epochs == [e + 1 for e in sorted(archive)] == [0, 1, 2]
        recipe = make_recipe(RunDir(path).load_config(SearchConfig))
        last = derive_weights(recipe, archive[max(archive)], max(archive))
        for cell in space.cell_types:
            for k, ops in enumerate(space.ops[cell]):
                lines = axes[(cell, k)].get_lines()
                assert len(lines) == len(ops), (space_name, cell, k)
                for j, line in enumerate(lines):
                    assert list(line.get_xdata()) == trajectory.epochs
                    assert line.get_ydata()[-1] == pytest.approx(float(last[cell][k, j]), abs=1e-6)
        if space.kind == "lhd":
            for cell in space.cell_types:
                for part in ("sum", "cat"):
                    lines = axes[f"{cell} {part}"].get_lines()
                    assert len(lines) == space.steps
                    assert [ln.get_ydata()[-1] for ln in lines] == pytest.approx(last[f"{cell}_{part}"].tolist())
        # panels never overlap one another
        extents = [ax.get_window_extent() for ax in axes.values()]
        assert all(overlap(a, b) < 1.0 for i, a in enumerate(extents) for b in extents[i + 1:]), space_name
        plt.close(fig)


def test_several_runs_overlay_with_one_line_style_each(search_runs, tmp_path):
    import matplotlib.pyplot as plt

    from robustdarts.search.loop import Search

    from conftest import tiny_config

    other = tmp_path / "s3-sp"
    Search(tiny_config("sp-darts", "s3", epochs=2, seed=1), other, progress=False).run()
    fig, axes, trajectories = render_alpha([search_runs["s3"], other])
    lines = axes[("normal", 0)].get_lines()
    assert len(lines) == 2 * 3  # 3 ops on an S3 edge, per run
    assert len({ln.get_linestyle() for ln in lines[:3]} | {ln.get_linestyle() for ln in lines[3:]}) == 2
    assert torch.equal(trajectories[1].weights["normal"], alpha_trajectory(other).weights["normal"])
    plt.close(fig)
    result = CliRunner().invoke(app, ["plot", str(search_runs["s3"]), str(other), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "c-alpha.png").stat().st_size > 1000
    with pytest.raises(RobustDartsError, match="different spaces"):
        render_alpha([search_runs["s3"], search_runs["nb201"]])
