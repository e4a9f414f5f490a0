"""examples/collapse.py runs docs/collapse.md's study through bench: its grid cuts, and the end-of-search
measurements the study reports (λ_max over more batches, op masses), now in robustdarts.bench.cell. The R-DARTS(L2)
selection it used is tested in test_bench.py."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from robustdarts.bench import expand
from robustdarts.bench.cell import op_mass, settled_eigenvalue

_PATH = Path(__file__).resolve().parents[1] / "examples" / "collapse.py"
_spec = importlib.util.spec_from_file_location("collapse_example", _PATH)
collapse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collapse)


def test_the_example_is_the_collapse_cpu_grid_cut_by_seeds_methods_and_selection():
    full = collapse.collapse_grid()
    assert full.name == "collapse-cpu" and len(expand(full)) == 15
    [rule] = full.select
    assert (rule.name, rule.from_, rule.by) == ("rdarts-l2", ("rdarts-l2", "darts"), "valid_acc")
    seed2 = expand(collapse.collapse_grid(seeds="2"))
    assert len(seed2) == 5 and {c.seed for c in seed2} == {2}
    assert [c.cell_id for c in seed2] == [c.cell_id for c in expand(full) if c.seed == 2]  # the same cells
    darts = collapse.collapse_grid(seeds="2", methods="darts")
    assert [m.label for m in darts.methods] == ["darts"] and darts.select == ()
    assert collapse.collapse_grid(select="oneshot").select[0].by == "supernet_val_acc"


def test_end_eigenvalue_is_arch_hessian_over_more_batches_cached_and_leaves_the_rng(tmp_path):
    from robustdarts.analysis.hessian import arch_hessian
    from robustdarts.config import SearchConfig
    from robustdarts.data.stream import BatchStream
    from robustdarts.search.loop import Search

    cfg = SearchConfig(space="s3", method="darts", dataset="synthetic", epochs=1, batch_size=4, init_channels=4,
                       layers=3, image_size=8, limit_images=32, hessian_every=0, seed=0)
    search = Search(cfg, tmp_path / "run", progress=False)
    search.run()
    rng = torch.get_rng_state()
    value = settled_eigenvalue(search, 2)
    assert torch.equal(rng, torch.get_rng_state())
    stream = BatchStream(search.val_set, 4, search.augment, 7919, search.device)
    expected = arch_hessian(search.supernet, search.arch, [next(stream) for _ in range(2)])["eigenvalue"]
    assert value == pytest.approx(expected, rel=1e-5)
    cache = tmp_path / "run" / "eigenvalue-2batches.json"
    assert json.loads(cache.read_text()) == {"batches": 2, "epoch": 1, "eigenvalue": value}
    cache.write_text(json.dumps({"batches": 2, "epoch": 1, "eigenvalue": -1.0}))
    assert settled_eigenvalue(search, 2) == -1.0  # read back, not measured again
    cache.write_text(json.dumps({"batches": 2, "epoch": 0, "eigenvalue": -1.0}))
    assert settled_eigenvalue(search, 2) == pytest.approx(expected, rel=1e-5)  # stale: measured again


def test_op_mass_is_the_mean_over_the_edges_that_offer_the_op():
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    mass = op_mass(weights, [["none", "skip_connect"], ["none", "skip_connect", "sep_conv_3x3"]])
    assert mass == pytest.approx({"none": 0.35, "skip_connect": 0.4, "sep_conv_3x3": 0.5})


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The rows of every Markdown table in ``text`` whose header starts with ``header_start``."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(header_start):
            inside = True
        elif inside and line.startswith("|---"):
            continue
        elif inside and line.startswith("|"):
            rows.append([c.strip().replace("**", "") for c in line.strip("|").split("|")])
        else:
            inside = False
    return rows


def test_every_number_of_the_collapse_outcome_is_a_row_of_the_bench_report():
    """docs/collapse.md's outcome tables are copied from docs/collapse-report.md, which examples/collapse.py writes
    from the grid's store: each row must be one of the report's cells, number for number."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    report = {(r[1], r[7]): r for r in _table_rows((docs / "collapse-report.md").read_text(), "| method | seed |")
              if len(r) == 14 and r[5] == "done"}  # (seed, one-batch λ_max curve) -> the report's row
    rows = _table_rows((docs / "collapse.md").read_text(), "| method | seed | skips") + \
        _table_rows((docs / "collapse.md").read_text(), "| R-DARTS(L2) grid point | seed | skips")
    assert len(rows) >= 5
    for method, seed, skips, one, many, share, supernet, held, test, params in rows:
        r = report[(seed, one)]
        assert (skips, many, share) == (r[6], r[8], r[9]), method
        assert (supernet, held, test) == tuple(f"{v} %" for v in r[10:13]), method
        assert params == f"{round(float(r[13]) * 1000)} k", method


def test_the_pages_summary_and_paired_tables_are_the_reports():
    """docs/collapse.md's "Over the seeds" tables (mean ± std per method; each method minus DARTS seed by seed) are
    copied from docs/collapse-report.md: every row must be the report's, cell for cell."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    page, report = (docs / "collapse.md").read_text(), (docs / "collapse-report.md").read_text()
    for header in ("| method | n |", "| method − baseline |"):
        rows = _table_rows(page, header)
        assert rows and rows == _table_rows(report, header), header


def test_the_pages_collapse_counts_follow_from_its_outcome_rows_and_definitions():
    """docs/collapse.md defines collapse before it reads its tables (skip collapse: >= 6 of the normal cell's 8 kept
    ops are skip_connect; curvature growth: the mean of the last three one-batch λ_max measurements over the mean of
    the first three is > 1.3); its "Collapse, defined" table must be those definitions applied to its own rows."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "collapse.md").read_text()
    outcome = _table_rows(page, "| method | seed | skips")
    grid = [r for r in _table_rows(page, "| R-DARTS(L2) grid point | seed | skips")]

    def counts(rows):
        final = [int(r[2].split("→")[-1]) for r in rows]
        curves = [[float(v) for v in r[3].split(" / ")] for r in rows]
        growth = [sum(c[-3:]) / sum(c[:3]) for c in curves]
        return [f"{sum(k >= 6 for k in final)} of {len(rows)}", str(sum(k == 8 for k in final)),
                f"{sum(g > 1.3 for g in growth)} of {len(rows)}"]

    groups = {"DARTS": [r for r in outcome if r[0] == "DARTS"],
              "R-DARTS(L2), selected": [r for r in outcome if r[0].startswith("R-DARTS(L2)")],
              "R-DARTS(L2), every grid point but 3e-4": grid,
              "Λ-DARTS": [r for r in outcome if r[0] == "Λ-DARTS"]}
    table = {r[0]: r[1:] for r in _table_rows(page, "| runs | skip collapse")}
    assert set(table) == set(groups)
    for name, rows in groups.items():
        assert rows and table[name] == counts(rows), name
