"""The health state table and the evidence that drives it."""

import pytest

from mobikectl.engine.health import DOWN, SUSPECT, TRANSITIONS, UNKNOWN, UP, Event, PathHealth
from mobikectl.engine.ids import Health
from mobikectl.policy.model import Limits, Policy, ProbeTiming

WLAN = ProbeTiming()  # interval 0.1, timeout 0.15..2.0, fall 2, confirm 3, rise 3
CELL = Policy().classes[next(c for c in Policy().classes if c.value == "wwan")].probe


def test_every_state_has_a_way_out_and_link_loss_is_always_down():
    for state in Health:
        assert TRANSITIONS[(state, Event.LINK_LOST)] is DOWN
    assert {new for new in TRANSITIONS.values()} == set(Health)


@pytest.mark.parametrize("state,event,new", [(s, e, n) for (s, e), n in sorted(TRANSITIONS.items())])
def test_table_entries_are_reachable(state, event, new):
    """Drive a PathHealth into `state`, then produce `event`; it must land in `new`."""
    h = PathHealth(WLAN, Limits(max_rtt=0.5) if event is Event.DEGRADED else Limits(), 0.0)
    t = 0.0
    if state is UP or state is SUSPECT:
        for _ in range(3):
            h.answered(t, 0.005)
    if state is SUSPECT:
        h.missed(t)
        h.missed(t)
    if state is DOWN:
        h.link_lost(t, "carrier lost")
    assert h.state is state
    if event is Event.ANSWERED:
        h.answered(t, 0.005)
    elif event is Event.MISSED:
        h.missed(t)
    elif event is Event.ROSE:
        for _ in range(3):
            h.answered(t, 0.005)
    elif event is Event.FELL:
        h.missed(t)
        h.missed(t)
    elif event is Event.BURST_LOST:
        for _ in range(3):
            h.missed(t, burst=True)
    elif event is Event.DEGRADED:
        h.answered(t, 5.0)  # smoothed RTT above max_rtt
    elif event is Event.LINK_LOST:
        h.link_lost(t, "gone")
    assert h.state is new


@pytest.mark.parametrize("active,up_since", [(True, 2), (False, 3.2)])
def test_fall_misses_make_suspect_and_one_answer_clears_it(active, up_since):
    h = PathHealth(WLAN, Limits(), 0.0)
    h.active = active
    for i in range(3):
        h.answered(i, 0.005)
    assert h.state is UP and h.up_since == 2
    assert h.missed(3.0) is None  # one miss is not enough
    tr = h.missed(3.1)
    assert (tr.old, tr.new) == (UP, SUSPECT)
    tr = h.answered(3.2, 0.005)
    # the active path keeps its up time; a standby path's hold-down starts again
    assert (tr.old, tr.new) == (SUSPECT, UP) and h.up_since == up_since


def test_only_the_whole_burst_makes_down():
    h = PathHealth(WLAN, Limits(), 0.0)
    for i in range(3):
        h.answered(i, 0.005)
    h.missed(3.0)
    h.missed(3.1)
    h.missed(3.15)  # a regular probe still in flight: not part of the burst
    assert h.missed(3.2, burst=True) is None
    assert h.missed(3.25, burst=True) is None
    assert h.missed(3.3, burst=True).new is DOWN


def test_down_needs_rise_answers():
    h = PathHealth(WLAN, Limits(), 0.0)
    h.link_lost(0.0, "carrier lost")
    assert h.answered(1, 0.005) is None and h.answered(2, 0.005) is None
    assert h.answered(3, 0.005).new is UP


def test_unknown_path_that_never_answers_goes_down_without_a_burst():
    h = PathHealth(WLAN, Limits(), 0.0)
    h.missed(1)
    assert h.missed(2).new is DOWN


def test_timeout_follows_rtt_within_the_class_bounds():
    h = PathHealth(WLAN, Limits(), 0.0)
    assert h.timeout() == WLAN.timeout_max  # nothing measured yet
    for _ in range(10):
        h.answered(0, 0.005)
    assert h.timeout() == WLAN.timeout_min
    cell = PathHealth(CELL, Limits(), 0.0)
    for rtt in (0.6, 0.9, 0.7, 0.8):  # a slow cellular link must not look dead
        cell.answered(0, rtt)
    assert 0.9 < cell.timeout() <= CELL.timeout_max


def test_loss_limit_makes_an_answering_path_down():
    h = PathHealth(WLAN, Limits(max_loss=0.2, window=10), 0.0)
    for i in range(7):
        h.answered(i, 0.005)
    h.missed(7.0)
    h.answered(7.1, 0.005)
    h.missed(7.2)
    assert h.state is UP
    tr = h.missed(7.4)  # 3 lost of the last 10 > 20 %
    assert tr.new is DOWN and "loss" in tr.why


def test_tunnel_traffic_counts_as_an_answer():
    h = PathHealth(WLAN, Limits(), 0.0)
    for i in range(3):
        h.answered(i, 0.005)
    h.missed(3)
    h.missed(3.1)
    assert h.state is SUSPECT
    assert h.answered(3.2).new is UP  # rtt None: packets through the tunnel
