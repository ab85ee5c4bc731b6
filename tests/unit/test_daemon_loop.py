"""The run loop with fakes at every adapter seam: dispatch, failures as facts, deadlines,
calls from other threads, unknown orders, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from mobikectl.daemon import Daemon
from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.ids import Path, ProbeKind, UplinkName
from mobikectl.errors import DataError, InternalError, Unavailable
from mobikectl.policy.model import Policy
from mobikectl.settings import Settings

WLAN = Path(UplinkName("wlan0"), "192.168.20.2", "203.0.113.10")


class FakeEngine:
    """Answers each fact with scripted orders; one timer."""

    def __init__(self, script=None, deadline=None):
        self.script = script or {}
        self.seen: list = []
        self.timers: list[float] = []
        self.deadline = deadline

    def handle(self, fact, now):
        self.seen.append(fact)
        return list(self.script.get(type(fact), []))

    def handle_timer(self, now):
        self.timers.append(now)
        self.deadline = None
        return [A.Note("decision", "timer fired")]

    def next_deadline(self):
        return self.deadline

    def view(self):
        return {"uplinks": {}, "sas": []}


class Recorder:
    def __init__(self, fail=None):
        self.calls: list = []
        self.fail = fail

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def send(self, order):
        self.calls.append(order)

    def install(self, order):
        if self.fail:
            raise Unavailable(self.fail)
        self.calls.append(order)

    def remove(self, gw):
        self.calls.append(("remove", gw))

    def remove_all(self):
        self.calls.append("remove_all")

    def counters(self):
        return {"wlan0": {"sent_bytes": 0}}

    def snapshot(self):
        return F.SaSnapshot()

    def execute(self, order):
        self.calls.append(order)


class Hub:
    def __init__(self):
        self.events = []

    def publish(self, ev):
        self.events.append(ev)


def make(engine, **kw):
    parts = dict(charon=Recorder(), netlink=Recorder(), routes=Recorder(), probes=Recorder(), hub=Hub())
    parts.update(kw)
    d = Daemon(settings=Settings(), policy=Policy(), engine=engine, **parts)
    return d, parts


def run_until(d, cond, timeout=3.0):
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    d.stop()
    t.join(timeout)
    assert not t.is_alive()
    return cond()


def test_orders_go_to_their_adapters():
    probe = A.SendProbe(WLAN, ProbeKind.ECHO, 1, 0.2)
    steer = A.SteerTo(WLAN, "192.168.20.1", "wlan0 preferred")
    engine = FakeEngine({F.TunnelInbound: [probe, steer, A.Initiate("home", "fallback"), A.Note("move", "hi")]})
    d, p = make(engine)
    d.emit(F.TunnelInbound(5))
    assert run_until(d, lambda: any(isinstance(c, A.Initiate) for c in p["charon"].calls))
    assert probe in p["probes"].calls
    assert steer in p["routes"].calls
    assert p["hub"].events[0]["kind"] == "move" and p["hub"].events[0]["schema"] == 1
    assert p["netlink"].calls[0] == "start" and p["netlink"].calls[-1] == "stop"
    assert "remove_all" not in p["routes"].calls  # default: the steering route stays on exit


def test_failed_order_comes_back_as_a_fact():
    steer = A.SteerTo(WLAN, "192.168.20.1", "r")
    engine = FakeEngine({F.TunnelInbound: [steer]})
    d, p = make(engine, routes=Recorder(fail="RTNETLINK: no such device"))
    d.emit(F.TunnelInbound(1))
    assert run_until(d, lambda: any(isinstance(f, F.ActionFailed) for f in engine.seen))
    failed = next(f for f in engine.seen if isinstance(f, F.ActionFailed))
    assert failed.order == steer and "no such device" in failed.error


def test_timer_fires_at_the_engines_deadline():
    due = time.monotonic() + 0.05
    engine = FakeEngine(deadline=due)
    d, p = make(engine)
    assert run_until(d, lambda: engine.timers)
    assert engine.timers[0] >= due
    assert p["hub"].events and p["hub"].events[0]["message"] == "timer fired"


def test_unknown_order_is_a_bug():
    d, _ = make(FakeEngine())
    with pytest.raises(InternalError):
        d._dispatch(object())


def test_call_runs_on_the_loop_and_returns_errors_to_the_caller():
    d, _ = make(FakeEngine())
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        assert d.call(d.view)["schema"] == 1

        def bad():
            raise DataError("policies/x.toml: failback.hold_down: expected a duration, got 'soon'")

        with pytest.raises(DataError):
            d.call(bad)
        assert d.call(lambda: 42) == 42  # the loop survived
    finally:
        d.stop()
        t.join(3)


def test_reload_is_all_or_nothing():
    engine = FakeEngine()
    d, _ = make(engine, policy_loader=lambda path: (_ for _ in ()).throw(DataError(f"{path}: bad")))
    old = d.policy
    with pytest.raises(DataError):
        d.reload("x.toml")
    assert d.policy is old
    assert not any(isinstance(f, F.PolicyLoaded) for f in engine.seen)


def test_remove_routes_on_exit_when_asked():
    d, p = make(FakeEngine(), keep_routes_on_exit=False)
    run_until(d, lambda: True)
    assert "remove_all" in p["routes"].calls


def test_a_refused_switch_tells_the_user_what_to_type():
    """The engine knows no CLI: its refusal says why and whether force would do; the
    control reply (what `mobikectl switch` prints) says how, on one line."""
    from mobikectl.compose import submit_handler

    class Loop:
        def __init__(self, notes):
            self.notes = notes

        def call(self, fn, timeout):
            return fn()

        def switch(self, uplink, until_in, force):
            return self.notes

    down = A.Note("switch", "switch to wwan0 refused: wwan0 is down, not up",
                  {"uplink": "wwan0", "refused": True, "why": "wwan0 is down, not up", "forcible": True})
    reply = submit_handler(Loop([down]))({"cmd": "switch", "uplink": "wwan0"})
    assert reply["ok"] is False and reply["error"] == {
        "code": 1, "message": "switch to wwan0 refused: wwan0 is down, not up (use --force to override)"}
    unknown = A.Note("switch", "switch to eth9 refused: eth9 is not a managed uplink",
                     {"uplink": "eth9", "refused": True, "why": "...", "forcible": False})
    reply = submit_handler(Loop([unknown]))({"cmd": "switch", "uplink": "eth9"})
    assert reply["error"]["message"] == "switch to eth9 refused: eth9 is not a managed uplink"
