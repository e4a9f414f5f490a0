"""The model layer against independent truth: published/computed parameter counts, op-call counts, shapes."""

import pytest
import torch
import torch.nn as nn

from robustdarts.archparams import ArchParams
from robustdarts.discretize import derive
from robustdarts.errors import RobustDartsError
from robustdarts.evalnet import EvalNetwork
from robustdarts.genotype import Genotype
from robustdarts.lhd_pl import genotype_from_pl
from robustdarts.relax import arch_weights, detached
from robustdarts.spaces import SPACES, get_space, make_op
from robustdarts.supernet import Supernet, count_op_calls, count_parameters
from robustdarts.zoo import get_genotype

from conftest import LHD_EXAMPLE


# Spec D §1.3 / §6.4: CIFAR-10, C=16, 8 cells, α excluded (= the "param size" that DARTS' train_search.py logs).
@pytest.mark.parametrize("space,expected", [("darts", 1_930_618), ("darts-7", 1_930_618), ("s1", 405_146),
                                            ("s2", 665_466), ("s3", 665_466), ("s4", 624_506)])
def test_supernet_parameter_counts(space, expected):
    net = Supernet(space, C=16, layers=8, num_classes=10)
    assert count_parameters(net) == expected
    assert count_parameters(Supernet(space, C=16, layers=8, num_classes=100)) == expected + 23_130


def test_arch_params_are_kept_apart_from_weights():
    net, arch = Supernet("darts", 4, 3), ArchParams("darts")
    weight_ids = {id(p) for p in net.parameters()}
    assert all(id(p) not in weight_ids for p in arch.parameters())
    assert {k for k in arch.state_dict()} == {"alphas.normal", "alphas.reduce"}
    assert arch.alphas["normal"].shape == (14, 8)
    lhd = ArchParams("lhd")
    assert lhd.alphas["normal"].shape == (20, 7) and lhd.betas["reduce"].shape == (2, 5)
    assert get_space("darts").num_alpha == 224 and get_space("s3").num_alpha == 84


def test_darts_v2_eval_network_parameters():
    # Spec D §1.8: C=36, 20 cells, CIFAR-10: 3,349,342 without the auxiliary head, 476,426 for it.
    net = EvalNetwork(get_genotype("darts_v2"), C=36, layers=20, num_classes=10)
    assert net.num_parameters() == 3_349_342
    assert net.num_parameters(with_aux=True) - net.num_parameters() == 476_426


def test_imagenet_mobile_macro_matches_published_size():
    # The DARTS README: 4.7M parameters for DARTS_V2 in the mobile setting (C=48, 14 cells).
    net = EvalNetwork(get_genotype("darts_v2"), C=48, layers=14, num_classes=1000, macro="imagenet")
    assert 4_650_000 < net.num_parameters() < 4_750_000


def test_lhd_example_eval_network_parameters():
    # shared/data/lhd-archs/README.md: Base condition, C=36, 20 cells, CIFAR-10.
    net = EvalNetwork(genotype_from_pl(LHD_EXAMPLE, "base"), C=36, layers=20, num_classes=10)
    assert net.num_parameters() == 710_218
    assert net.num_parameters(with_aux=True) == 1_186_644


@pytest.mark.parametrize("space", list(SPACES))
def test_every_space_forward_backward_derive_roundtrip_and_build(space):
    torch.manual_seed(0)
    sp = get_space(space)
    layers = 1 if sp.kind == "nb201" else 3
    net, arch = Supernet(space, C=4, layers=layers, num_classes=10), ArchParams(space)
    x = torch.randn(2, 3, 8, 8)
    logits = net(x, arch_weights(arch))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    for p in list(arch.parameters()) + list(net.parameters()):
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    assert all(p.grad is not None for p in arch.parameters())
    genotype = derive(sp, detached(arch_weights(arch)))
    again = Genotype.from_json(genotype.to_json())
    assert again == genotype
    eval_net = EvalNetwork(again, C=4, layers=layers, num_classes=10)
    eval_net.train()
    out, aux = eval_net(x, drop_prob=0.2)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()


def test_zero_weight_ops_are_skipped_only_without_a_graph():
    torch.manual_seed(0)
    net, arch = Supernet("darts", C=4, layers=3, num_classes=10), ArchParams("darts")
    x = torch.randn(2, 3, 8, 8)
    dense = detached(arch_weights(arch))
    # 3 cells x 14 edges x 7 computed ops (`none` never is)
    assert count_op_calls(net, lambda: net(x, dense)) == 3 * 14 * 7
    one_hot = {c: torch.nn.functional.one_hot(w.argmax(-1), w.shape[-1]).float() for c, w in dense.items()}
    expected = sum(1 for c in net.cell_types for e in range(14) if one_hot[c][e].argmax() != 0)
    assert count_op_calls(net, lambda: net(x, one_hot)) == expected
    # With a graph to the weights every op runs: a zero weight still has a gradient.
    graph = {c: w.clone().requires_grad_(True) for c, w in one_hot.items()}
    assert count_op_calls(net, lambda: net(x, graph).sum().backward()) == 3 * 14 * 7
    assert graph["normal"].grad[:, 1:].abs().sum() > 0


def test_skipping_does_not_change_the_output():
    torch.manual_seed(0)
    net = Supernet("s2", C=4, layers=3, num_classes=10).eval()
    x = torch.randn(2, 3, 8, 8)
    w = {c: torch.tensor([[1.0, 0.0]] * 7 + [[0.0, 1.0]] * 7) for c in ("normal", "reduce")}
    skipped = net(x, w)
    full = net(x, {c: v.clone().requires_grad_(True) for c, v in w.items()})
    torch.testing.assert_close(skipped, full.detach())


def test_per_cell_weights_equal_shared_weights_when_identical():
    torch.manual_seed(0)
    net, arch = Supernet("s3", C=4, layers=5, num_classes=10).eval(), ArchParams("s3")
    shared = detached(arch_weights(arch))
    per_cell = {c: [shared[c].clone() for _ in range(net.cells_of(c))] for c in ("normal", "reduce")}
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net(x, shared), net(x, per_cell))
    # and a per-cell change affects the output
    per_cell["normal"][0] = torch.tensor([[0.0, 0.0, 1.0]] * 14)
    assert not torch.allclose(net(x, shared), net(x, per_cell))


def test_noise_op_ignores_its_input_and_stays_active_in_eval():
    op = make_op("noise", 4, 2).eval()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 4, 4, 4) and not y.requires_grad
    assert not torch.equal(op(x), y)


def test_search_ops_are_non_affine_and_eval_ops_affine():
    search = Supernet("darts", C=4, layers=3)
    cell_bns = [m for c in search.cells for m in c.modules() if isinstance(m, nn.BatchNorm2d)]
    assert cell_bns and all(not bn.affine for bn in cell_bns)
    eval_net = EvalNetwork(get_genotype("darts_v2"), C=4, layers=3)
    eval_bns = [m for c in eval_net.cells for m in c.modules() if isinstance(m, nn.BatchNorm2d)]
    assert eval_bns and all(bn.affine for bn in eval_bns)
    # LHD keeps the non-affine BN after pools in its evaluation network
    pool = make_op("max_pool_3x3", 4, 1, family="lhd", affine=True)
    assert isinstance(pool[1], nn.BatchNorm2d) and not pool[1].affine


def test_shared_relu_leaves_parameters_and_outputs_unchanged():
    torch.manual_seed(0)
    a = make_op("sep_conv_3x3", 4, 1, affine=False)
    b = make_op("sep_conv_3x3", 4, 1, affine=False, shared_relu=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(a(x), b(torch.relu(x)))


def test_unknown_names_are_user_errors():
    with pytest.raises(RobustDartsError, match="unknown search space 'bogus'"):
        get_space("bogus")
    with pytest.raises(RobustDartsError, match="unknown op"):
        make_op("conv_9x9", 4, 1)
    with pytest.raises(RobustDartsError, match="cannot use"):
        EvalNetwork(genotype_from_pl(LHD_EXAMPLE), C=4, layers=3, macro="imagenet")


@pytest.mark.parametrize("space", ["s2", "lhd", "nb201"])
def test_darts_minus_aux_skip_adds_a_scaled_identity_on_every_edge(space):
    from robustdarts.methods.regularized import auxiliary_skip

    torch.manual_seed(0)
    sp = get_space(space)
    net = Supernet(space, C=4, layers=1 if sp.kind == "nb201" else 3, edge_extra=auxiliary_skip).eval()
    plain = Supernet(space, C=4, layers=1 if sp.kind == "nb201" else 3).eval()
    if sp.kind != "nb201":  # FactorizedReduce skips on the stride-2 edges of reduction cells
        assert count_parameters(net) > count_parameters(plain)
    arch = ArchParams(space)
    x = torch.randn(2, 3, 8, 8)
    w = detached(arch_weights(arch))
    assert not torch.allclose(net(x, w, extra_scale=1.0), net(x, w, extra_scale=0.0))


def test_an_nb201_genotype_of_more_nodes_runs_every_node():
    """A space given as data may have more nodes than NB-201's 3: the evaluation cell takes the genotype's own node
    count and returns its last node (a fixed 3 built node 3's op, counted its parameters and never ran it). Truth:
    the output moves when, and only when, node 3's op moves."""
    import torch

    from robustdarts.evalnet import Nb201EvalCell
    from robustdarts.genotype import Genotype

    three = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    genotype = Genotype.from_nb201(three + "+|nor_conv_1x1~0|none~1|none~2|skip_connect~3|", space=None)
    net = EvalNetwork(genotype, C=4, layers=1, num_classes=10).eval()
    cells = [m for m in net.modules() if isinstance(m, Nb201EvalCell)]
    assert cells and all(c.steps == 4 for c in cells)
    x = torch.randn(2, 3, 8, 8)
    before = net(x)[0]
    last = cells[0].ops[len(cells[0].genes) - 2]  # nor_conv_1x1 from input 0 into node 3 (the nones dropped)
    with torch.no_grad():
        for p in last.parameters():
            p.add_(1.0)
    assert not torch.allclose(before, net(x)[0])
    assert [c.steps for c in EvalNetwork(Genotype.from_nb201(three), C=4, layers=1).modules()
            if isinstance(c, Nb201EvalCell)] == [3, 3, 3]
