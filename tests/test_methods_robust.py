"""Robust-DARTS method presets: Λ-DARTS finite differences against double backward, SDARTS perturbations,
β-DARTS gradient, DARTS- schedule, DARTS-ES stop epoch and DARTS-ADA rollback (spec D §2.4–2.6, §3, §5; L §3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from robustdarts.archparams import ArchParams
from robustdarts.config import SearchConfig
from robustdarts.methods import StepContext, genotype_of, make_recipe
from robustdarts.methods.lambda_darts import alignment, lambda_weight_backward
from robustdarts.methods.regularized import beta_regularizer
from robustdarts.methods.sdarts import pgd_attack
from robustdarts.relax import arch_weights, sdarts_rs_perturb
from robustdarts.search.loop import Search
from robustdarts.spaces import get_space
from robustdarts.supernet import Supernet


def tiny_cfg(method: str, space: str = "s2", **over) -> SearchConfig:
    return tiny_config(method, space, **{"batch_size": 16, "limit_images": 64, **over})


def recipe(method: str, space: str = "s2", **over):
    return make_recipe(tiny_cfg(method, space, **over))


# ------------------------------------------------------------------------------------------------- Λ-DARTS


def _lambda_exact(G: torch.Tensor, reg: str) -> torch.Tensor:
    """Λ written from its definition (spec D §3.2), independently of the closed forms under test."""
    L = G.shape[0]
    pairs = [(i, j) for i in range(L) for j in range(i + 1, L)]
    if reg == "corr":
        terms = [F.cosine_similarity(G[i], G[j], dim=0, eps=0.0) for i, j in pairs]
    else:
        terms = [(G[i] * G[j]).sum() / (G[i].abs() * G[j].abs()).sum() for i, j in pairs]
    return torch.stack(terms).mean()


@pytest.mark.parametrize("reg", ["corr", "signcorr"])
def test_lambda_directions_are_the_gradient_of_lambda(reg):
    G = torch.randn(4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    value, V = alignment(G, reg)
    Gr = G.clone().requires_grad_(True)
    exact_value = _lambda_exact(Gr, reg)
    (exact_V,) = torch.autograd.grad(exact_value, Gr)
    assert float(value) == pytest.approx(float(exact_value.detach()), rel=1e-12)
    torch.testing.assert_close(V, exact_V, rtol=1e-10, atol=1e-12)


def test_lambda_guards_degenerate_gradients():
    value, V = alignment(torch.zeros(3, 5), "corr")
    assert torch.isfinite(V).all() and float(value) == 0.0
    value, V = alignment(torch.ones(1, 5), "signcorr")  # one cell: no pairs
    assert float(value) == 0.0 and not V.any()


def _tiny_supernet(seed=0):
    torch.manual_seed(seed)
    net = Supernet("darts-7", C=4, layers=5, num_classes=10, in_channels=3).double()  # normal cells 0, 2, 4
    arch = ArchParams("darts-7", init_std=0.5, generator=torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():
        weights = {k: v.detach() for k, v in arch_weights(arch).items()}
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    y = torch.arange(6) % 10
    return net, weights, x, y


@pytest.mark.parametrize("reg,drop", [("corr", 0.0), ("signcorr", 0.0), ("corr", 0.3)])
def test_lambda_finite_difference_matches_double_backward(reg, drop):
    """(g⁻ − g⁺)/(2ε) equals −∇_w Λ(g_1(w), …, g_L(w)) computed exactly by double backward (the weights minimise
    L − λΛ), with the same drop-path masks on every pass."""
    net, weights, x, y = _tiny_supernet()
    net.train()
    params = list(net.parameters())
    forward = lambda x_, w_: net(x_, w_, drop_prob=drop)  # noqa: E731
    L = net.cells_of("normal")
    assert L == 3

    torch.manual_seed(123)
    _, _, values, reg_grads = lambda_weight_backward(net, forward, x, y, weights, cells=("normal",), reg=reg,
                                                     lam=1.0, eps0=1e-6)
    fd_grads = [g.clone() for g in reg_grads]
    for p in params:
        p.grad = None

    torch.manual_seed(123)  # the same drop-path masks as the main pass
    copies = [weights["normal"].clone().requires_grad_(True) for _ in range(L)]
    loss = F.cross_entropy(forward(x, {**weights, "normal": copies}), y)
    g_cells = torch.autograd.grad(loss, copies, create_graph=True)
    lam_value = _lambda_exact(torch.stack([g.reshape(-1) for g in g_cells]), reg)
    exact = torch.autograd.grad(lam_value, params, allow_unused=True)

    assert float(values["normal"]) == pytest.approx(float(lam_value.detach()), rel=1e-9)
    fd = torch.cat([g.reshape(-1) for g, e in zip(fd_grads, exact) if e is not None])
    ex = torch.cat([e.reshape(-1) for e in exact if e is not None])
    assert ex.norm() > 0
    assert float((fd + ex).norm() / ex.norm()) < 1e-5


def test_lambda_step_adds_regularizer_and_leaves_bn_and_rng_alone():
    net, weights, x, y = _tiny_supernet(seed=3)
    net.train()
    params = list(net.parameters())
    forward = lambda x_, w_: net(x_, w_, drop_prob=0.2)  # noqa: E731
    state = {k: v.clone() for k, v in net.state_dict().items()}

    torch.manual_seed(7)
    loss_plain = F.cross_entropy(forward(x, weights), y)
    plain = torch.autograd.grad(loss_plain, params)
    rng_plain, buffers_plain = torch.get_rng_state(), [b.clone() for b in net.buffers()]

    net.load_state_dict(state)
    torch.manual_seed(7)
    loss, _, _, reg_grads = lambda_weight_backward(net, forward, x, y, weights, cells=("normal",), reg="corr",
                                                   lam=0.5, eps0=1e-4)
    assert float(loss) == pytest.approx(float(loss_plain.detach()), rel=1e-12)
    assert torch.equal(torch.get_rng_state(), rng_plain)
    for b, ref in zip(net.buffers(), buffers_plain):
        torch.testing.assert_close(b, ref, rtol=0, atol=0)
    for p, g, r in zip(params, plain, reg_grads):
        torch.testing.assert_close(p.grad, g + 0.5 * r, rtol=1e-9, atol=1e-12)


def test_lambda_ramp_and_options():
    method = recipe("lambda-darts", epochs=50)
    assert method.lambda_at(0) == 0.0 and method.lambda_at(49) == pytest.approx(0.125)
    assert method.cells == ("normal",)
    both = recipe("lambda-darts", method_options={"cells": "all", "reg": "signcorr"})
    assert both.cells == ("normal", "reduce")
    from robustdarts.errors import RobustDartsError
    with pytest.raises(RobustDartsError, match="reg"):
        recipe("lambda-darts", method_options={"reg": "cos"})
    with pytest.raises(RobustDartsError, match="cells"):
        recipe("lambda-darts", "nb201", method_options={"cells": "reduce"})


# ------------------------------------------------------------------------------------------------- SDARTS


@pytest.mark.parametrize("space_name", ["s3", "darts", "lhd"])
def test_sdarts_rs_stays_on_the_simplex(space_name):
    space = get_space(space_name)
    arch = ArchParams(space, init_std=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        weights = {k: v.detach() for k, v in arch_weights(arch).items()}
    perturbed = sdarts_rs_perturb(space, weights, eps=0.3, generator=torch.Generator().manual_seed(1))
    for c in space.cell_types:
        p = perturbed[c]
        assert (p >= 0).all() and (p <= 1).all()
        assert not torch.equal(p, weights[c])
        if space.kind == "lhd":
            sums = torch.stack([p[r.start:r.stop].sum() for r in map(space.node_edges, range(space.steps))])
        else:
            sums = p.sum(-1)
        torch.testing.assert_close(sums, torch.ones_like(sums))
    if space.kind == "lhd":  # output weights are not SDARTS' business
        assert perturbed["normal_cat"] is weights["normal_cat"]


def test_sdarts_adv_raises_the_training_loss():
    search = Search(tiny_cfg("sdarts-adv", space="s3", epochs=10), None, progress=False)
    x, y = next(search.train_stream)
    method = search.recipe
    weights = search.relaxed(StepContext(epoch=9, epochs=10), "weight")
    search.supernet.train()
    eps = method.epsilon(9)  # ε near its maximum
    attacked = pgd_attack(search.supernet, search.forward, search.space, x, y, weights, eps)
    assert search.supernet.training  # train mode restored
    search.supernet.eval()
    with torch.no_grad():
        clean = F.cross_entropy(search.forward(x, weights), y)
        adv = F.cross_entropy(search.forward(x, attacked), y)
    assert float(adv) > float(clean)
    p = attacked["normal"]
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[0]))
    assert (p >= 0).all()
    assert eps == pytest.approx(0.03 + 0.27 * 9 / 10)


# ------------------------------------------------------------------------------------------------- β-DARTS / DARTS-


@pytest.mark.parametrize("space_name", ["darts", "s1", "nb201", "lhd"])
def test_beta_regularizer_has_the_right_gradient(space_name):
    space = get_space(space_name)
    arch = ArchParams(space, init_std=1.0, generator=torch.Generator().manual_seed(0))
    reg = beta_regularizer(space, dict(arch.alphas), dict(arch.betas))
    assert reg.requires_grad
    grads = torch.autograd.grad(reg, list(arch.alphas.values()) + list(arch.betas.values()))
    assert all(g.abs().sum() > 0 for g in grads)
    alphas = list(arch.alphas.values())
    if space.kind != "lhd":
        edges = sum(a.shape[0] for a in alphas)
        expected = [torch.softmax(a.detach(), -1) / edges for a in alphas]
    else:
        n_terms = len(alphas) * space.steps
        expected = []
        for a in alphas:
            blocks = [torch.softmax(a.detach()[r.start:r.stop].reshape(-1), 0).reshape(r.stop - r.start, -1)
                      for r in map(space.node_edges, range(space.steps))]
            expected.append(torch.cat(blocks) / n_terms)
        for b in arch.betas.values():
            e = torch.zeros_like(b)
            e[0] = torch.softmax(b.detach()[0], 0) / len(arch.betas)
            expected.append(e)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


def test_beta_darts_arch_loss_term():
    search = Search(tiny_cfg("beta-darts", epochs=50), None, progress=False)
    alphas, betas = dict(search.arch.alphas), dict(search.arch.betas)
    assert search.recipe.arch_penalty(alphas, betas, StepContext(epoch=0, epochs=50)) is None  # λ_0 = 0
    term = search.recipe.arch_penalty(alphas, betas, StepContext(epoch=49, epochs=50))
    expected = 24.5 * float(beta_regularizer(search.space, alphas, betas).detach())
    assert float(term.detach()) == pytest.approx(expected)
    assert torch.autograd.grad(term, list(search.arch.parameters()))[0].abs().sum() > 0


def test_darts_minus_scale_schedule():
    search = Search(tiny_cfg("darts-minus", epochs=50), None, progress=False)
    edge = search.supernet.cells[0].edges[0]
    assert isinstance(edge.extra, torch.nn.Identity)  # the stride-1 auxiliary skip; stride 2: FactorizedReduce
    assert type(search.supernet.cells[1].edges[0].extra).__name__ == "FactorizedReduce"
    scales = [search.recipe.extra_scale(StepContext(epoch=e, epochs=50)) for e in (0, 25, 49)]
    assert scales == pytest.approx([1.0, 0.5, 0.02])
    assert make_recipe(tiny_cfg("darts")).edge_extra is None


# ------------------------------------------------------------------------------------------------- DARTS-ES / ADA


def _force_eigenvalues(monkeypatch, search, growth=1.5):
    """Replace the Hessian measurement by a hand-made, steadily growing eigenvalue sequence λ_e = 0.1·growth^e."""
    import robustdarts.analysis.hessian as hessian
    monkeypatch.setattr(hessian, "arch_hessian", lambda *a, **k: {"eigenvalue": 0.1 * growth ** search.epoch})


def _genotype_of_archive(search, epoch):
    archive, _ = search.run_dir.load_archive()
    arch = ArchParams(search.space)
    arch.load_dict(archive[epoch])
    from robustdarts.discretize import derive
    return derive(search.space, {k: v.detach() for k, v in arch_weights(arch).items()})  # softmax at τ = 1


@pytest.mark.parametrize("rule,trigger,stop", [("code", 22, 10), ("paper", 10, 5)])
def test_darts_es_stops_and_returns_the_stop_epoch_genotype(rule, trigger, stop, tmp_path, monkeypatch):
    import json

    from robustdarts.genotype import Genotype
    cfg = tiny_cfg("darts-es", epochs=trigger + 4, batch_size=8, limit_images=32, arch_order="first",
                   method_options={"es_rule": rule})
    assert cfg.hessian_every == 2
    search = Search(cfg, tmp_path / "run", progress=False)
    _force_eigenvalues(monkeypatch, search)
    genotype = search.run()
    records = search.run_dir.read_metrics()
    assert records[-1]["epoch"] == trigger and search.epoch == trigger + 1
    assert records[-1]["es_stop_epoch"] == stop
    assert [r["epoch"] for r in records if "eigenvalue" in r] == list(range(0, trigger + 1, 2))
    expected = _genotype_of_archive(search, stop)
    assert genotype == expected
    assert Genotype.load(search.run_dir.genotype_path) == expected
    result = json.loads((search.run_dir.path / "darts_es.json").read_text())
    assert result["stop_epoch"] == stop and result["trigger_epoch"] == trigger
    assert Genotype.from_dict(result["genotype"]) == expected


def test_darts_ada_rollback_is_exact_and_weight_decay_climbs_to_its_cap(tmp_path, monkeypatch):
    """Paper rule, growing eigenvalue: triggers at epoch 10 → back to 5 with wd 3e-3 → trigger at 10 → back to 5
    with wd 3e-2 → the third trigger is ignored (cap). The continuation must equal a run restarted from the
    epoch-5 checkpoint with wd 3e-2: weights, α, optimizer states, streams and RNG all restored (S4's noise op
    draws from the global RNG, so a missed RNG restore would show)."""
    import json

    from robustdarts.search import architect  # robustdarts.search is the API function; the package by name
    used_wd = []
    real_unrolled = architect.unrolled

    def spy(*args, **kwargs):
        used_wd.append(kwargs["weight_decay"])
        return real_unrolled(*args, **kwargs)

    monkeypatch.setattr(architect, "unrolled", spy)
    cfg = tiny_cfg("darts-ada", space="s4", epochs=12, batch_size=8, limit_images=32,
                   method_options={"es_rule": "paper"})
    assert cfg.arch_order == "second" and cfg.keep_checkpoints >= 6
    a = Search(cfg, tmp_path / "a", progress=False)
    _force_eigenvalues(monkeypatch, a)
    a.run()
    records = a.run_dir.read_metrics()
    assert [r["epoch"] for r in records] == list(range(11)) + list(range(6, 11)) + list(range(6, 12))
    assert [r["ada_l2"] for r in records] == [3e-4] * 11 + [3e-3] * 5 + [3e-2] * 6
    assert [r.get("ada_rollback_to") for r in records if "ada_rollback_to" in r] == [5, 5]
    assert records[-2].get("ada_trigger_ignored") is True  # at the cap: no 3e-1
    assert a.weight_decay == pytest.approx(3e-2)
    steps = a.train_stream.steps_per_epoch
    assert used_wd == [3e-4] * 11 * steps + [3e-3] * 5 * steps + [3e-2] * 6 * steps  # the unrolled step's λ_w
    es = json.loads((a.run_dir.path / "darts_es.json").read_text())
    assert es["stop_epoch"] == 5 and es["trigger_epoch"] == 10

    b = Search(cfg, tmp_path / "b", progress=False)
    _force_eigenvalues(monkeypatch, b)
    b.run(stop_after=5)
    b = Search.resume(tmp_path / "b", progress=False)
    _force_eigenvalues(monkeypatch, b)
    b.recipe.schedule.index = 2
    b.run()
    for (name, pa), pb in zip(a.arch.named_parameters(), b.arch.parameters()):
        assert torch.equal(pa, pb), name
    for (name, ta), tb in zip(a.supernet.state_dict().items(), b.supernet.state_dict().values()):
        assert torch.equal(ta, tb), name
    for sa, sb in zip(a.w_opt.state.values(), b.w_opt.state.values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert torch.equal(torch.as_tensor(a.a_opt.state_dict()["state"][0]["exp_avg"]),
                       torch.as_tensor(b.a_opt.state_dict()["state"][0]["exp_avg"]))
    assert a.genotype == b.genotype


def test_darts_ada_needs_checkpoints_and_eigenvalues():
    from robustdarts.errors import RobustDartsError
    with pytest.raises(RobustDartsError, match="keep_checkpoints"):
        recipe("darts-ada", keep_checkpoints=5)
    with pytest.raises(RobustDartsError, match="hessian_every"):
        recipe("darts-es", hessian_every=0)
    dp = recipe("darts-ada", method_options={"regularizer": "dp"})
    assert dp.schedule.values == (0.0, 0.2, 0.4, 0.6)
    with pytest.raises(RobustDartsError, match="run directory"):
        Search(tiny_cfg("darts-ada"), None, progress=False)
