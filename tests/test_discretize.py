"""Discretization policies against independent truth: the LHD decoded example (spec L §1.5), the 135 released
LHD files, and hand-worked DARTS, S1, NB201 and LHD weights."""

from __future__ import annotations

import re

import pytest
import torch

from robustdarts.discretize import POLICIES, derive, register_policy
from robustdarts.errors import RobustDartsError
from robustdarts.genotype import Genotype, validate
from robustdarts.lhd_pl import genotype_from_pl, load_pl, pl_weights
from robustdarts.relax import mixing_weights
from robustdarts.spaces import get_space

from conftest import LHD_RESULTS as RESULTS
EXAMPLE = RESULTS / "cifar10/darts_bilevel/20211010-140512-concate-sum-darts-bilevel.pl"
needs_lhd_data = pytest.mark.skipif(not EXAMPLE.exists(), reason="LHD reference files not present")

SKIP, MAX, AVG = "skip_connect", "max_pool_3x3", "avg_pool_3x3"
SEP3, SEP5, DIL3, DIL5 = "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"


def assert_one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    assert not re.search(r"\.\s+[A-Z]", message), f"more than one sentence: {message}"
    return message


# ---- LHD: the decoded example of spec L §1.5 ------------------------------------------------------------------
@needs_lhd_data
def test_lhd_base_reproduces_the_decoded_example():
    genotype = genotype_from_pl(EXAMPLE, "base")
    assert genotype.normal == (
        (SKIP, 0, 0), (SEP5, 0, 0), (SKIP, 2, 1), (SEP3, 0, 1), (SEP3, 1, 2), (SEP3, 0, 2), (SEP3, 0, 3),
        (SEP3, 3, 3), (SKIP, 4, 4), (DIL3, 0, 4))
    assert genotype.normal_output.sum == (2, 4) and genotype.normal_output.concat == (3, 4, 2)
    assert genotype.reduce == (
        (AVG, 1, 0), (MAX, 1, 0), (AVG, 0, 1), (SEP5, 2, 1), (SEP5, 2, 2), (AVG, 0, 2), (DIL3, 0, 3), (AVG, 0, 3))
    assert genotype.reduce_output.sum == (3, 2, 1) and genotype.reduce_output.concat == (0, 2, 1)
    # "Node 1 is in neither set but is kept, because node 3 consumes it"; "Node 4 is pruned" (reduce).
    assert 1 not in {*genotype.normal_output.sum, *genotype.normal_output.concat}
    assert any(node == 1 for _, _, node in genotype.normal)
    assert all(node != 4 for _, _, node in genotype.reduce)
    assert genotype == derive("lhd", pl_weights(load_pl(EXAMPLE)))  # lhd is the default policy of the lhd space


@needs_lhd_data
def test_lhd_4out_and_3ops_of_the_decoded_example():
    base = genotype_from_pl(EXAMPLE, "base")
    four = genotype_from_pl(EXAMPLE, "4out")
    # Top-4 by weight (values in L §1.5): normal sum .235 .225 .191 .187, gates .427 .401 .391 .367;
    # reduce sum .240 .203 .201 .185, gates .573 .499 .494 .457.
    assert four.normal_output.sum == (2, 4, 3, 0) and four.normal_output.concat == (3, 4, 2, 0)
    assert four.reduce_output.sum == (3, 2, 1, 4) and four.reduce_output.concat == (0, 2, 1, 3)

    def outputs(g, cell):
        out = getattr(g, f"{cell}_output")
        return {*out.sum, *out.concat}

    # "4out adds node 0 (normal) and node 4 (reduce) to both output sets."
    assert outputs(four, "normal") - outputs(base, "normal") == {0}
    assert outputs(four, "reduce") - outputs(base, "reduce") == {4}
    assert four.normal == base.normal  # every normal node was already kept
    assert four.reduce[:len(base.reduce)] == base.reduce and {n for *_, n in four.reduce[len(base.reduce):]} == {4}

    three = genotype_from_pl(EXAMPLE, "3ops")  # "3ops keeps 3 pairs per node", outputs as in Base
    assert three.normal_output == base.normal_output and three.reduce_output == base.reduce_output
    for cell in ("normal", "reduce"):
        for node_pairs, base_pairs in zip(three.node_inputs(cell), base.node_inputs(cell)):
            assert len(node_pairs) == 3 and node_pairs[:2] == base_pairs


@needs_lhd_data
def test_every_released_lhd_file_loads_validates_and_derives():
    files = sorted(RESULTS.glob("**/*.pl"))
    assert len(files) == 135
    space = get_space("lhd")
    for path in files:
        weights = pl_weights(load_pl(path))
        sp_darts = "sp" in path.parent.name
        for condition, k in (("base", 2), ("3ops", 3), ("4out", 2)):
            genotype = validate(derive(space, weights, condition=condition), space)
            for cell in ("normal", "reduce"):
                assert all(len(p) in (0, k) for p in genotype.node_inputs(cell)), (path, condition)
                out = getattr(genotype, f"{cell}_output")
                if condition == "4out":
                    assert len(out.sum) == len(out.concat) == 4
                elif sp_darts:  # τ = 0.0015: the sum softmax is one-hot, so one sum node (L §4.1)
                    assert len(out.sum) == 1, path
        assert derive(space, weights, condition="1m") == derive(space, weights, condition="base")


# ---- LHD: hand-set weights ------------------------------------------------------------------------------------
def _lhd_weights(alpha_cells, beta_cells):
    space = get_space("lhd")
    return mixing_weights(space, alpha_cells, beta_cells)


def test_lhd_uniform_weights_fall_back_to_the_argmax_and_break_ties_low():
    space = get_space("lhd")
    zeros = {c: torch.zeros(space.alpha_shape(c)) for c in space.cell_types}
    weights = _lhd_weights(zeros, {c: torch.zeros(2, 5) for c in space.cell_types})
    genotype = derive(space, weights)
    # Every sum weight is exactly 0.2 and every gate equals the mean: strict thresholds choose nothing, so each
    # set falls back to its argmax, node 0; the two pairs are flat indices 0 and 1 of node 0.
    for cell in ("normal", "reduce"):
        assert getattr(genotype, f"{cell}_output").sum == (0,) and getattr(genotype, f"{cell}_output").concat == (0,)
        assert genotype.genes(cell) == ((MAX, 0, 0), (AVG, 0, 0))
    four = derive(space, weights, condition="4out")
    assert four.normal_output.sum == four.normal_output.concat == (0, 1, 2, 3)
    assert four.node_inputs("normal")[:4] == (((MAX, 0), (AVG, 0)),) * 4 and four.cell_num_nodes("normal") == 4


def test_lhd_pruning_is_a_closure_over_kept_edges():
    space = get_space("lhd")
    alpha = torch.zeros(space.alpha_shape("normal"))
    ops = space.ops["normal"][0]

    def favour(node, source, op, logit):
        alpha[space.node_edges(node)[source], ops.index(op)] = logit

    favour(4, 5, SEP3, 5.0), favour(4, 0, MAX, 4.0)  # node 4 reads n3
    favour(3, 3, SKIP, 5.0), favour(3, 1, MAX, 4.0)  # node 3 reads n1
    favour(1, 0, AVG, 5.0), favour(1, 1, AVG, 4.0)  # node 1 reads only cell inputs
    favour(2, 2, SEP5, 5.0), favour(2, 3, SEP5, 4.0)  # node 2 reads n0 and n1 but nobody reads node 2
    beta = torch.zeros(2, 5)
    beta[0, 4], beta[1, 4] = 5.0, 3.0  # only node 4 feeds the outputs
    genotype = derive(space, _lhd_weights({"normal": alpha, "reduce": alpha}, {"normal": beta, "reduce": beta}))
    assert genotype.normal_output.sum == (4,) and genotype.normal_output.concat == (4,)
    assert genotype.normal == ((AVG, 0, 1), (AVG, 1, 1), (SKIP, 3, 3), (MAX, 1, 3), (SEP3, 5, 4), (MAX, 0, 4))
    assert genotype.reduce == genotype.normal


def test_lhd_options_and_conditions():
    space = get_space("lhd")
    zeros = {c: torch.zeros(space.alpha_shape(c)) for c in space.cell_types}
    weights = _lhd_weights(zeros, {c: torch.zeros(2, 5) for c in space.cell_types})
    assert derive(space, weights, condition="4OUT") == derive(space, weights, sum_elem=0, sum_cum=4, cat=4)
    assert len(derive(space, weights, k_ops=4).normal) == 4
    with pytest.raises(RobustDartsError) as error:
        derive(space, weights, condition="5out")
    assert "3ops" in assert_one_sentence(error)
    with pytest.raises(RobustDartsError) as error:
        derive(space, weights, k_ops=0)
    assert_one_sentence(error)
    del weights["reduce_cat"]
    with pytest.raises(RobustDartsError) as error:
        derive(space, weights)
    assert "'reduce_cat'" in assert_one_sentence(error)


# ---- DARTS rule ------------------------------------------------------------------------------------------------
def test_s1_derives_the_favoured_op_of_each_edge_own_list():
    """S1's op lists differ per edge and hold no `none` (the RobustDARTS parser bug of D §6.2)."""
    space = get_space("s1")
    # Inputs each node should keep, strongest first (node 3 has inputs 0..4).
    picks = {"normal": {0: (1, 0), 1: (2, 0), 2: (3, 1), 3: (4, 2)},
             "reduce": {0: (0, 1), 1: (1, 2), 2: (0, 3), 3: (3, 1)}}
    alphas, expected = {}, {}
    for cell, chosen in picks.items():
        alpha = torch.zeros(space.alpha_shape(cell))
        genes = []
        for node, (first, second) in chosen.items():
            for source, row in enumerate(space.node_edges(node)):
                # Favour the edge's second op everywhere; the margin decides which edges survive.
                alpha[row, 1] = 3.0 if source == first else 2.0 if source == second else 1.0
            genes += [(space.ops[cell][space.node_edges(node)[s]][1], s) for s in (first, second)]
        alphas[cell], expected[cell] = alpha, tuple(genes)
    genotype = derive(space, mixing_weights(space, alphas))
    assert genotype.normal == expected["normal"] and genotype.reduce == expected["reduce"]
    assert genotype.normal[:2] == (("dil_conv_5x5", 1), ("dil_conv_3x3", 0))  # e1 and e0 of the D §2.1 table
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5) and genotype.space == "s1"
    validate(genotype)


def _darts_hand_weights() -> torch.Tensor:
    """14x8 probabilities over (none, max, avg, skip, sep3, sep5, dil3, dil5); uniform rows unless set."""
    W = torch.full((14, 8), 1 / 8)

    def row(edge, **ops):
        names = get_space("darts").ops["normal"][edge]
        rest = (1 - sum(ops.values())) / (8 - len(ops))
        W[edge] = torch.tensor([ops.get(n, rest) for n in names])

    row(0, none=0.58, sep_conv_3x3=0.12)  # none dominates, yet node 0 must take both of its edges
    row(3, none=0.3, dil_conv_5x5=0.3)
    row(4, skip_connect=0.3, sep_conv_3x3=0.3)  # op tie: skip comes first; edge tie with e3: lower input wins
    row(7, sep_conv_5x5=0.2)
    row(8, none=0.9)  # the strongest weight is none: the edge scores ~0.014 and loses
    row(12, avg_pool_3x3=0.13)
    row(13, none=0.95)
    return W


def test_darts_hand_worked_case_with_none_and_ties():
    W = _darts_hand_weights()
    genotype = derive("darts", {"normal": W, "reduce": torch.full((14, 8), 1 / 8)})
    assert genotype.normal == (
        (MAX, 1), (SEP3, 0),  # e1 (uniform .125) beats e0 (.12 after ignoring none .58)
        (DIL5, 1), (SKIP, 2),  # e3 and e4 tie at .3; e3 has the lower input
        (SEP5, 2), (MAX, 0),  # e7 .2, then the e5/e6 tie goes to s0; e8 (none .9) is out
        (AVG, 3), (MAX, 0),  # e12 .13, then s0 among the uniform edges; e13 (none .95) is out
    )
    assert genotype.reduce == ((MAX, 0), (MAX, 1)) * 4  # all ties: lower input, first op
    assert genotype.normal_concat == (2, 3, 4, 5)
    validate(genotype, "darts")
    # The same weights without the `none` column give the same genotype in the 7-op space.
    assert derive("darts-7", {"normal": W[:, 1:], "reduce": torch.full((14, 7), 1 / 7)}).normal == genotype.normal


def test_darts_s3_with_none_first():
    space = get_space("s3")  # (none, skip, sep3) on every edge
    W = torch.tensor([[0.8, 0.05, 0.15]] * 14)
    genotype = derive(space, {"normal": W, "reduce": W})
    assert genotype.normal == ((SEP3, 0), (SEP3, 1)) + ((SEP3, 0), (SEP3, 1)) * 3


# ---- NB201 rule ------------------------------------------------------------------------------------------------
def test_nb201_argmax_includes_none():
    # ops: none, skip, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3; edges (node, source): (0,0) (1,0) (1,1) (2,0) ...
    W = torch.full((6, 5), 0.2)
    W[0] = torch.tensor([0.6, 0.1, 0.1, 0.1, 0.1])
    W[2] = torch.tensor([0.1, 0.1, 0.1, 0.6, 0.1])
    W[5] = torch.tensor([0.1, 0.3, 0.1, 0.2, 0.3])  # skip and avg tie: the first wins
    genotype = derive("nb201", {"normal": W})
    assert genotype.to_nb201() == ("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    assert Genotype.from_nb201(genotype.to_nb201()) == genotype
    validate(genotype)


# ---- registry and errors ---------------------------------------------------------------------------------------
def test_policy_registry_and_errors():
    assert {"darts", "nb201", "lhd"} <= set(POLICIES)
    W = torch.full((14, 8), 1 / 8)
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": W, "reduce": W}, policy="magic")
    assert "darts" in assert_one_sentence(error) and "lhd" in str(error.value)
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": W, "reduce": W}, policy="lhd")
    assert assert_one_sentence(error).endswith("use one of: darts.")
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": W, "reduce": W}, k_ops=3)
    assert "'k_ops'" in assert_one_sentence(error)
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": W, "reduce": W[:, :7]})
    assert "(14, 8)" in assert_one_sentence(error)
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": W, "reduce": [W, W]})
    assert_one_sentence(error)
    nan = W.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(RobustDartsError) as error:
        derive("darts", {"normal": nan, "reduce": W})
    assert_one_sentence(error)


def test_a_new_policy_plugs_in_beside_the_first_ones():
    @register_policy("first-edges-skip", kinds=("darts",))
    def first_edges(space, weights, op="skip_connect"):
        """Test policy: inputs 0 and 1 of every node with one op."""
        genes = tuple((op, s) for _ in range(space.steps) for s in (0, 1))
        return Genotype(kind="darts", normal=genes, reduce=genes, normal_concat=range(2, 6),
                        reduce_concat=range(2, 6), space=space.name)

    try:
        W = torch.full((14, 2), 0.5)
        genotype = derive("s2", {"normal": W, "reduce": W}, policy="first-edges-skip", op="sep_conv_3x3")
        assert genotype.normal[:2] == ((SEP3, 0), (SEP3, 1))
        assert POLICIES["first-edges-skip"].description.startswith("Test policy")
    finally:
        del POLICIES["first-edges-skip"]
