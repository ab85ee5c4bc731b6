"""The gap meter's arithmetic: the gap is the longest silence that ends after the mark."""

import pytest

from mobikectl.lab.pinger import analyze

pytestmark = pytest.mark.netns


def test_replies_in_flight_do_not_hide_the_gap():
    # replies every 10 ms until 1.005 (one in flight after the mark at 1.0), then none until 1.3
    replies = [0.01 * i for i in range(1, 101)] + [1.005, 1.3, 1.31, 1.32]
    r = analyze(replies, start=0.0, end=1.33, mark=1.0, interval=0.01)
    assert r["max_gap_ms"] == pytest.approx(295.0, abs=0.2)
    assert r["recovered"] is True and r["max_gap_open"] is False


def test_silence_open_at_the_end_is_not_recovered():
    replies = [0.01 * i for i in range(1, 50)]
    r = analyze(replies, start=0.0, end=2.0, mark=0.3, interval=0.01)
    assert r["recovered"] is False and r["max_gap_open"] is True
    assert r["max_gap_ms"] == pytest.approx(1510.0, abs=0.5)


def test_gaps_before_the_mark_do_not_count():
    replies = [0.1, 0.9] + [1.0 + 0.01 * i for i in range(50)]
    r = analyze(replies, start=0.0, end=1.5, mark=1.0, interval=0.01)
    assert r["max_gap_ms"] < 20
