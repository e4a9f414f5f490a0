"""Selective stop on hand-made archives whose magnitudes are known exactly (spec L §6.2)."""

import math

import pytest
import torch

from robustdarts.analysis.selective_stop import (default_target, magnitude_history, op_order, operation_magnitude,
                                                 selective_stop_epoch, selective_stop_report, selective_stop_scores)
from robustdarts.errors import RobustDartsError
from robustdarts.spaces import get_space

NB201 = get_space("nb201")  # ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3 (target), avg_pool_3x3


def _alpha(probs, edges=6):
    # Every edge row is log(p), so softmax(row) = p and the magnitude is edges·p.
    return torch.tensor([math.log(p) for p in probs], dtype=torch.float64).expand(edges, len(probs)).clone()


# Epoch: per-edge distribution. nor_conv_3x3 is argmax at 1, 2, 4; at 3 skip_connect leads while nor_conv_3x3
# reaches its largest magnitude (6·0.45 = 2.7) — an epoch the gated rule must not pick.
HISTORY = [
    [0.1, 0.4, 0.2, 0.2, 0.1],     # 0: bootstrap (target not yet on top), recorded: 1.2
    [0.1, 0.25, 0.2, 0.35, 0.1],   # 1: target on top: 2.1, bootstrap ends
    [0.1, 0.2, 0.2, 0.4, 0.1],     # 2: 2.4  <- e*
    [0.02, 0.5, 0.02, 0.45, 0.01],  # 3: gated out (ungated value 2.7)
    [0.1, 0.3, 0.15, 0.35, 0.1],   # 4: 2.1
]


def _archive(history=HISTORY):
    return [{"alpha/normal": _alpha(p)} for p in history]


def test_magnitude_is_column_sum_of_edge_softmax():
    m = operation_magnitude(_alpha(HISTORY[3]), NB201)
    assert m.tolist() == pytest.approx([6 * p for p in HISTORY[3]])
    assert op_order(NB201) == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    epochs, mags = magnitude_history(_archive(), NB201)
    assert epochs == [0, 1, 2, 3, 4] and mags.shape == (5, 5)


def test_gated_rule_ignores_peak_after_target_lost_the_lead():
    assert selective_stop_epoch(_archive(), NB201) == 2
    epochs, scores = selective_stop_scores(_archive(), NB201)
    assert scores == pytest.approx([1.2, 2.1, 2.4, 0.0, 2.1])
    assert selective_stop_epoch(_archive(), NB201, gated=False) == 3  # what the gate prevents


def test_res_o_variant():
    # r_e = Σ_o (m[o*] − m[o]) = 5·6·p* − 6; gated epochs get −10.
    _, scores = selective_stop_scores(_archive(), NB201, variant="res_o")
    assert scores == pytest.approx([0.0, 4.5, 6.0, -10.0, 4.5])
    assert selective_stop_epoch(_archive(), NB201, variant="res_o") == 2


def test_bootstrap_epochs_are_recorded_ungated():
    history = [[0.02, 0.5, 0.02, 0.45, 0.01], [0.1, 0.2, 0.2, 0.4, 0.1], [0.02, 0.5, 0.02, 0.45, 0.01]]
    _, scores = selective_stop_scores(_archive(history), NB201)
    assert scores == pytest.approx([2.7, 2.4, 0.0])
    assert selective_stop_epoch(_archive(history), NB201) == 0
    never_on_top = [[0.1, 0.5, 0.1, 0.2, 0.1], [0.1, 0.4, 0.1, 0.3, 0.1], [0.1, 0.6, 0.05, 0.2, 0.05]]
    assert selective_stop_epoch(_archive(never_on_top), NB201) == 1


def test_dict_archive_with_epoch_keys_and_plain_tensors():
    archive = {str(10 + e): _alpha(p) for e, p in enumerate(HISTORY)}
    assert selective_stop_epoch(archive, "nb201") == 12


def test_darts_space_report_and_default_targets():
    darts = get_space("darts")  # 8 ops, 14 edges
    ops = op_order(darts)
    assert default_target(darts) == "sep_conv_3x3" and default_target("nb201") == "nor_conv_3x3"

    def probs(peak_op, share):
        p = [(1 - share) / 7] * 8
        p[ops.index(peak_op)] = share
        return p

    history = [probs("sep_conv_3x3", 0.3), probs("skip_connect", 0.5), probs("sep_conv_3x3", 0.4),
               probs("skip_connect", 0.3)]
    archive = [{"alpha/normal": _alpha(p, edges=14), "alpha/reduce": _alpha(probs("max_pool_3x3", 0.9), edges=14)}
               for p in history]
    report = selective_stop_report(archive, darts)
    assert report["sep_conv_3x3"] == 2 and report["skip_connect"] == 1
    assert report["none"] == 0  # (1 − share)/7 peaks at epochs 0 and 3 alike: the earliest wins, like numpy
    assert selective_stop_report(archive, darts, cell_type="reduce")["max_pool_3x3"] == 0
    assert selective_stop_epoch(archive, darts) == 2


def test_bad_input_is_a_user_error():
    with pytest.raises(RobustDartsError, match="variant"):
        selective_stop_epoch(_archive(), NB201, variant="peak")
    with pytest.raises(RobustDartsError, match="target op"):
        selective_stop_epoch(_archive(), NB201, target_op="sep_conv_3x3")
    with pytest.raises(RobustDartsError, match="empty"):
        selective_stop_epoch([], NB201)
    with pytest.raises(RobustDartsError, match="alpha/normal"):
        selective_stop_epoch([{"alpha/reduce": _alpha(HISTORY[0])}], NB201)
