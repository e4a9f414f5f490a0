"""Leakage diagnostics: leaked mass on hand-made weights, a zero gap for one-hot weights, no training-state change."""

from __future__ import annotations

import pytest
import torch

from robustdarts.analysis.leakage import leaked_mass, leakage_metrics, node_leaks, onehot_weights
from conftest import tiny_config
from robustdarts.genotype import Genotype
from robustdarts.methods.recipe import derive_weights
from robustdarts.search.loop import Search
from robustdarts.spaces import get_space


def tiny_search(space="s3", method="darts", **overrides) -> Search:
    return Search(tiny_config(method, space, **overrides), None, progress=False)


# ---- leaked mass on hand-made cases -----------------------------------------------------------------------------
def test_darts_kind_leak_is_dropped_share_of_non_none_mass():
    space = get_space("s3")  # ops: none, skip_connect, sep_conv_3x3
    table = torch.tensor([0.5, 0.25, 0.25]).expand(space.num_edges, 3).clone()
    genes = tuple(g for _ in range(space.steps) for g in (("sep_conv_3x3", 0), ("skip_connect", 1)))
    genotype = Genotype(kind="darts", normal=genes, reduce=genes, normal_concat=(2, 3, 4, 5),
                        reduce_concat=(2, 3, 4, 5))
    # Node i: 2+i edges, non-none mass 0.5 each; kept 0.25 + 0.25 → leak 1 − 1/(2+i).
    assert node_leaks(space, table, genotype, "normal") == pytest.approx([1 / 2, 2 / 3, 3 / 4, 4 / 5])
    out = leaked_mass(space, {"normal": table, "reduce": table}, genotype)
    assert out == pytest.approx({"leaked_normal": (1 / 2 + 2 / 3 + 3 / 4 + 4 / 5) / 4,
                                 "leaked_reduce": (1 / 2 + 2 / 3 + 3 / 4 + 4 / 5) / 4})
    # Mass on 'none' hides nothing: edges that are all 'none' except the kept ops do not leak.
    sparse = torch.zeros(space.num_edges, 3)
    sparse[:, 0] = 1.0
    for node in range(space.steps):
        rows = space.node_edges(node)
        sparse[rows[0]] = torch.tensor([0.9, 0.0, 0.1])
        sparse[rows[1]] = torch.tensor([0.9, 0.1, 0.0])
    assert leaked_mass(space, {"normal": sparse, "reduce": sparse}, genotype)["leaked_normal"] == 0.0
    # Per-cell copies (a list) are averaged.
    both = leaked_mass(space, {"normal": [table, sparse], "reduce": table}, genotype)
    assert both["leaked_normal"] == pytest.approx(out["leaked_normal"] / 2)


def test_nb201_edge_kept_as_none_leaks_all_of_its_mass():
    space = get_space("nb201")  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
    table = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2]).expand(6, 5).clone()
    genotype = Genotype.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_3x3~0|skip_connect~1|none~2|",
                              source="test")
    # node 0: one edge, kept conv: 1 − 0.2/0.8; node 1: edges (none, skip): (0.8 + 0.6)/1.6; node 2: (0.6+0.6+0.8)/2.4
    assert node_leaks(space, table, genotype, "normal") == pytest.approx([0.75, 1.4 / 1.6, 2.0 / 2.4])


def test_lhd_node_joint_leak_pruned_node_and_outputs():
    space = get_space("lhd")
    weights = {}
    for cell in ("normal", "reduce"):
        table = torch.zeros(space.alpha_shape(cell))
        for node in range(space.steps):
            rows = space.node_edges(node)
            table[rows.start:rows.stop] = 1.0 / (len(rows) * 7)
            table[rows[0], 3] += 0.3  # (h0, sep_conv_3x3) gets extra mass
        for node in range(space.steps):  # renormalize each node block
            rows = space.node_edges(node)
            table[rows.start:rows.stop] /= table[rows.start:rows.stop].sum()
        weights[cell] = table
        weights[f"{cell}_sum"] = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1])
        weights[f"{cell}_cat"] = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.1])
    # Nodes 0-3 keep (sep3, h0) and (skip, h1); node 1 consumes node 0; node 4 is pruned.
    genes = tuple(g for node in range(4) for g in (("sep_conv_3x3", 0, node), ("skip_connect", 1, node)))
    output = {"sum": (0, 1), "concat": (0, 2, 3)}
    genotype = Genotype(kind="lhd", normal=genes, reduce=genes, normal_output=output, reduce_output=output)
    leaks = node_leaks(space, weights["normal"], genotype, "normal")
    for node in range(4):
        rows = space.node_edges(node)
        kept = weights["normal"][rows[0], 3] + weights["normal"][rows[1], 2]
        assert leaks[node] == pytest.approx(1 - float(kept))
    assert leaks[4] == 1.0
    out = leaked_mass(space, weights, genotype)
    assert out["leaked_normal"] == pytest.approx(sum(leaks) / 5)
    assert out["leaked_normal_sum"] == pytest.approx(0.3)
    assert out["leaked_normal_cat"] == pytest.approx(0.6 / 2.5)


def test_lhd_onehot_keeps_gates_of_consumed_nodes():
    space = get_space("lhd")
    genes = (("sep_conv_3x3", 0, 0), ("skip_connect", 1, 0), ("sep_conv_3x3", 2, 1), ("skip_connect", 1, 1))
    genotype = Genotype(kind="lhd", normal=genes, reduce=genes, normal_output={"sum": (1,), "concat": (1,)},
                        reduce_output={"sum": (1,), "concat": (1,)})
    w = onehot_weights(space, genotype)
    assert w["normal_cat"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]  # node 0 is consumed by node 1
    assert w["normal_sum"].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert int(w["normal"].sum()) == 4 and w["normal"][space.node_edges(1)[2], 3] == 1.0


# ---- the gap -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["s3", "lhd", "nb201"])
def test_gap_is_zero_when_the_weights_already_are_the_genotypes_onehot(space):
    search = tiny_search(space)
    search.run()
    genotype = search.genotype
    onehot = onehot_weights(search.space, genotype)
    metrics = leakage_metrics(search, onehot, genotype)
    # Both nets get their BN statistics from the same calibration batches, so identical weights give identical
    # accuracy; comparing stored running statistics with recalibrated ones would not.
    assert metrics["gap"] == 0.0 and metrics["val_acc_relaxed"] == metrics["val_acc_onehot"]
    assert metrics["leaked_normal"] == 0.0


def test_leakage_changes_no_training_state():
    search = tiny_search("s3", epochs=2)
    search.run(stop_after=0)  # one trained epoch: optimizers and streams have state
    before = {k: v.clone() for k, v in search.supernet.state_dict().items()}
    arch = {k: v.clone() for k, v in search.arch.state_dict().items()}
    w_opt = repr(search.w_opt.state_dict())
    a_opt = repr(search.a_opt.state_dict())
    streams = repr((search.train_stream.state_dict(), search.val_stream.state_dict()))
    rng = torch.get_rng_state()
    momenta = [m.momentum for m in search.supernet.modules() if hasattr(m, "momentum")]
    search.supernet.train()
    weights = derive_weights(search.recipe, search.arch.as_dict(), search.epoch)
    metrics = leakage_metrics(search, weights, search.genotype)
    assert {"leaked_normal", "leaked_reduce", "gap", "val_acc_onehot", "val_acc_relaxed"} <= set(metrics)
    after = search.supernet.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(arch[k], v) for k, v in search.arch.state_dict().items())
    assert repr(search.w_opt.state_dict()) == w_opt and repr(search.a_opt.state_dict()) == a_opt
    assert repr((search.train_stream.state_dict(), search.val_stream.state_dict())) == streams
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.momentum for m in search.supernet.modules() if hasattr(m, "momentum")] == momenta
    assert search.supernet.training


def test_search_logs_leakage_every_epoch(tmp_path):
    search = Search(tiny_config("sp-darts", epochs=2, leakage_every=1), tmp_path / "run", progress=False)
    search.run()
    records = search.run_dir.read_metrics()
    assert len(records) == 2
    for r in records:
        assert 0.0 <= r["leaked_normal"] <= 1.0 and -1.0 <= r["gap"] <= 1.0 and "val_acc_onehot" in r
