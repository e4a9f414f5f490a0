"""SP-DARTS / small-temperature / LR-swap / LHD-baseline methods: τ per step, exact resume, sparse skipping, and
2 steps of every new method in every kind of space (tiny synthetic configs)."""

from __future__ import annotations

import json
import math
import pytest
import torch

from robustdarts.analysis.hessian import flatten_arch
from robustdarts.archparams import ArchParams
from conftest import tiny_config
from robustdarts.config import SearchConfig
from robustdarts.methods import StepContext, genotype_of, make_recipe, search_config
from robustdarts.methods.sparse import exact_order_softmax, exact_order_weights, fit_to_epochs
from robustdarts.relax import edge_softmax
from robustdarts.runs import RunDir
from robustdarts.schedules import sparsity_preset
from robustdarts.search.loop import Search
from robustdarts.spaces import get_space
from robustdarts.supernet import count_op_calls

NEW_METHODS = ["sp-darts", "sp-darts-lhd", "sp-darts-s1s4", "sp-darts-nb201", "sp-darts-nb201-100", "small-temp-exp",
               "small-temp-cyclic", "small-temp-entropy", "ex-darts", "ss-darts", "ss-darts-nb201", "gdas", "drnas",
               "milenas", "gaea", "gaea-erm"]


def tiny(method: str, space: str = "s3", **overrides) -> SearchConfig:
    return tiny_config(method, space, **overrides)


def recipe(method: str, space: str = "s3", **overrides):
    return make_recipe(tiny(method, space, **overrides))


def at(epoch: int, step: int = 0, steps: int = 20, epochs: int = 50) -> StepContext:
    return StepContext(epoch=epoch, step=step, epochs=epochs, steps_per_epoch=steps)


def alphas_of(space="s3") -> dict:
    return dict(ArchParams(space, generator=torch.Generator().manual_seed(0)).alphas)


# ---- SP-DARTS τ per step ------------------------------------------------------------------------------------------
def test_sp_darts_presets_carry_the_papers_constants():
    darts = search_config({"method": "sp-darts", "space": "darts"})
    assert darts.batch_size == 80 and darts.lr == 0.05
    assert darts.lr_schedule == "constant" and darts.arch_weight_decay == 0.0
    lhd = search_config({"method": "sp-darts-lhd", "space": "lhd"})
    assert lhd.batch_size == 176 and lhd.lr == 0.025
    m = make_recipe(darts)
    assert m.schedule.at(0) == (10.0, 10.0, 0.0)
    assert m.schedule.at(1) == (0.001, pytest.approx(0.01), pytest.approx(1 / 49))
    assert m.schedule.prob_sparse(49) == 1.0 and m.schedule.valid_tau == 1e-4
    m = make_recipe(lhd)
    assert m.schedule.at(4)[2] == 0.0 and m.schedule.at(5) == (0.0015, pytest.approx(0.015), pytest.approx(1 / 45))
    # The generic preset follows the space: on LHD it is sp-darts-lhd, on S1-S4 sp-darts-s1s4.
    assert search_config({"method": "sp-darts", "space": "lhd"}).method_options["variant"] == "lhd"
    s3 = search_config({"method": "sp-darts", "space": "s3"})
    assert s3.method_options["variant"] == "s1-s4" and s3.batch_size == 128


def test_ramp_is_stretched_to_the_run_length_but_warmup_is_not():
    s = fit_to_epochs(sparsity_preset("darts"), 6)
    assert [s.prob_sparse(e) for e in range(6)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    s = fit_to_epochs(sparsity_preset("lhd"), 8)
    assert [s.prob_sparse(e) for e in range(8)] == pytest.approx([0, 0, 0, 0, 0, 1 / 3, 2 / 3, 1])
    assert fit_to_epochs(sparsity_preset("darts"), 50) is sparsity_preset("darts")


def test_warmup_then_bernoulli_draws_with_prob_c():
    m = recipe("sp-darts", "darts", epochs=3)
    assert {m.tau(at(0, t, 400, 3)) for t in range(400)} == {10.0}  # warmup: dense at τ = 10
    taus = [m.tau(at(1, t, 400, 3)) for t in range(400)]  # C = 1/2
    assert set(taus) == {0.001, 0.01} and 150 < taus.count(0.001) < 250
    assert [m.tau(at(1, t, 400, 3)) for t in range(400)] == taus  # drawn once per epoch, not per call
    assert {m.tau(at(2, t, 400, 3)) for t in range(400)} == {0.001}  # C = 1


def test_same_tau_for_the_arch_and_the_weight_step_of_a_step():
    cfg = tiny("sp-darts", "darts", epochs=3, limit_images=96)  # 6 steps per epoch
    search = Search(cfg, None, progress=False)
    m, seen = search.recipe, {"arch": [], "weight": []}
    relax = m.relax

    def spy(alphas, betas, ctx, purpose):
        weights = relax(alphas, betas, ctx, purpose)
        if purpose in seen:
            tau = m.tau(ctx)
            expected = edge_softmax(search.space, alphas["normal"].detach(), tau)
            torch.testing.assert_close(weights["normal"].detach(), expected, rtol=0, atol=0)
            seen[purpose].append((ctx.epoch, ctx.step, tau))
        return weights

    m.relax = spy
    draws = {}
    begin = m.begin_epoch

    def record_draws(ctx, alphas):
        begin(ctx, alphas)
        draws[ctx.epoch] = m.draws.tolist()

    m.begin_epoch = record_draws
    search.run()
    assert seen["arch"] == seen["weight"] and len(seen["arch"]) == 18
    for epoch in range(3):
        taus = [tau for e, _, tau in seen["arch"] if e == epoch]
        sparse, dense, _ = m.schedule.at(epoch)
        assert taus == [sparse if d else dense for d in draws[epoch]]
    assert {tau for e, _, tau in seen["arch"] if e == 0} == {10.0}
    assert {tau for e, _, tau in seen["arch"] if e == 2} == {0.001}


def test_draws_survive_a_state_dict_round_trip():
    cfg = tiny("sp-darts", epochs=6)
    a, alphas = make_recipe(cfg), alphas_of()
    history = []
    for e in range(6):
        a.begin_epoch(at(e, 0, 50, 6), alphas)
        history.append([a.tau(at(e, t, 50, 6)) for t in range(50)])
    b = make_recipe(cfg)
    for e in range(3):
        b.begin_epoch(at(e, 0, 50, 6), alphas)
    state = b.state_dict()
    c = make_recipe(cfg)
    c.load_state_dict(state)
    for e in range(3, 6):
        c.begin_epoch(at(e, 0, 50, 6), alphas)
        assert [c.tau(at(e, t, 50, 6)) for t in range(50)] == history[e]


def test_resumed_sp_darts_run_equals_an_uninterrupted_one(tmp_path):
    cfg = tiny("sp-darts", epochs=3)
    full = Search(cfg, tmp_path / "full", progress=False)
    full.run()
    part = Search(cfg, tmp_path / "part", progress=False)
    part.run(stop_after=1)
    resumed = Search.resume(tmp_path / "part", progress=False)
    assert resumed.epoch == 2
    resumed.run()
    for key, value in full.arch.as_dict().items():
        assert torch.equal(value, resumed.arch.as_dict()[key]), key
    assert torch.equal(full.recipe.draws, resumed.recipe.draws)
    assert full.genotype == resumed.genotype


# ---- derivation at small τ ----------------------------------------------------------------------------------------
def test_exact_order_breaks_underflow_ties_by_the_logits():
    # Both edges put all of float32/float64 softmax(α/1e-3) on their first op (margins 2 and 3 → exp(-2000) = 0),
    # so the raw maxima tie at 1.0; exact arithmetic prefers the larger margin (edge 1).
    alpha = torch.tensor([[2.0, 0.0, -1.0], [3.0, 0.0, -5.0]])
    plain = torch.softmax(alpha.double() / 1e-3, dim=-1)
    assert plain[0, 0] == plain[1, 0] == 1.0 and plain[0, 1] == plain[1, 2] == 0.0
    ranked = exact_order_softmax(alpha, 1e-3)
    assert ranked[1, 0] > ranked[0, 0] and ranked[0, 1] > ranked[0, 2] > ranked[1, 2]
    assert (ranked - plain).abs().max() < 1e-8


def test_sp_darts_genotype_edges_are_ranked_by_exact_softmax():
    space = get_space("s3")  # ops: none, skip_connect, sep_conv_3x3
    arch = ArchParams(space)
    with torch.no_grad():
        arch.alphas["normal"].zero_()
        arch.alphas["reduce"].zero_()
        rows = space.node_edges(1)  # node 1: edges from s0, s1, n0
        arch.alphas["normal"][rows[0]] = torch.tensor([0.0, 0.0, 1.0])  # sep margin 1
        arch.alphas["normal"][rows[1]] = torch.tensor([0.0, 0.0, 3.0])  # sep margin 3
        arch.alphas["normal"][rows[2]] = torch.tensor([0.0, 2.0, 0.0])  # skip margin 2
    from robustdarts.discretize import derive
    genotype = genotype_of(arch.as_dict(), recipe("sp-darts"), space, 0)
    assert genotype.normal[2:4] == (("sep_conv_3x3", 1), ("skip_connect", 2))
    plain = derive(space, {c: torch.softmax(a.detach() / 1e-3, -1) for c, a in arch.alphas.items()})
    assert plain.normal[2:4] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))  # index tie-break: what we avoid


def test_lhd_derivation_weights_keep_the_node_joint_order():
    space = get_space("lhd")
    arch = ArchParams(space, init_std=1.0, generator=torch.Generator().manual_seed(3))
    weights = exact_order_weights(space, dict(arch.alphas), dict(arch.betas), 1.5e-3)
    for node in range(space.steps):
        rows = space.node_edges(node)
        block = weights["normal"][rows.start:rows.stop].reshape(-1)
        logits = arch.alphas["normal"].detach()[rows.start:rows.stop].reshape(-1)
        assert torch.equal(torch.argsort(block, descending=True, stable=True),
                           torch.argsort(logits, descending=True, stable=True))
        assert block.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert set(weights) == {"normal", "reduce", "normal_sum", "normal_cat", "reduce_sum", "reduce_cat"}


# ---- sparse weight steps skip ops ---------------------------------------------------------------------------------
def test_sparse_weight_steps_skip_zero_weight_ops():
    search = Search(tiny("sp-darts", space="darts", epochs=4), None, progress=False)
    with torch.no_grad():
        for a in search.arch.alphas.values():
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(1)))  # spread, as after warmup
    ctx = at(3, 0, search.train_stream.steps_per_epoch, 4)  # C = 1: every step at τ_s
    search.recipe.begin_epoch(ctx, dict(search.arch.alphas))
    assert search.recipe.tau(ctx) == 0.001
    x, y = next(search.train_stream)
    weights = search.relaxed(ctx, "weight")
    active = 0
    for cell_type, cell in zip(search.supernet.cell_types, search.supernet.cells):
        w = weights[cell_type]
        active += sum(int(w[e, slot] != 0) for e, edge in enumerate(cell.edges) for slot in edge.slots)
    sparse_calls = count_op_calls(search.supernet, lambda: search.weight_step(ctx, x, y))
    assert sparse_calls == active
    dense = Search(tiny("darts", space="darts"), None, progress=False)
    dense_calls = count_op_calls(dense.supernet, lambda: dense.weight_step(at(0), x, y))
    assert dense_calls == 3 * 14 * 7  # every op but none, in each of the 3 cells
    assert sparse_calls <= 3 * 14  # about one op per edge


# ---- small temperature --------------------------------------------------------------------------------------------
def test_small_temp_schedules_and_surrogate_on_every_cell():
    cfg = tiny("small-temp-cyclic", epochs=50)
    m = make_recipe(cfg)
    taus = [m.tau(at(e)) for e in (0, 1, 5, 40, 49)]
    assert taus == pytest.approx([1.0, 3.99e-4 / math.log(1.11), 3.99e-4 / math.log(1 + 0.55),
                                  3.99e-4 / math.log(1.11), 3.99e-4 / math.log(2.1)])
    m = recipe("small-temp-exp", epochs=5)
    assert m.tau(at(4, epochs=5)) == pytest.approx(1e-3)
    # The surrogate reaches α_reduce too (PCDEDD: α_normal only).
    arch = ArchParams("s3", generator=torch.Generator().manual_seed(0))
    weights = m.relax(dict(arch.alphas), {}, at(4, epochs=5), "arch")
    (weights["normal"].sum() * 0 + (weights["reduce"] * torch.arange(3.0)).sum()).backward()
    assert arch.alphas["reduce"].grad.abs().sum() > 0


def test_small_temp_entropy_state_round_trip():
    cfg = tiny("small-temp-entropy", epochs=12)
    a, alphas = make_recipe(cfg), alphas_of()
    taus = []
    for e in range(12):
        a.begin_epoch(at(e, epochs=12), alphas)
        taus.append(a.tau(at(e, epochs=12)))
        if e == 6:
            state = a.state_dict()
    assert taus[:5] == [1.0] * 5 and taus[5] < 0.1
    b = make_recipe(cfg)
    b.load_state_dict(state)
    for e in range(7, 12):
        b.begin_epoch(at(e, epochs=12), alphas)
        assert b.tau(at(e, epochs=12)) == taus[e]


# ---- selective stop -----------------------------------------------------------------------------------------------
def _nb201_archive():
    probs = [[0.1, 0.4, 0.2, 0.2, 0.1], [0.1, 0.25, 0.2, 0.35, 0.1], [0.1, 0.2, 0.2, 0.4, 0.1],
             [0.02, 0.5, 0.02, 0.45, 0.01], [0.1, 0.3, 0.15, 0.35, 0.1]]
    return {e: {"alpha/normal": torch.tensor(p).log().expand(6, 5).clone()} for e, p in enumerate(probs)}


def test_derive_selective_stop_on_a_hand_made_archive(tmp_path):
    from typer.testing import CliRunner

    from robustdarts.cli import app
    from robustdarts.derive import derive_from_run

    run = RunDir(tmp_path / "run")
    run.create(tiny("ss-darts-nb201", space="nb201"))
    archive = _nb201_archive()
    archive[-1] = {"alpha/normal": torch.zeros(6, 5)}
    run.save_archive(archive, {"space": "nb201", "method": "ss-darts-nb201"})
    genotype, epoch = derive_from_run(run.path, policy="selective-stop")
    assert epoch == 2  # epoch 3 has the largest nor_conv_3x3 mass, but skip_connect leads there (gated out)
    assert {gene[0] for gene in genotype.normal} == {"nor_conv_3x3"}
    result = CliRunner().invoke(app, ["derive", str(run.path), "--policy", "selective-stop", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epoch"] == 2


def test_ss_darts_logs_the_stop_epoch_and_writes_selective_stop_json(tmp_path):
    from robustdarts.derive import derive_from_run

    search = Search(tiny("ss-darts", epochs=3), tmp_path / "run", progress=False)
    search.run()
    records = search.run_dir.read_metrics()
    assert all("selective_stop_epoch" in r for r in records)
    report = json.loads((tmp_path / "run" / "selective_stop.json").read_text())
    genotype, epoch = derive_from_run(tmp_path / "run", policy="selective-stop")
    assert report["epoch"] == epoch == records[-1]["selective_stop_epoch"]
    assert report["genotype"] == genotype.to_dict()


# ---- baselines ----------------------------------------------------------------------------------------------------
def test_gdas_weight_step_runs_only_the_sampled_ops():
    search = Search(tiny("gdas", space="darts"), None, progress=False)
    x, y = next(search.train_stream)
    used = []
    relax = search.relaxed
    search.relaxed = lambda ctx, purpose: used.append(relax(ctx, purpose)) or used[-1]
    calls = count_op_calls(search.supernet, lambda: search.weight_step(at(0), x, y))
    (weights,) = used
    assert all(((w == 0) | (w == 1)).all() and (w.sum(-1) == 1).all() for w in weights.values())
    sampled_none = sum(int(weights[t][:, 0].sum()) for t in search.supernet.cell_types)  # 'none' has no module
    assert calls == 3 * 14 - sampled_none


def test_gaea_feeds_alpha_on_the_simplex_directly():
    search = Search(tiny("gaea", space="lhd"), None, progress=False)
    alpha = search.arch.alphas["normal"]
    space = search.space
    for node in range(space.steps):
        rows = space.node_edges(node)
        assert alpha[rows.start:rows.stop].sum().item() == pytest.approx(1.0)
    search.run()
    weights = search.recipe.relax(dict(search.arch.alphas), dict(search.arch.betas), at(0), "arch")
    assert weights["normal"] is alpha  # no softmax on top (LHD's fidelity issue)
    for node in range(space.steps):
        rows = space.node_edges(node)
        assert alpha[rows.start:rows.stop].sum().item() == pytest.approx(1.0, abs=1e-5)
        assert alpha.min() >= 1e-5 - 1e-9
    assert not torch.allclose(alpha, torch.full_like(alpha, alpha[0, 0].item()))  # it moved
    assert search.a_opt.state_dict()["lr"] == 0.1


def test_drnas_kl_anchor_option_adds_an_arch_loss():
    cfg = tiny("drnas", method_options={"kl_weight": 1e-3})
    search = Search(cfg, None, progress=False)
    alphas, betas = dict(search.arch.alphas), dict(search.arch.betas)
    extra = search.recipe.arch_penalty(alphas, betas, at(0))
    assert extra is not None and extra.requires_grad
    assert recipe("drnas").arch_penalty(alphas, betas, at(0)) is None


# ---- every new method, two steps, every kind of space ------------------------------------------------------------
@pytest.mark.parametrize("space", ["s3", "nb201", "darts", "lhd"])
@pytest.mark.parametrize("method", NEW_METHODS)
def test_two_steps(method, space):
    search = Search(tiny(method, space), None, progress=False)
    assert search.train_stream.steps_per_epoch == (4 if search.cfg.weights_on_all_data else 2)
    before = flatten_arch(search.arch)
    genotype = search.run()
    assert genotype is not None and search.epoch == 1
    assert torch.isfinite(flatten_arch(search.arch)).all()
    assert not torch.equal(before, flatten_arch(search.arch))
