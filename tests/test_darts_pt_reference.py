"""DARTS-PT's selection order against a port of the reference (ruocwang/darts-pt, ``sota/cnn/projection.py``
``project_op``/``project_edge``/``pt_project``, ``sota/cnn/model_search_darts_proj.py`` ``get_projected_weights``,
``project_op``/``project_edge``; ``nasbench201/projection.py`` for NAS-Bench-201's schedule), on a hand-made
supernet: an accuracy that is a known, non-additive function of the mixing weights, counted in whole images (so
that measurements tie), and a fine-tuning that moves α by a known amount per epoch. The port keeps the reference's
loops and comparisons; only ``np.random.choice`` is replaced by a draw from the same seeded generator that ours
uses (the one deliberate difference, stated in search/darts_pt.py)."""

from __future__ import annotations

import pytest
import torch

from robustdarts.search.darts_pt import Projection, decision_count, select
from robustdarts.spaces import get_space

IMAGES = 16  # accuracies are multiples of 1/16: equal measurements happen, as on a small validation split


class HandMadeSupernet:
    """Accuracy = (correct images) / IMAGES, where each node of each cell contributes a concave function of the
    weighted importance of its inputs (a node gains less from a second strong edge than from the first), so that a
    measurement depends on which other edges are live, not only on the edge removed. ``epoch`` is the fine-tuning
    time: α moves by ``drift`` per epoch."""

    def __init__(self, space, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.space = space
        self.importance = {c: torch.randint(0, 4, space.alpha_shape(c), generator=gen).double()
                           for c in space.cell_types}
        self.alpha = {c: torch.randn(space.alpha_shape(c), generator=gen, dtype=torch.float64)
                      for c in space.cell_types}
        self.drift = {c: 0.5 * torch.randn(space.alpha_shape(c), generator=gen, dtype=torch.float64)
                      for c in space.cell_types}
        self.epoch = 0
        self.measurements = 0

    def soft(self) -> dict[str, torch.Tensor]:
        return {c: torch.softmax(self.alpha[c] + self.epoch * self.drift[c], -1) for c in self.space.cell_types}

    def accuracy(self, weights: dict[str, torch.Tensor]) -> float:
        self.measurements += 1
        score = 0.0
        for c in self.space.cell_types:
            for node in range(self.space.steps):
                edges = list(self.space.node_edges(node))
                signal = float((self.importance[c][edges] * weights[c][edges]).sum())
                score += min(signal, 2.0) ** 0.5
        most = len(self.space.cell_types) * self.space.steps * 2.0 ** 0.5
        return round(IMAGES * score / most) / IMAGES


# --- the port ------------------------------------------------------------------------------------------------------
class RefModel:
    """DartsNetworkProj's projection state: candidate flags per edge and per choice node, the projected (one-hot or
    zero) rows, the two edges kept per decided node."""

    def __init__(self, space, net: HandMadeSupernet):
        self.net, self.num_edges = net, space.num_edges
        self.num_ops = {c: space.alpha_shape(c)[1] for c in space.cell_types}
        self.nid2eids = {n: list(space.node_edges(n)) for n in range(space.steps) if len(space.node_edges(n)) > 2} \
            if space.kind == "darts" else {}
        self.candidate_flags = {c: [True] * space.num_edges for c in space.cell_types}
        self.candidate_flags_edge = {c: {n: True for n in self.nid2eids} for c in space.cell_types}
        self.proj_weights = {c: torch.zeros(space.alpha_shape(c), dtype=torch.float64) for c in space.cell_types}
        self.nid2selected_eids = {c: {n: [] for n in self.nid2eids} for c in space.cell_types}

    def project_op(self, eid, opid, cell_type):
        self.proj_weights[cell_type][eid][opid] = 1
        self.candidate_flags[cell_type][eid] = False

    def project_edge(self, nid, eids, cell_type):
        for eid in self.nid2eids[nid]:
            if eid not in eids:
                self.proj_weights[cell_type][eid].fill_(0)
        self.nid2selected_eids[cell_type][nid] = list(eids)
        self.candidate_flags_edge[cell_type][nid] = False

    def get_projected_weights(self, cell_type):
        weights = self.net.soft()[cell_type]
        for eid in range(self.num_edges):
            if not self.candidate_flags[cell_type][eid]:
                weights[eid].copy_(self.proj_weights[cell_type][eid])
        for nid in self.nid2eids:
            if not self.candidate_flags_edge[cell_type][nid]:
                for eid in self.nid2eids[nid]:
                    if eid not in self.nid2selected_eids[cell_type][nid]:
                        weights[eid].copy_(self.proj_weights[cell_type][eid])
        return weights

    def infer(self, weights_dict):
        """``infer(..., _eval=False, weights_dict=...)``: the given cell type's weights, the others projected."""
        return self.net.accuracy({c: weights_dict.get(c, self.get_projected_weights(c)) for c in self.candidate_flags})


def ref_project_op(model: RefModel, cell_type, choice):
    remain_eids = [e for e, flag in enumerate(model.candidate_flags[cell_type]) if flag]
    selected_eid = choice(remain_eids)
    compare = lambda x, y: x < y  # noqa: E731 (proj_crit 'acc')
    best_opid, crit_extrema, log = 0, None, []
    for opid in range(model.num_ops[cell_type]):
        weights = model.get_projected_weights(cell_type)
        proj_mask = torch.ones_like(weights[selected_eid])
        proj_mask[opid] = 0
        weights[selected_eid] = weights[selected_eid] * proj_mask
        crit = model.infer({cell_type: weights})
        log.append(crit)
        if crit_extrema is None or compare(crit, crit_extrema):
            crit_extrema, best_opid = crit, opid
    return selected_eid, best_opid, log


def ref_project_edge(model: RefModel, cell_type, choice):
    remain_nids = [n for n, flag in model.candidate_flags_edge[cell_type].items() if flag]
    selected_nid = choice(remain_nids)
    compare = lambda x, y: x < y  # noqa: E731
    eids, rounds = list(model.nid2eids[selected_nid]), []
    while len(eids) > 2:
        eid_todel, crit_extrema, accs = None, None, {}
        for eid in eids:
            weights = model.get_projected_weights(cell_type)
            weights[eid].fill_(0)
            crit = model.infer({cell_type: weights})
            accs[eid] = crit
            if crit_extrema is None or not compare(crit, crit_extrema):  # find out bad edges
                crit_extrema, eid_todel = crit, eid
        eids.remove(eid_todel)
        rounds.append((eid_todel, accs))
    return selected_nid, eids, rounds


def ref_pt_project(space, net: HandMadeSupernet, generator, proj_intv: int) -> list[tuple]:
    """``pt_project``'s schedule (sota/cnn for the DARTS kind, nasbench201 for NB201) with one tuning epoch per
    loop iteration; returns the decisions in order."""
    model = RefModel(space, net)

    def choice(items):
        return items[int(torch.randint(len(items), (1,), generator=generator))]

    if space.kind == "nb201":
        tune_epochs = proj_intv * (model.num_edges - 1)
    else:
        tune_epochs = proj_intv * (model.num_edges + len(model.nid2eids) - 1) + 1
    out = []
    for epoch in range(tune_epochs):
        if epoch % proj_intv == 0 or epoch == tune_epochs - 1:
            if space.kind == "nb201" or epoch < proj_intv * model.num_edges:
                for cell in space.cell_types:
                    eid, opid, log = ref_project_op(model, cell, choice)
                    model.project_op(eid, opid, cell)
                    out.append(("op", cell, eid, opid, tuple(log)))
            else:
                for cell in space.cell_types:
                    nid, eids, rounds = ref_project_edge(model, cell, choice)
                    model.project_edge(nid, eids, cell)
                    out.append(("edge", cell, nid, tuple(eids), tuple(e for e, _ in rounds),
                                tuple(tuple(a.items()) for _, a in rounds)))
        net.epoch += 1  # one epoch of tuning
    final = {c: model.get_projected_weights(c) for c in space.cell_types}
    return out, final


# --- ours ------------------------------------------------------------------------------------------------------------
def ours(space, net: HandMadeSupernet, generator, proj_intv: int):
    projection = Projection.empty(space)
    updates = []

    def tune(epochs):
        net.epoch += epochs

    decisions = select(space, projection, lambda: projection.apply(net.soft()), net.accuracy, tune, generator,
                       allow_none=space.kind == "nb201", tune_epochs=proj_intv,
                       on_decision=lambda done, total: updates.append((done, total)))
    out = []
    for d in decisions:
        ops = space.ops[d["cell"]][d["edge"]] if d["kind"] == "op" else None
        if d["kind"] == "op":
            out.append(("op", d["cell"], d["edge"], ops.index(d["chosen"]), tuple(d["without"][o] for o in ops)))
        else:
            out.append(("edge", d["cell"], d["node"], tuple(d["kept"]), tuple(r["edge"] for r in d["removed"]),
                        tuple(tuple(r["without"].items()) for r in d["removed"])))
    return out, projection.apply(net.soft()), updates


def _ties(decisions) -> tuple[int, int]:
    """Decisions whose choice was a tie: ops whose lowest accuracy was shared, edges whose highest was."""
    op_ties = sum(1 for d in decisions if d[0] == "op" and list(d[4]).count(min(d[4])) > 1)
    edge_ties = sum(1 for d in decisions if d[0] == "edge"
                    for accs in d[5] if [a for _, a in accs].count(max(a for _, a in accs)) > 1)
    return op_ties, edge_ties


@pytest.mark.parametrize("space_name", ["darts-7", "s2", "nb201"])
def test_selection_order_equals_a_port_of_the_reference(space_name):
    """Same edge drawn, same op kept, same edges removed per node in the same order, same accuracies measured, on
    several hand-made supernets; ties (ops and edges) occur among them and are broken as the reference does."""
    space = get_space(space_name)
    proj_intv = 2
    op_ties = edge_ties = 0
    for seed in range(6):
        ref, ref_final = ref_pt_project(space, HandMadeSupernet(space, seed), torch.Generator().manual_seed(seed),
                                        proj_intv)
        net = HandMadeSupernet(space, seed)
        got, final, updates = ours(space, net, torch.Generator().manual_seed(seed), proj_intv)
        assert got == ref
        for c in space.cell_types:
            assert torch.equal(final[c], ref_final[c])
        total = decision_count(space)
        assert updates == [(k, total) for k in range(1, total + 1)]
        ties = _ties(ref)
        op_ties, edge_ties = op_ties + ties[0], edge_ties + ties[1]
    assert op_ties > 0
    if space.kind == "darts":
        assert edge_ties > 0


def test_ties_go_to_the_first_op_and_to_the_later_edge():
    """Hand-worked: when every measurement is equal, the reference keeps op 0 on every edge (a removal replaces the
    best only when strictly worse) and drops the later edge (it replaces the candidate when at least as good), so
    each node keeps its first two inputs, after dropping its last, then its last but one, ..."""
    space = get_space("darts-7")
    projection = Projection.empty(space)
    soft = {c: torch.full(space.alpha_shape(c), 1 / 7) for c in space.cell_types}
    decisions = select(space, projection, lambda: projection.apply(soft), lambda w: 0.5, lambda epochs: None,
                       torch.Generator().manual_seed(0), allow_none=False)
    assert all(d["chosen"] == "max_pool_3x3" for d in decisions if d["kind"] == "op")
    for d in (d for d in decisions if d["kind"] == "edge"):
        edges = list(space.node_edges(d["node"]))
        assert d["kept"] == edges[:2]
        assert [r["edge"] for r in d["removed"]] == edges[:1:-1]


def test_dropped_edges_stay_live_until_the_node_is_decided():
    """Hand-worked: node 2 of S2 has inputs e5..e8 (all one-hot by then) and the accuracy of its live inputs L is
    0.5·[e5 ∈ L] + 0.25·[e6, e8 ∈ L] + 0.25·[e7 ∈ L]. Round 1 measures removing e5, e6, e7, e8: 0.5, 0.75, 0.75,
    0.75; the tie drops the later edge, e8. Round 2 with e8 still live, as the reference measures it: 0.5, 0.75,
    0.75, so e7 goes and e5, e6 stay. (Zeroing e8 first would measure 0.25, 0.75, 0.5 and keep e5, e7.)"""
    space = get_space("s2")
    projection = Projection.empty(space)
    onehot = {c: torch.nn.functional.one_hot(torch.zeros(space.num_edges, dtype=torch.long), 2).float()
              for c in space.cell_types}

    def measure(weights):
        live = {e for e in (5, 6, 7, 8) if float(weights["normal"][e].sum()) > 0}
        return 0.5 * (5 in live) + 0.25 * ({6, 8} <= live) + 0.25 * (7 in live)

    decisions = select(space, projection, lambda: projection.apply(onehot), measure, lambda epochs: None,
                       torch.Generator().manual_seed(0), allow_none=False)
    node2 = next(d for d in decisions if d["kind"] == "edge" and d["cell"] == "normal" and d["node"] == 2)
    assert [r["edge"] for r in node2["removed"]] == [8, 7]
    assert node2["removed"][0]["without"] == {5: 0.5, 6: 0.75, 7: 0.75, 8: 0.75}
    assert node2["removed"][1]["without"] == {5: 0.5, 6: 0.75, 7: 0.75}
    assert node2["kept"] == [5, 6]
    assert projection.removed["normal"][5:9].tolist() == [False, False, True, True]


# --- progress (issue 25: 34 decisions used to run for minutes in silence) ------------------------------------------
@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    from conftest import tiny_config
    from robustdarts.runs import release
    from robustdarts.search.loop import Search

    run = tmp_path_factory.mktemp("darts-pt-progress") / "run"
    Search(tiny_config("darts", "nb201", epochs=1), run, progress=False).run()
    release(run)
    return run


def test_darts_pt_reports_decisions_and_fine_tuning_epochs(nb201_run):
    """NAS-Bench-201: 6 decisions, one per edge; after each but the last, the fine-tuning epochs (2 here, 1 before
    the last decision, as the reference's 5·(6 − 1)-epoch schedule), each reported with the decisions done so far.
    (The DARTS kind's 34 decisions are counted by test_selection_order_equals_a_port_of_the_reference.)"""
    from robustdarts.search.darts_pt import darts_pt

    updates = []
    darts_pt(nb201_run, tune_epochs=2, val_images=16, listener=updates.append)
    expected = []
    for event in range(6):
        expected.append({"decisions": event + 1, "total": 6})
        epochs = 2 if event < 4 else 1
        if event < 5:
            expected += [{"decisions": event + 1, "total": 6, "tune_epoch": e, "tune_epochs": epochs}
                         for e in range(1, epochs + 1)]
    assert updates == expected


def test_derive_darts_pt_draws_a_bar_on_a_terminal_and_nothing_else(nb201_run, monkeypatch):
    """On a terminal: a bar of the decisions (done/total) and of the fine-tuning epoch; with --json, --no-progress
    or off a terminal (a pipe, a log): none, and --json's output is one JSON document."""
    import io
    import json

    from rich.console import Console
    from typer.testing import CliRunner

    from robustdarts import cli

    def derive(*extra, terminal=True):
        screen = io.StringIO()
        monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=terminal, width=120))
        result = CliRunner().invoke(cli.app, ["derive", str(nb201_run), "--policy", "darts-pt", "--tune-epochs", "1",
                                              "--val-images", "8", *extra])
        assert result.exit_code == 0, result.output
        return result.output, screen.getvalue()

    _, shown = derive()
    assert "DARTS-PT decisions" in shown and "6/6" in shown and "fine-tuning epoch" in shown
    out, shown = derive("--json")
    assert shown == "" and set(json.loads(out)) == {"epoch", "genotype"}
    _, shown = derive("--no-progress")
    assert "DARTS-PT decisions" not in shown and "epoch" in shown
    _, shown = derive(terminal=False)
    assert "DARTS-PT decisions" not in shown and "epoch" in shown
