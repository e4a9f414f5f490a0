"""Methods as recipes: the fidelity fixes against independent truths, presets that follow the space, the dry run.

- the zero-weight skip leaves training exactly as computing every op would (momentum and weight decay included);
- NAS-Bench-201 searches build 5 cells per stage: 15 search cells, and the supernet's parameter count derived by
  hand from AutoDL's TinyNetworkDARTS;
- arch weight decay, step order, Nesterov, cutout rule and batch per preset and space, from the cited code;
- the eigenvalue diagnostic is RobustDARTS' deterministic softmax at τ = 1, whatever the step's random state.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from robustdarts.analysis.hessian import arch_hessian
from robustdarts.cli import app
from robustdarts.derive import derive_from_run
from robustdarts.methods import PRESETS, StepContext, make_recipe, search_config
from robustdarts.relax import mixing_weights
from robustdarts.search.loop import Search
from robustdarts.speed import REFERENCE_ORDER
from robustdarts.supernet import Supernet, count_op_calls, count_parameters


# ---- the zero-weight skip keeps the dynamics ------------------------------------------------------------------------
def _late_sp_darts(skip: bool) -> Search:
    """SP-DARTS on the 8-op space in its last epoch (every step at τ_s), α spread as mid-search."""
    # Bit-exact on the NCHW path; with mix_in_bn (a CPU default) the skip agrees to float rounding (speed.py).
    search = Search(tiny_config("sp-darts", "darts", epochs=4, limit_images=64, weight_decay=3e-3,
                                **REFERENCE_ORDER), None, progress=False)
    search.supernet.skip_zero_ops = skip
    with torch.no_grad():
        for a in search.arch.alphas.values():
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(1)))
    search.epoch = 3
    return search


def test_skipping_zero_weight_ops_ends_every_step_where_computing_them_would():
    skipping, computing = _late_sp_darts(skip=True), _late_sp_darts(skip=False)
    ctx, _ = skipping.begin_epoch()
    computing.begin_epoch()
    batches = [next(skipping.train_stream) for _ in range(4)]
    weights = skipping.relaxed(ctx, "weight")
    zero = sum(int((weights[c] == 0).sum()) for c in skipping.space.cell_types)
    assert zero > 0.5 * sum(weights[c].numel() for c in skipping.space.cell_types)  # mostly exact zeros
    # Parameters of one op that is skipped at every one of the four steps (its weight underflows each time).
    cell, edge = skipping.supernet.cells[0], 0
    skipped_slot = next(i for i, slot in enumerate(cell.edges[edge].slots) if weights["normal"][edge, slot] == 0
                        and any(True for _ in cell.edges[edge].ops[i].parameters()))
    op = cell.edges[edge].ops[skipped_slot]
    before = [p.detach().clone() for p in op.parameters()]

    calls = []
    for step, (x, y) in enumerate(batches):
        step_ctx = StepContext(3, step, 4, skipping.train_stream.steps_per_epoch)
        calls.append(count_op_calls(skipping.supernet, lambda: skipping.weight_step(step_ctx, x, y)))
        full = count_op_calls(computing.supernet, lambda: computing.weight_step(step_ctx, x, y))
        assert calls[-1] < full  # the skip really skips
    for (name, a), b in zip(skipping.supernet.named_parameters(), computing.supernet.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(skipping.supernet.parameters(), computing.supernet.parameters()):
        assert torch.equal(skipping.w_opt.state[a]["momentum_buffer"], computing.w_opt.state[b]["momentum_buffer"])
    # The skipped op's weights still moved (weight decay through momentum), as in every reference.
    assert all(not torch.equal(p, q) for p, q in zip(op.parameters(), before))


def test_a_skipped_op_decays_by_the_closed_form_of_momentum_sgd():
    """With grad 0 each step, SGD(momentum μ, weight decay λ, lr η) gives m_t = λw_{t−1} + μ m_{t−1},
    w_t = w_{t−1} − η m_t: worked out by hand for three steps and compared with the skipped op's weights."""
    search = _late_sp_darts(skip=True)
    ctx, lr = search.begin_epoch()
    weights = search.relaxed(ctx, "weight")
    cell = search.supernet.cells[0]
    edge, slot = next((e, i) for e, mixed in enumerate(cell.edges) for i, s in enumerate(mixed.slots)
                      if weights["normal"][e, s] == 0 and list(mixed.ops[i].parameters()))
    p = next(cell.edges[edge].ops[slot].parameters())
    w, m = p.detach().clone().double(), torch.zeros_like(p, dtype=torch.float64)
    lam, mu = search.cfg.weight_decay, search.cfg.momentum
    for step in range(3):
        x, y = next(search.train_stream)
        search.weight_step(StepContext(3, step, 4, search.train_stream.steps_per_epoch), x, y)
        step_weights = search.relaxed(StepContext(3, step, 4, search.train_stream.steps_per_epoch), "weight")
        assert step_weights["normal"][edge, cell.edges[edge].slots[slot]] == 0
        m = lam * w + (mu * m if step else 0.0)
        w = w - lr * m
    torch.testing.assert_close(p.detach().double(), w, rtol=1e-6, atol=1e-9)


# ---- NAS-Bench-201: 5 cells per stage ------------------------------------------------------------------------------
# AutoDL TinyNetworkDARTS (C=16, N=5, CIFAR-10), by hand: 15 search cells × 6 edges × (1x1 + 3x3 convs, BN without
# affine) = 60·5·(16² + 32² + 64²) = 1,612,800; two residual blocks 14,464 + 57,600; stem conv+BN 432 + 32;
# last BN 128; classifier 64·10 + 10 = 650.
NB201_SUPERNET_PARAMS = 1_612_800 + 14_464 + 57_600 + 464 + 128 + 650


@pytest.mark.parametrize("method", sorted(PRESETS))
def test_every_nb201_search_builds_15_cells(method):
    cfg = search_config({"method": method, "space": "nb201"})
    assert cfg.layers == 5
    with torch.device("meta"):
        net = Supernet("nb201", cfg.init_channels, cfg.layers, 10, 3, edge_extra=make_recipe(cfg).edge_extra)
    assert net.cell_types.count("normal") == 15 and net.cell_types.count("resblock") == 2
    if method == "darts":
        assert count_parameters(net) == NB201_SUPERNET_PARAMS == 1_686_106


def test_dry_run_shows_lambda_darts_nb201_recipe_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["search", "--space", "nb201", "--method", "lambda-darts", "--dataset",
                                      "cifar10", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["cells"] == 15 and info["layers"] == 5 and info["supernet_params"] == NB201_SUPERNET_PARAMS
    # Λ-DARTS' NAS-Bench-201 scripts (spec D §3.4): 100 epochs, arch lr 1e-4, λ 0.25, ε₀ 1e-4, weight step first.
    assert (info["epochs"], info["arch_lr"], info["step_order"]) == (100, 1e-4, "weight-first")
    assert info["method_options"]["lambda"] == 0.25 and info["method_options"]["epsilon_0"] == 1e-4
    assert info["recipe"]["family"] == "LambdaDarts" and info["recipe"]["space_kind"] == "nb201"
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(app, ["search", "--method", "sp-darts-s1s4", "--space", "s3", "--dry-run", "--json",
                                      "--set", "epochs=7", "--preset", "tiny"])
    info = json.loads(result.output)
    assert info["arch_weight_decay"] == 0.0 and info["epochs"] == 7 and info["cells"] == 5
    assert info["init_channels"] == 8  # tiny sizes over the preset's settings, --set over both
    assert list(tmp_path.iterdir()) == []


# ---- recipes follow the space, from the cited code ---------------------------------------------------------------
def _cfg(method, space, **over):
    return search_config({"method": method, "space": space, **over})


def test_arch_weight_decay_of_the_presets():
    # SmoothDARTS/sota/cnnmul/train_search.py:59 --arch_weight_decay defaults to 0.0; PCDEDD's cyclic and entropy
    # scripts use 0; LHD's shared recipe has none; DARTS and RobustDARTS use 1e-3.
    for method in ("sp-darts-s1s4", "sp-darts", "sp-darts-lhd", "small-temp-exp", "small-temp-cyclic",
                   "small-temp-entropy"):
        assert _cfg(method, "s3").arch_weight_decay == 0.0, method
    assert _cfg("darts", "darts").arch_weight_decay == 1e-3
    assert _cfg("rdarts-l2", "s3").arch_weight_decay == 1e-3
    assert _cfg("darts", "lhd").arch_weight_decay == 0.0


def test_recipes_follow_the_space():
    # LHD's recipe only on LHD: GDAS batch 256 / lr 0.05 there, DARTS' batch 64 elsewhere.
    assert (_cfg("gdas", "lhd").batch_size, _cfg("gdas", "lhd").lr) == (256, 0.05)
    assert (_cfg("gdas", "darts").batch_size, _cfg("gdas", "darts").lr) == (64, 0.025)
    assert _cfg("milenas", "darts").batch_size == 64 and _cfg("milenas", "lhd").batch_size == 176
    # DARTS, DARTS- and β-DARTS get LHD's recipe on LHD (β-DARTS with its batch 128).
    assert _cfg("darts", "lhd").batch_size == 176 and _cfg("darts-minus", "lhd").lr_min == 3e-4
    assert _cfg("beta-darts", "lhd").batch_size == 128 and _cfg("beta-darts", "nb201").epochs == 100
    # NB201 on AutoDL's DARTS-V1: Nesterov, wd 5e-4, weight step first; R-DARTS(L2) keeps its larger wd.
    nb = _cfg("darts", "nb201")
    assert (nb.nesterov, nb.weight_decay, nb.step_order, nb.layers) == (True, 5e-4, "weight-first", 5)
    assert _cfg("rdarts-l2", "nb201").weight_decay == 27e-4
    # The generic SP-DARTS preset picks the code that ran on each kind of space.
    assert [_cfg("sp-darts", s).method_options["variant"] for s in ("darts", "s2", "lhd", "nb201")] == \
        ["darts", "s1-s4", "lhd", "nb201-10"]
    # The user's choice wins over every layer.
    assert _cfg("gdas", "lhd", batch_size=32).batch_size == 32


def test_nesterov_and_weight_first_reach_the_loop():
    search = Search(tiny_config("darts", "nb201"), None, progress=False)
    assert search.w_opt.param_groups[0]["nesterov"] is True
    order = []
    arch_step, weight_step = search.arch_step, search.weight_step
    search.arch_step = lambda *a: order.append("arch") or arch_step(*a)
    search.weight_step = lambda *a: order.append("weight") or weight_step(*a)
    search.run()
    assert order == ["weight", "arch"] * 2
    order.clear()
    darts = Search(tiny_config("darts", "s3"), None, progress=False)
    darts.arch_step = lambda *a: order.append("arch") or arch_step.__func__(darts, *a)
    darts.weight_step = lambda *a: order.append("weight") or weight_step.__func__(darts, *a)
    darts.run()
    assert order == ["arch", "weight"] * 2


def test_cutout_follows_each_methods_code():
    at = [StepContext(epoch=e, epochs=11) for e in (0, 5, 10)]
    # RobustDARTS: cutout off without drop path, ramped e/(E−1) with it.
    assert [make_recipe(_cfg("rdarts-l2", "s3", cutout=16)).cutout_prob(c) for c in at] == [0.0, 0.0, 0.0]
    assert [make_recipe(_cfg("rdarts-dp", "s3")).cutout_prob(c) for c in at] == [0.0, 0.5, 1.0]
    # SDARTS, Λ-DARTS, β-DARTS ramp it whatever the drop path.
    for method in ("sdarts-rs", "sdarts-adv", "lambda-darts", "beta-darts"):
        assert [make_recipe(_cfg(method, "s3", cutout=16)).cutout_prob(c) for c in at] == [0.0, 0.5, 1.0]
    # The DARTS code applies --cutout to every batch.
    assert make_recipe(_cfg("darts", "s3", cutout=16)).cutout_prob(at[0]) == 1.0


# ---- the eigenvalue diagnostic ------------------------------------------------------------------------------------
def test_eigenvalue_is_softmax_at_tau_one_whatever_the_steps_random_state():
    cfg = tiny_config("sp-darts", "s2", epochs=3, hessian_every=1)
    search = Search(cfg, None, progress=False)
    search.run(stop_after=1)
    values = []
    for draw in range(3):  # other SP-DARTS coin flips, other step τ's
        search.recipe.generator.manual_seed(100 + draw)
        search.recipe.drawn_epoch = -1
        search.begin_epoch()
        record = {}
        search.diagnostics(record)
        values.append(record["eigenvalue"])
    assert values[0] == values[1] == values[2]
    from robustdarts.data import BatchStream
    stream = BatchStream(search.val_set, cfg.batch_size, search.augment, cfg.seed * 1000 + search.epoch,
                         search.device)
    reference = arch_hessian(search.supernet, search.arch, [next(stream)], relax=mixing_weights,
                             arch_weight_decay=cfg.arch_weight_decay)["eigenvalue"]
    assert values[0] == pytest.approx(float(reference), rel=1e-6)
    # The option: the method's own deterministic relaxation (SP-DARTS validates at τ_s/10), a different landscape.
    search.cfg.hessian_relax = "method"
    record = {}
    search.diagnostics(record)
    assert record["eigenvalue"] != pytest.approx(values[0], rel=1e-3)


def test_one_derivation_path_for_the_loop_and_derive(tmp_path):
    search = Search(tiny_config("sp-darts", "darts", epochs=2), tmp_path / "run", progress=False)
    genotype = search.run()
    derived, epoch = derive_from_run(tmp_path / "run")
    assert epoch == 1 and derived == genotype


def test_methods_listing_filters_and_shows_the_effective_recipe():
    result = CliRunner().invoke(app, ["methods", "--filter", "sp-*", "--space", "nb201", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == sorted(n for n in PRESETS if n.startswith("sp-"))
    generic = next(r for r in rows if r["name"] == "sp-darts")
    assert generic["effective"]["nesterov"] is True and generic["effective_options"]["variant"] == "nb201-10"
    result = CliRunner().invoke(app, ["methods", "--filter", "nothing-*"])
    assert result.exit_code != 0


@pytest.mark.parametrize("method,option,value,allowed", [
    ("lambda-darts", "lambda", -0.1, ">= 0"), ("gdas", "tau_end", 0.0, "> 0"), ("sdarts-adv", "attack_steps", 0, ">= 1"),
    ("small-temp-entropy", "decay_strength", -1.0, "> 0"), ("darts-ada", "values", [3e-4, -1.0], ">= 0"),
    ("pc-darts", "arch_warmup", -1, ">= 0"), ("drnas", "kl_prior", 0.0, "> 0")])
def test_method_options_out_of_range_are_one_sentence_before_a_run(method, option, value, allowed, tmp_path):
    """An option outside its range (a negative λ, a zero temperature) is refused with the option, the value and
    the range, when the config is resolved; in range the same option resolves."""
    from robustdarts.errors import RobustDartsError
    with pytest.raises(RobustDartsError, match=f"option '{option}' is .*must be {allowed}"):
        search_config({"method": method, "space": "s2", "method_options": {option: value}})
    res = CliRunner().invoke(app, ["search", "--method", method, "--space", "s2", "--preset", "tiny", "--dry-run",
                                   "--out", str(tmp_path / "run"), "--set", f"method.{option}={value}"])
    assert isinstance(res.exception, RobustDartsError) and "must be" in str(res.exception)
    assert not (tmp_path / "run").exists()


def test_every_presets_own_options_are_within_their_ranges():
    for name, preset in PRESETS.items():
        for kind in ("darts", "s1s4", "lhd", "nb201"):
            space = {"darts": "darts", "s1s4": "s2", "lhd": "lhd", "nb201": "nb201"}[kind]
            try:
                make_recipe(search_config({"method": name, "space": space}))
            except Exception as err:  # a preset not offered on a space says so in words, never by a range
                assert "must be" not in str(err), (name, space, err)
