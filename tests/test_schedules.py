"""Schedules against the spec's anchors (D §1.4, §2.6, §5; L §4, §5.3) and hand-computed recursions."""

import json
import math

import pytest
import torch

from robustdarts.errors import RobustDartsError
from robustdarts.schedules import (SPARSITY_PRESETS, CyclicLogTau, EntropyAdaptiveTau, ExponentialTau, GdasTau,
                                   LinearRamp, SdartsEpsilon, cosine_lr, sparsity_preset)


def test_cosine_lr_anchors():
    def lr(epoch):
        return cosine_lr(epoch, lr_max=0.025, eta_min=0.001, epochs=50)

    assert lr(0) == pytest.approx(0.025, abs=1e-15)
    assert lr(1) == pytest.approx(0.02497632, abs=5e-9)
    assert lr(25) == pytest.approx(0.013, abs=1e-15)
    assert lr(49) == pytest.approx(0.0010237, abs=5e-8)
    assert cosine_lr(10) == lr(10)  # the defaults are the DARTS search ones
    # A constant rate (SP-DARTS, SS-DARTS, LR swap) is the references' cosine with eta_min = lr, exactly.
    assert cosine_lr(0, 0.05, 0.05) == cosine_lr(49, 0.05, 0.05) == 0.05


def test_linear_ramps():
    drop_path = LinearRamp(0.2, epochs=50)
    assert drop_path(0) == 0.0 and drop_path(49) == pytest.approx(0.2) and drop_path(7) == pytest.approx(0.2 * 7 / 49)
    eps = SdartsEpsilon()
    assert eps(0) == pytest.approx(0.03)
    assert eps(25) == pytest.approx(0.03 + 0.27 * 0.5)
    assert eps(49) == pytest.approx(0.03 + 0.27 * 49 / 50)  # /E, not /(E−1): 0.3 is never reached
    assert GdasTau()(0) == 10.0 and GdasTau()(49) == pytest.approx(0.1)
    assert GdasTau()(10) == pytest.approx(10 - 9.9 * 10 / 49)
    assert ExponentialTau(2.0, 0.5)(3) == 0.25
    assert ExponentialTau()(49) == pytest.approx(1e-3)


def test_cyclic_log_decay_values_and_layout():
    schedule = CyclicLogTau()
    levels = [schedule.level(i) for i in range(1, 11)]
    assert levels[:5] == pytest.approx([3.82e-3, 2.01e-3, 1.40e-3, 1.09e-3, 9.1e-4], rel=6e-3)
    assert levels[9] == pytest.approx(5.4e-4, rel=6e-3)
    t1, t2, t3, t4, t5 = levels[:5]
    cycle = [1.0, t1, t2, t3, t4, t5, t4, t3, t2, t1]
    assert [schedule(e) for e in range(40)] == cycle * 4
    assert [schedule(e) for e in range(40, 50)] == levels


def _binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _mean_entropy(tau):
    # α rows [0, 0] (entropy ln 2 at any τ) and [0, 0.01]: p = σ(0.01/τ).
    return 0.5 * (math.log(2) + _binary_entropy(1 / (1 + math.exp(-0.01 / tau))))


ALPHA = torch.tensor([[0.0, 0.0], [0.0, 0.01]], dtype=torch.float64)


def test_entropy_adaptive_short_sequence_by_hand():
    schedule = EntropyAdaptiveTau()
    taus = [schedule.step(e, ALPHA) for e in range(12)]
    h1 = _mean_entropy(1.0)
    d1 = 0.5 * 0.06 * h1
    tau1 = 3.99e-4 / math.log(1 + d1 * 1)
    h2 = _mean_entropy(tau1)  # entropy read at the current (already lowered) τ
    d2 = 0.5 * 0.06 * h2 + 0.5 * d1
    tau2 = 3.99e-4 / math.log(1 + d2 * 2)
    assert h2 < h1 - 0.01  # the τ dependence matters in this case
    assert taus[:5] == [1.0] * 5
    assert taus[5:10] == pytest.approx([tau1] * 5, rel=1e-9)
    assert taus[10:12] == pytest.approx([tau2] * 2, rel=1e-9)
    assert schedule.step(11, torch.zeros(2, 2)) == taus[11]  # an epoch already handled changes nothing


def test_entropy_adaptive_update_epochs_late_gain_and_resume():
    full = EntropyAdaptiveTau()
    taus = [full.step(e, ALPHA) for e in range(50)]
    updates = [e for e in range(50) if EntropyAdaptiveTau().is_update_epoch(e)]
    assert updates == [5, 10, 15, 20, 25, 30, 35] + list(range(40, 50))

    tau, decay, k, expected = 1.0, 0.0, 0, []
    for e in range(50):
        if e in updates:
            gain = 0.12 if e >= 40 else 0.06
            decay = 0.5 * gain * _mean_entropy(tau) + 0.5 * decay
            k += 1
            tau = 3.99e-4 / math.log(1 + decay * k)
        expected.append(tau)
    assert taus == pytest.approx(expected, rel=1e-9)

    first = EntropyAdaptiveTau()
    for e in range(23):
        first.step(e, ALPHA)
    state = json.loads(json.dumps(first.state_dict()))  # plain data
    resumed = EntropyAdaptiveTau()
    resumed.load_state_dict(state)
    assert [resumed.step(e, ALPHA) for e in range(23, 50)] == taus[23:]


def test_sparsity_presets_ramp_as_specified():
    darts = sparsity_preset("darts")
    assert darts.at(0) == (10.0, 10.0, 0.0)
    for e in range(1, 50):
        assert darts.at(e) == (0.001, pytest.approx(0.01), e / 49)
    assert darts.prob_sparse(49) == 1.0 and darts.valid_tau == 1e-4 and darts.derive_tau == 0.001

    lhd = sparsity_preset("lhd")
    for e in range(5):
        assert lhd.at(e) == (10.0, 10.0, 0.0)
    for e in range(5, 50):
        assert lhd.at(e) == (0.0015, pytest.approx(0.015), (e - 4) / 45)
    assert lhd.prob_sparse(5) == 1 / 45 and lhd.prob_sparse(49) == 1.0

    s = sparsity_preset("s1-s4")
    for e in range(50):
        # C is raised before the epoch trains (the code's order), so epoch 0 already uses 0.8 + 0.3/50.
        assert s.at(e) == (0.0003, pytest.approx(0.003), min(1.0, 0.8 + 0.3 * (e + 1) / 50))
    assert s.prob_sparse(0) == pytest.approx(0.806) and s.prob_sparse(32) < 1.0 == s.prob_sparse(33)

    nb10 = sparsity_preset("nb201-10")
    assert nb10.at(0) == (10.0, 10.0, 0.0)
    for e in range(1, 50):
        assert nb10.at(e) == (0.0011, pytest.approx(11 * 0.0011), e / 49)

    nb100 = sparsity_preset("nb201-100")
    assert nb100.at(0) == (10.0, 10.0, 0.0)
    for e in range(1, 45):
        assert nb100.at(e) == (0.0013, pytest.approx(11 * 0.0013), pytest.approx(0.9 * e / 49))
    for e in range(45, 50):
        assert nb100.at(e) == (0.0006, pytest.approx(11 * 0.0006), pytest.approx(0.9 * 44 / 49))
    assert set(SPARSITY_PRESETS) == {"darts", "lhd", "s1-s4", "nb201-10", "nb201-100"}


def test_sparsity_draws_are_seeded_and_follow_c():
    lhd = sparsity_preset("lhd")
    a = lhd.draw_epoch(27, 2000, torch.Generator().manual_seed(0))
    b = lhd.draw_epoch(27, 2000, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.bool
    assert float(a.double().mean()) == pytest.approx(lhd.prob_sparse(27), abs=0.04)
    assert not lhd.draw_epoch(2, 100, torch.Generator().manual_seed(0)).any()  # warmup: never sparse
    taus = lhd.step_taus(27, 50, torch.Generator().manual_seed(1))
    assert set(taus) == {0.0015, lhd.dense_tau_at(27)}
    expected = [0.0015 if d else lhd.dense_tau_at(27) for d in lhd.draw_epoch(27, 50, torch.Generator().manual_seed(1))]
    assert taus == expected
    assert sparsity_preset("darts").sample_tau(49, torch.Generator().manual_seed(2)) == 0.001  # C = 1


def test_unknown_preset_is_a_user_error():
    with pytest.raises(RobustDartsError, match="unknown sparsity preset 'nb201'"):
        sparsity_preset("nb201")
