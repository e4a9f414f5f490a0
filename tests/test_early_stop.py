"""DARTS-ES / DARTS-ADA decision logic on hand-made eigenvalue sequences (expected epochs worked out by hand from
the rules in spec D §2.4; see the comments)."""

import json

import pytest

from robustdarts.errors import RobustDartsError
from robustdarts.search.early_stop import AdaSchedule, EarlyStop, StopDecision

EPOCHS = 50


def run(es: EarlyStop, eigenvalue_at, epochs: int = EPOCHS) -> list[StopDecision]:
    """Feed the reference cadence (every ev_freq epochs and the last one); return every decision."""
    decisions = []
    for epoch in range(epochs):
        last = epoch == epochs - 1
        if epoch % es.ev_freq == 0 or last:
            d = es.observe(epoch, eigenvalue_at(epoch), last_epoch=last)
            if d is not None:
                decisions.append(d)
    return decisions


def test_flat_sequence_never_stops():
    assert run(EarlyStop(), lambda e: 0.3) == []
    assert run(EarlyStop(rule="paper"), lambda e: 0.3) == []


def test_code_rule_first_check_is_at_epoch_22():
    # λ = 1 up to epoch 12, 3 from epoch 14. The local average at epoch e is the mean over epochs e-8..e:
    # at epoch 20 it is (1 + 4·3)/5 = 2.6 against 1 at epoch 12, far above 1.3, but la_epoch − 8 = 8 < 10, so no
    # check. At epoch 22: mean(14..22) = 3 vs mean(6..14) = (4·1 + 3)/5 = 1.4 → ratio 2.14 > 1.3 → stop;
    # stop_epoch = 22 − 4 − 8 = 10.
    decisions = run(EarlyStop(), lambda e: 1.0 if e <= 12 else 3.0)
    assert decisions[0].epoch == 22 and decisions[0].stop_epoch == 10
    assert decisions[0].ratio == pytest.approx(3.0 / 1.4)
    assert all(d.stop_epoch == d.epoch - 12 for d in decisions)


def test_code_rule_stops_after_a_late_jump():
    # λ = 1, then 2 from epoch 22. Epoch 22: mean(14..22) = 6/5 = 1.2 ≤ 1.3, no stop. Epoch 24: mean(16..24) =
    # 7/5 = 1.4 against mean(8..16) = 1 → stop at 24, stop_epoch 12. It keeps firing while the ratio holds:
    # epoch 26: 8/5 = 1.6 vs mean(10..18) = 1 → stop_epoch 14.
    es = EarlyStop()
    decisions = run(es, lambda e: 1.0 if e < 22 else 2.0)
    assert [(d.epoch, d.stop_epoch) for d in decisions[:2]] == [(24, 12), (26, 14)]
    assert decisions[0].ratio == pytest.approx(1.4)
    assert es.first_stop == decisions[0]


def test_code_rule_skips_the_last_epoch_and_the_local_averages_match_the_reference():
    # A jump at the last measured epochs only: epoch 48 sees mean(40..48) = (4 + 1.5)/5 = 1.1 (no stop); the jump
    # at epoch 49 is the last epoch, where no decision is made even though it would fire.
    es = EarlyStop()
    assert run(es, lambda e: 1.0 if e < 48 else (1.5 if e == 48 else 100.0)) == []
    averages = es.local_averages()
    # Averages start once 3 eigenvalues exist (epoch 4, tagged 0), shrink-free from epoch 8; one per epoch 4..48.
    assert [la for la, _ in averages] == list(range(0, 45, 2))
    assert averages[-1][1] == pytest.approx(1.1)


def test_code_rule_with_a_shorter_start_and_window():
    # window 3, delta 2, ev_freq 1, start 0: averages from 2 values (ceil(3/2)); la_epoch = epoch − 1; first check
    # at la_epoch − 2 ≥ 0 → epoch 3 (with 3 averages: at epochs 1, 2, 3). λ = 1, 1, 1, 1, 5:
    # epoch 4: LA = mean(2..4) = 7/3 vs LA two entries back (epoch 2: mean(0..2) = 1) → stop, stop_epoch 1.
    es = EarlyStop(window=3, delta=2, ev_freq=1, start_epoch=0)
    decisions = [es.observe(e, v) for e, v in enumerate([1, 1, 1, 1, 5])]
    assert decisions[:4] == [None] * 4
    assert (decisions[4].epoch, decisions[4].stop_epoch) == (4, 1)
    assert decisions[4].ratio == pytest.approx(7 / 3)


def test_paper_rule_on_a_jump():
    # Every epoch measured (ev_freq 1); λ = 1 up to epoch 14, 2 from 15. λ̄(i) = mean over epochs i-4..i.
    # Epoch 15: λ̄ = 6/5 = 1.2, λ̄(10) = 1 → 1/1.2 = 0.83 ≥ 0.75. Epoch 16: λ̄ = 7/5 = 1.4 → 0.714 < 0.75 → stop,
    # returning epoch 16 − 5 = 11.
    es = EarlyStop(rule="paper", ev_freq=1)
    decisions = run(es, lambda e: 1.0 if e < 15 else 2.0)
    assert (decisions[0].epoch, decisions[0].stop_epoch) == (16, 11)
    assert decisions[0].ratio == pytest.approx(1 / 1.4)


def test_paper_rule_with_every_other_epoch_and_an_early_start():
    # ev_freq 2: λ = 1 before epoch 16, 3 from 16. Epoch 16: λ̄(16) = mean of epochs 12, 14, 16 = 5/3;
    # λ̄(11) = mean of epochs 8, 10 = 1 → ratio 0.6 < 0.75 → stop, returning 11. A check needs the window of
    # i − k inside the search (i − 5 − 4 ≥ 0), so after a jump at epoch 6 the first decision is at epoch 10:
    # λ̄(10) = mean(6, 8, 10) = 3 against λ̄(5) = mean(2, 4) = 1, returning 5.
    es = EarlyStop(rule="paper")
    decisions = run(es, lambda e: 1.0 if e < 16 else 3.0)
    assert (decisions[0].epoch, decisions[0].stop_epoch) == (16, 11)
    assert decisions[0].ratio == pytest.approx(0.6)
    early = run(EarlyStop(rule="paper"), lambda e: 1.0 if e < 6 else 3.0)
    assert early[0].epoch == 10 and early[0].stop_epoch == 5


def test_state_round_trip_mid_sequence_gives_the_same_decisions():
    def sequence(e):
        return 0.2 + 0.01 * e + (0.5 if e >= 30 else 0.0)

    for rule in ("code", "paper"):
        whole = EarlyStop(rule=rule)
        expected = run(whole, sequence)
        assert expected, rule

        first = EarlyStop(rule=rule)
        decisions = []
        for epoch in range(0, 28, 2):
            assert first.observe(epoch, sequence(epoch)) is None
        # Through JSON: the state must be plain data.
        state = json.loads(json.dumps(first.state_dict()))
        resumed = EarlyStop(rule=rule)
        resumed.load_state_dict(state)
        for epoch in range(28, EPOCHS):
            last = epoch == EPOCHS - 1
            if epoch % resumed.ev_freq == 0 or last:
                d = resumed.observe(epoch, sequence(epoch), last_epoch=last)
                if d is not None:
                    decisions.append(d)
        assert decisions == expected
        assert resumed.state_dict() == whole.state_dict()


def test_rollback_forgets_later_observations_but_keeps_the_first_stop():
    # ADA: after the trigger at 24 (stop_epoch 12) the loop resumes from epoch 12 and re-observes 14, 16, …
    es = EarlyStop()
    decision = run(es, lambda e: 1.0 if e < 22 else 2.0, epochs=26)[0]
    es.rollback(decision.stop_epoch)
    assert es.observations[-1].epoch == 12
    assert es.first_stop == decision
    assert es.observe(14, 1.0) is None  # a calmer run after stronger regularization
    with pytest.raises(RobustDartsError, match="epoch 14 after epoch 14"):
        es.observe(14, 1.0)


def test_bad_rule_and_mismatched_state():
    with pytest.raises(RobustDartsError, match="early-stopping rule 'median'"):
        EarlyStop(rule="median")
    with pytest.raises(RobustDartsError, match="rule 'paper'"):
        EarlyStop().load_state_dict(EarlyStop(rule="paper").state_dict())


def test_ada_schedule():
    ada = AdaSchedule()
    assert ada.current == 3e-4 and ada.can_increase
    assert ada.increase() == 3e-3
    state = ada.state_dict()
    assert ada.increase() == 3e-2 and not ada.can_increase
    with pytest.raises(RobustDartsError, match="final value"):
        ada.increase()
    restored = AdaSchedule()
    restored.load_state_dict(json.loads(json.dumps(state)))
    assert restored.current == 3e-3 and restored.can_increase
    # The script's 3e-4 ×10 up to 3e-2 gives exactly two increases (the reference's log-ratio cap test).
    geometric = AdaSchedule.geometric(3e-4, 10, 3e-2)
    assert len(geometric.values) == 3
    assert geometric.values == pytest.approx((3e-4, 3e-3, 3e-2))
    assert len(AdaSchedule.geometric(3e-4, 3, 0.0243).values) == 5  # 3e-4 · 3⁴ = 0.0243 (R-DARTS(L2) grid)
