from mobikectl.bench.figures import probe_floor, ratio, standby_bytes_per_month, summarize
from mobikectl.policy.model import Policy, ProbeTiming
from mobikectl.engine.ids import UplinkClass


def test_summary_counts_unrecovered_trials():
    s = summarize([0.5, None, 0.7, 0.6])
    assert (s.trials, s.recovered, s.not_recovered) == (4, 3, 1)
    assert s.median == 0.6 and s.max == 0.7


def test_ratio_when_charon_alone_never_recovers():
    alone = summarize([None])
    ctl = summarize([0.5, 0.7, 0.6])
    assert ratio(alone, ctl, 30.0) == "> 50×"


def test_ratio_on_medians():
    assert ratio(summarize([0.12, 0.13]), summarize([0.125, 0.125]), 30.0) == "1.0×"


def test_probe_floor_arithmetic():
    t = ProbeTiming(interval=0.1, timeout_min=0.15, fall=2, confirm=3, confirm_interval=0.05)
    f = probe_floor(t)
    # worst: 2 probes of 0.1 s + 0.15 s timeout, then a burst 2*0.05 + 0.15
    assert f == {"best_s": 0.5, "worst_s": 0.6}


def test_default_metered_standby_within_15_mb_a_month():
    cell = Policy().classes[UplinkClass.WWAN].probe
    assert standby_bytes_per_month(cell) <= 15e6
