"""The random-loss model: false moves and probe cost at the shipped defaults."""

from mobikectl.policy.model import Policy
from mobikectl.sim import expected_false_downs_per_day, simulate_false_moves


def test_three_percent_loss_no_false_move_and_metered_standby_within_budget():
    """Expected false DOWNs at 3 %: ~0.035 a day, so none in 3 hours (P(any) ~ 0.4 %)."""
    r = simulate_false_moves(loss=0.03, days=0.125, seed=7)
    assert r["false_moves"] == 0, r["move_log"]
    assert expected_false_downs_per_day(Policy(), 0.03) <= 1.0  # the target: <= 1 per day
    assert r["metered_standby_mb_per_month"] <= 15.0


def test_the_model_can_fail_heavy_loss_does_cause_moves():
    r = simulate_false_moves(loss=0.2, days=0.02, seed=1)
    assert r["false_moves"] >= 1
    assert all(m["reason"] for m in r["move_log"])


def test_simulation_is_deterministic_for_a_seed():
    a = simulate_false_moves(loss=0.1, days=0.01, seed=5)
    b = simulate_false_moves(loss=0.1, days=0.01, seed=5)
    assert a == b
