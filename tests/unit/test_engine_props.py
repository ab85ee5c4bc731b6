"""Properties over random runs: uplinks die, lose carrier and come back at random times;
charon follows every steering route 108 ms later. Whatever happens:
- no move while the current path is healthy and the most preferred healthy path;
- never more than one move per min_dwell unless the current path is DOWN;
- the same facts at the same times give the same orders.
HYPOTHESIS_PROFILE=deep runs more examples."""

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine_helpers import GW, Transcript, link, net, sa
from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.engine import Engine
from mobikectl.engine.ids import Health
from mobikectl.policy.model import Policy

settings.register_profile("fast", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

UPLINKS = ("eth0", "wlan0", "wwan0")
step = st.tuples(st.floats(0.05, 45.0),  # how long this state lasts
                 st.frozensets(st.sampled_from(UPLINKS)),  # uplinks whose probes are dropped
                 st.frozensets(st.sampled_from(UPLINKS)))  # uplinks without carrier


def run(steps):
    policy = Policy()
    engine = Engine(policy, 0.0)
    t = Transcript(engine)
    state = {"dead": frozenset(), "local": "10.1.0.2", "violations": [], "seen": 0}

    def answer(probe):
        return None if probe.path.uplink in state["dead"] else 0.005

    original = engine.handle, engine.handle_timer

    def check(orders):
        for o in orders:
            if isinstance(o, A.SteerTo) and o.path.local != state["local"]:
                old, state["local"] = state["local"], o.path.local
                t.pending.append((t.now + 0.108, F.IkeUpdated("home", "aa", "bb", old, GW, o.path.local, GW)))
        moves = list(engine.moves)
        for m in moves[state["seen"]:]:
            src = engine.paths.get((m.source.uplink, GW)) if m.source else None
            health = src.health.state if src is not None else Health.DOWN
            if health is Health.UP:
                cur_key = (policy.metered(m.source.uplink), policy.rank(m.source.uplink))
                new_key = (policy.metered(m.target.uplink), policy.rank(m.target.uplink))
                if not new_key < cur_key:
                    state["violations"].append(f"left healthy preferred {m.source.uplink} for {m.target.uplink}")
            before = [p for p in moves if p.decided_at < m.decided_at]
            if health is not Health.DOWN and before and m.decided_at - before[-1].decided_at < policy.failback.min_dwell:
                state["violations"].append(f"two moves within min_dwell at {m.decided_at}")
        state["seen"] = len(moves)
        return orders

    engine.handle = lambda f, now: check(original[0](f, now))
    engine.handle_timer = lambda now: check(original[1](now))
    t.feed(net(*UPLINKS))
    t.feed(F.SaSnapshot((sa(),)))
    carrier_off = frozenset()
    for duration, dead, off in steps:
        state["dead"] = dead
        for name in UPLINKS:
            if (name in off) != (name in carrier_off):
                t.feed(link(name, carrier=name not in off))
        carrier_off = off
        t.run_until(t.now + duration, answer)
    return t, state["violations"]


@given(st.lists(step, min_size=1, max_size=8))
@example([(5.0, frozenset(), frozenset()), (5.0, frozenset(), frozenset({"eth0"})),  # eth0 flaps:
          (5.0, frozenset(), frozenset()), (40.0, frozenset({"wlan0"}), frozenset())])  # no early failback
def test_invariants_hold_whatever_the_uplinks_do(steps):
    _, violations = run(steps)
    assert violations == []


@given(st.lists(step, min_size=1, max_size=4))
def test_same_facts_same_orders(steps):
    a, _ = run(steps)
    b, _ = run(steps)
    assert a.log == b.log
