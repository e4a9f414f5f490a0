"""The zero-weight skip changes nothing but time (issue 25, fidelity 1).

The truth is the supernet with the skip off: every op computed as 0·op(x), as the references compute it (the
SmoothDARTS, SP-DARTS and DARTS code) — except GDAS', which runs only the sampled op (and so does ours, skip or not). A skipped op still moves its BN running statistics in training passes and
still draws its random numbers, so the eval-mode passes during a search — SDARTS-ADV's PGD attack at every step,
the epoch-end supernet validation — read what they would read with every op computed.
"""

from __future__ import annotations

import torch

from conftest import tiny_config
from robustdarts.search.loop import Search
from robustdarts.speed import REFERENCE_ORDER
from robustdarts.supernet import Supernet, count_op_calls


def _search(method: str, space: str, skip: bool, **overrides) -> tuple[Search, list[dict]]:
    """A tiny search run to its end with the skip on or off; returns it and its epoch records."""
    # Bit-exact on the NCHW path; with mix_in_bn (a CPU default) the skip agrees to float rounding (speed.py).
    search = Search(tiny_config(method, space, skip_zero_ops=skip, **{**REFERENCE_ORDER, **overrides}), None,
                    progress=False)
    records: list[dict] = []
    search.epoch_hooks = (lambda s, record: records.append(dict(record)),)
    search.run()
    return search, records


def _assert_same_search(skipping: Search, computing: Search, records: tuple[list, list]) -> None:
    a, b = skipping.arch.as_dict(), computing.arch.as_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-7), key
    assert skipping.genotype == computing.genotype
    for (name, x), y in zip(skipping.supernet.state_dict().items(), computing.supernet.state_dict().values()):
        assert torch.allclose(x.double(), y.double(), rtol=0, atol=1e-6), name  # running statistics included
    for mine, truth in zip(*records):
        for key in ("train_loss", "val_loss", "val_acc", "skip_normal"):
            assert mine[key] == truth[key], (mine["epoch"], key)


def test_sdarts_adv_takes_the_same_steps_with_and_without_the_skip():
    """SDARTS-ADV at ε 0.3 from the first step (the simplex clip zeroes many probabilities): its PGD attack runs in
    eval mode on the running statistics of ops that the weight steps before it skipped. 4 steps (2 epochs of 2),
    2 attack steps each (a size: the attack is the same at 7). Before the fix α differed by 1e-3 here and the
    genotype changed."""
    overrides = dict(epochs=2, method_options={"epsilon_min": 0.3, "attack_steps": 2})
    skipping, on = _search("sdarts-adv", "darts", True, **overrides)
    computing, off = _search("sdarts-adv", "darts", False, **overrides)
    _assert_same_search(skipping, computing, (on, off))
    # The skip did skip, and kept statistics current where it did: a weight step now, with the attack's ε.
    x, y = next(skipping.train_stream)
    ctx = skipping.context()
    step = lambda: skipping.weight_step(ctx, x, y)  # noqa: E731
    assert count_op_calls(skipping.supernet, step, statistics=True) > 0


def test_gdas_computes_only_the_sampled_op_as_its_reference_with_and_without_the_skip():
    """GDAS' reference (AutoDL / LHD: ``hardwts[i] * op(x) if i == index else hardwts[i]``) runs only the sampled op
    of an edge, so an unsampled op's BN statistics stay where they were and an unsampled ``noise`` op draws nothing.
    Here too, whether the skip is on or off (for GDAS the skip is the algorithm): the same α, genotype, validation
    metrics and buffers either way — the search forces the skip on for it, so the same code runs: what is checked
    is that it does, and that after one weight step exactly the sampled ops' statistics have moved and no
    side-effect forward ran."""
    skipping, _ = _search("gdas", "s4", False, epochs=1)  # asked not to skip: GDAS skips all the same
    assert skipping.supernet.skip_zero_ops
    assert not any(getattr(m, "keep_current", False) for m in skipping.supernet.modules())
    x, y = next(skipping.train_stream)
    ctx = skipping.context()
    weights = skipping.relaxed(ctx, "weight")
    before = {k: v.clone() for k, v in skipping.supernet.state_dict().items() if "running_mean" in k}
    skipping.supernet.train()
    assert count_op_calls(skipping.supernet, lambda: skipping.supernet(x, weights), statistics=True) == 0
    after = skipping.supernet.state_dict()
    for cell in skipping.supernet.cells:
        w = weights["reduce" if cell.reduction else "normal"]
        for e, edge in enumerate(cell.edges):
            for slot, op in zip(edge.slots, edge.ops):
                names = [n for n, _ in op.named_buffers() if n.endswith("running_mean")]
                prefix = next(k for k, m in skipping.supernet.named_modules() if m is op)
                moved = any(not torch.equal(before[f"{prefix}.{n}"], after[f"{prefix}.{n}"]) for n in names)
                assert moved == (bool(names) and float(w[e, slot]) != 0.0), (prefix, float(w[e, slot]))


def test_a_skipped_op_moves_its_statistics_only_in_training_passes():
    """Hand-checked on one edge: a zero-weighted conv op's BN running mean after one training step equals the one
    computed with the skip off; eval-mode and no-gradient passes (measurements) run nothing for a skipped op."""
    torch.manual_seed(0)
    nets = [Supernet("s3", C=4, layers=3, num_classes=10) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    nets[1].skip_zero_ops = False
    weights = {c: torch.zeros(14, 3) for c in ("normal", "reduce")}
    for w in weights.values():
        w[:, 1] = 1.0  # s3: none, skip_connect, sep_conv_3x3; the convs get weight 0
    x = torch.randn(4, 3, 8, 8)
    for net in nets:
        net(x, weights).sum().backward()
    conv = nets[0].cells[0].edges[0].ops[1]
    stats = [dict(n.cells[0].edges[0].ops[1].named_buffers()) for n in nets]
    assert stats[0]["3.running_mean"].abs().sum() > 0  # moved from its initial zeros
    for key in stats[1]:
        assert torch.equal(stats[0][key], stats[1][key]), key
    before = {k: v.clone() for k, v in conv.named_buffers()}
    with torch.no_grad():
        assert count_op_calls(nets[0], lambda: nets[0](x, weights), statistics=True) == 0  # a measurement
    nets[0].eval()
    assert count_op_calls(nets[0], lambda: nets[0](x, weights), statistics=True) == 0
    assert all(torch.equal(before[k], v) for k, v in conv.named_buffers())


def test_skipped_pooling_ops_reuse_the_shared_pool_and_move_the_same_statistics():
    """With share_pools, a skipped pooling op keeps its BN statistics current from the source's pooled input (the
    one an active edge made, or one made once for the skipped edges) instead of pooling again: the same buffers,
    bit for bit, as without share_pools, the same count of statistics forwards, and one pool per source and kind."""
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    nets = [Supernet("darts", 4, 3, 10, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    gen = torch.Generator().manual_seed(1)
    weights = {c: F.one_hot(torch.randint(0, 8, (14,), generator=gen), 8).float() for c in ("normal", "reduce")}
    x = torch.randn(8, 3, 8, 8, generator=gen)
    counts, pools = [], []
    for net, share in zip(nets, (False, True)):
        net.configure(share_pools=share)
        net.train()
        pooled = [0]
        hooks = [m.register_forward_hook(lambda *_: pooled.__setitem__(0, pooled[0] + 1))
                 for m in net.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
        counts.append(count_op_calls(net, lambda: net(x, weights), statistics=True))
        for h in hooks:
            h.remove()
        pools.append(pooled[0])
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), name
    assert counts[0] == counts[1] > 0
    sources = sum(len({src for _, src in net.space.edges}) for net in nets[:1] for _ in net.cells)
    assert pools[1] <= 2 * sources < pools[0]  # at most one max and one avg pool per source state


def test_stale_statistics_change_only_the_skipped_ops_statistics():
    """``skipped_statistics: stale`` (the fast opt-out): SDARTS-RS at ε 0.6 (the simplex clip zeroes some of S4's
    two probabilities per edge) on S4, whose ``noise`` op draws from the global generator: its draws still happen, so α, the
    genotype and every parameter equal the run that keeps statistics current, bit for bit; only skipped ops' BN
    running statistics differ (and so the eval-mode supernet validation may), and no statistics forward runs."""
    overrides = dict(epochs=2, method_options={"epsilon_min": 0.6, "epsilon_max": 0.6})
    current, _ = _search("sdarts-rs", "s4", True, **overrides)
    stale, _ = _search("sdarts-rs", "s4", True, skipped_statistics="stale", **overrides)
    for key, a in current.arch.as_dict().items():
        assert torch.equal(a, stale.arch.as_dict()[key]), key
    assert current.genotype == stale.genotype
    for (name, a), b in zip(current.supernet.named_parameters(), stale.supernet.parameters()):
        assert torch.equal(a, b), name
    differ = [name for (name, a), b in zip(current.supernet.named_buffers(), stale.supernet.buffers())
              if "running" in name and not torch.equal(a, b)]
    assert differ and all(".edges." in name for name in differ)  # stems, preprocessing: computed, current
    x, y = next(stale.train_stream)
    ctx = stale.context()
    assert count_op_calls(stale.supernet, lambda: stale.weight_step(ctx, x, y), statistics=True) == 0
    assert count_op_calls(current.supernet, lambda: current.weight_step(ctx, x, y), statistics=True) > 0


def test_stale_statistics_are_refused_where_the_search_reads_them():
    import pytest

    from robustdarts.errors import RobustDartsError
    from robustdarts.methods import make_recipe

    with pytest.raises(RobustDartsError, match="SDARTS-ADV's attack .* use skipped_statistics=current"):
        make_recipe(tiny_config("sdarts-adv", "darts", skipped_statistics="stale"))
    for every in (1, 0):  # per epoch, or only at the end (a bench grid's eigenvalue measure)
        with pytest.raises(RobustDartsError, match="hessian_bn_mode: eval"):
            make_recipe(tiny_config("darts", "darts", skipped_statistics="stale", hessian_every=every,
                                    hessian_bn_mode="eval"))
    for method, extra in (("sdarts-rs", {}), ("gdas", {}), ("darts", dict(hessian_every=1)),
                          ("sdarts-adv", dict(skip_zero_ops=False))):  # nothing read, or nothing skipped
        make_recipe(tiny_config(method, "darts", skipped_statistics="stale", **extra))
    with pytest.raises(RobustDartsError, match="'skipped_statistics' is 'old'; choose one of: current, stale"):
        tiny_config("darts", "darts", skipped_statistics="old")


def test_stale_statistics_are_refused_before_anything_is_written(tmp_path):
    """With nproc 2 the refusal comes before the run directory (space.yaml) is written or a rank spawned; a grid
    that selects by supernet_val_acc among stale searches is refused when planned."""
    import pytest

    from robustdarts.bench.grid import expand, grid_from_dict
    from robustdarts.errors import RobustDartsError

    from robustdarts.search.launch import SpawnedSearch

    cfg = tiny_config("sdarts-adv", "s3", skipped_statistics="stale", nproc=2)
    with pytest.raises(RobustDartsError, match="SDARTS-ADV's attack"):
        SpawnedSearch(cfg, tmp_path / "run")  # where the launcher refuses, before it writes or spawns anything
    assert not (tmp_path / "run").exists()
    grid = {"name": "g", "methods": [{"method": "sdarts-rs", "label": "rs"}, {"method": "darts", "label": "d"}],
            "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0],
            "search": {"epochs": 1, "layers": 3, "init_channels": 4, "skipped_statistics": "stale"},
            "select": [{"name": "best", "from": ["rs", "d"], "by": "supernet_val_acc"}]}
    with pytest.raises(RobustDartsError, match="select rule 'best' selects by supernet_val_acc, but method 'rs'"):
        expand(grid_from_dict(grid))
    grid["search"]["skipped_statistics"] = "current"
    assert expand(grid_from_dict(grid))
