"""DARTS-PT selection (spec D §4.1): on a hand-made supernet whose accuracy is a known function of the mixing
weights the chosen op of every edge and the kept edges of every node are known; on tiny real runs (S2, S3, NB201)
the CLI path works end to end and leaves the run's own files untouched."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from robustdarts.cli import app
from robustdarts.genotype import Genotype, validate
from robustdarts.search.darts_pt import Projection, select
from robustdarts.search.loop import Search
from robustdarts.spaces import get_space


def test_select_keeps_the_op_whose_removal_hurts_most_and_the_edges_that_matter():
    """accuracy(w) = Σ importance·w: removing op o of edge e costs importance[e, o]·w[e, o], so the chosen op is the
    argmax of that product (none excluded), and topology keeps the two edges of largest total contribution."""
    space = get_space("s3")  # none, skip_connect, sep_conv_3x3
    gen = torch.Generator().manual_seed(0)
    importance = {c: torch.rand(space.alpha_shape(c), generator=gen) for c in space.cell_types}
    soft = {c: torch.softmax(torch.randn(space.alpha_shape(c), generator=gen), -1) for c in space.cell_types}
    projection = Projection.empty(space)
    tunes = []

    def current():
        return projection.apply(soft)

    def measure(weights):
        return float(sum((importance[c] * weights[c]).sum() for c in space.cell_types))

    decisions = select(space, projection, current, measure, lambda epochs: tunes.append(epochs), torch.Generator().manual_seed(1),
                       allow_none=False)
    ops = space.ops["normal"][0]
    for d in (d for d in decisions if d["kind"] == "op"):
        c, e = d["cell"], d["edge"]
        contribution = importance[c][e] * soft[c][e]
        best = 1 + int(contribution[1:].argmax())  # never none
        assert d["chosen"] == ops[best]
        assert d["drop"] == pytest.approx(float(contribution[best]), abs=1e-5)
        assert d["without"]["none"] == pytest.approx(d["accuracy"] - float(contribution[0]), abs=1e-5)
    assert sorted(d["edge"] for d in decisions if d["kind"] == "op" and d["cell"] == "normal") == list(range(14))
    for d in (d for d in decisions if d["kind"] == "edge"):
        c, node = d["cell"], d["node"]
        onehot_value = {e: float(importance[c][e][ops.index(next(x["chosen"] for x in decisions if x["kind"] == "op"
                                                                  and x["cell"] == c and x["edge"] == e))])
                        for e in space.node_edges(node)}
        assert sorted(d["kept"]) == sorted(sorted(onehot_value, key=onehot_value.get)[-2:])
    assert len(tunes) == 14 + 3 - 1  # fine-tuning between consecutive decisions
    weights = current()
    for c in space.cell_types:
        kept = (weights[c].sum(-1) > 0).tolist()
        assert sum(kept) == 8  # 2 per node, one op each


@pytest.mark.parametrize("space,tune", [("s2", 1), ("s3", 0), ("nb201", 1)])
def test_derive_darts_pt_on_a_tiny_run(space, tune, tmp_path):
    run = tmp_path / "run"
    Search(tiny_config("darts", space, epochs=1), run, progress=False).run()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = CliRunner().invoke(app, ["derive", str(run), "--policy", "darts-pt", "--json", "--tune-epochs", str(tune),
                                      "--val-images", "16"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    genotype = Genotype.from_dict(out["genotype"])
    validate(genotype, space)
    report = json.loads((run / "darts_pt.json").read_text())
    edges = get_space(space).num_edges
    cells = len(get_space(space).cell_types)
    assert sum(d["kind"] == "op" for d in report["decisions"]) == edges * cells
    assert all(d["drop"] == pytest.approx(d["accuracy"] - d["without"][d["chosen"]]) for d in report["decisions"]
               if d["kind"] == "op")
    assert Genotype.from_dict(report["genotype"]) == genotype and report["val_images"] == 16
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "darts_pt.json"}
    assert after == before  # checkpoint, archive, metrics and genotype of the run untouched


def test_darts_pt_refuses_what_it_cannot_do(tmp_path):
    run = tmp_path / "run"
    Search(tiny_config("darts", "lhd", epochs=1), run, progress=False).run()
    result = CliRunner().invoke(app, ["derive", str(run), "--policy", "darts-pt"])
    assert result.exit_code != 0
    s3 = tmp_path / "s3"
    Search(tiny_config("darts", "s3", epochs=1), s3, progress=False).run()
    result = CliRunner().invoke(app, ["derive", str(s3), "--tune-epochs", "2"])
    assert result.exit_code != 0


def test_darts_pt_refuses_an_lhd_run_before_loading_it(search_runs, monkeypatch):
    """One sentence, read from config.yaml alone: the run is neither loaded nor locked, and nothing in it changes."""
    from robustdarts.errors import RobustDartsError
    from robustdarts.runs import RunDir
    from robustdarts.search.darts_pt import darts_pt
    from robustdarts.search.loop import Search

    def must_not_run(*args, **kwargs):
        pytest.fail("the run was loaded or locked before the refusal")

    monkeypatch.setattr(Search, "resume", must_not_run)
    monkeypatch.setattr(RunDir, "lock", must_not_run)
    run = search_runs["lhd"]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RobustDartsError, match="--policy lhd"):
        darts_pt(run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
