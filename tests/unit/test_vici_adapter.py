"""CharonAdapter with a fake charon at the seam (the session factory): events become facts,
reconnection, timeouts, charon's refusals, unknown events, orders."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections import OrderedDict

import pytest
from recorded.messages import as_vici, vici_doc, vici_event
from vici.exception import CommandException, EventUnknownException

from mobikectl.adapters.vici import CharonAdapter, CharonRefused, CharonTimeout, CharonUnavailable
from mobikectl.engine.actions import Initiate, Resync, SteerTo, Terminate
from mobikectl.engine.ids import Path
from mobikectl.engine.inputs import CharonConnected, CharonLost, IkeUp, IkeUpdated, SaSnapshot
from mobikectl.errors import EX_NOT_OK, EX_UNAVAILABLE, InternalError
from mobikectl.settings import CharonSettings

LISTING = vici_doc("list-sas")


class FakeSocket:
    def settimeout(self, t):
        pass

    def shutdown(self, how):
        pass


class FakeTransport:
    def __init__(self, session):
        self.session = session
        self.socket = FakeSocket()

    def close(self):
        self.session.closed = True


class FakeSession:
    def __init__(self, charon):
        self.charon = charon
        self.closed = False
        self.transport = FakeTransport(self)
        self.events: queue.Queue = queue.Queue()

    def _check(self, command):
        if self.closed or not self.charon.running:
            raise OSError("Connection closed")
        self.charon.calls.append(command)
        failure = self.charon.failures.pop(command, None)
        if failure is not None:
            raise failure

    def listen(self, event_types, timeout=None):
        for name in event_types:
            if name in self.charon.unknown_events:
                raise EventUnknownException(f"Unknown event type '{name}'")
        self.charon.registered = list(event_types)
        self.charon.listeners.append(self)
        while True:
            if self.closed or not self.charon.running:
                raise OSError("Connection closed")
            try:
                yield self.events.get(timeout=timeout)
            except queue.Empty:
                yield None, None

    def version(self):
        self._check("version")
        return OrderedDict(daemon=b"charon", version=b"5.9.8", sysname=b"Linux", release=b"6.1", machine=b"x86_64")

    def stats(self):
        self._check("stats")
        return OrderedDict(ikesas=OrderedDict(total=str(self.charon.total).encode(), **{"half-open": b"0"}))

    def list_sas(self, filters=None):
        self._check("list-sas")
        self.charon.requests.append(("list-sas", filters))
        yield from self.charon.sas

    def list_conns(self, filters=None):
        self._check("list-conns")
        yield from as_vici(LISTING["conns"])

    def initiate(self, request):
        self._check("initiate")
        self.charon.requests.append(("initiate", request))
        yield OrderedDict(msg=b"establishing")

    def terminate(self, request):
        self._check("terminate")
        self.charon.requests.append(("terminate", request))
        yield OrderedDict(msg=b"deleting")

    def reload_settings(self):
        self._check("reload-settings")


class FakeCharon:
    def __init__(self):
        self.running = True
        self.sas = as_vici(LISTING["events"])
        self.total = 1
        self.calls: list[str] = []
        self.requests: list = []
        self.failures: dict[str, Exception] = {}
        self.unknown_events: set[str] = set()
        self.registered: list[str] = []
        self.listeners: list[FakeSession] = []
        self.connects = 0

    def factory(self, path, timeout):
        self.connects += 1
        if not self.running:
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeSession(self)

    def push(self, event, msg):
        self.listeners[-1].events.put((event.encode(), msg))


class Recorder(list):
    def wait(self, kind, count=1, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(isinstance(f, kind) for f in self) >= count:
                return [f for f in self if isinstance(f, kind)]
            time.sleep(0.005)
        raise AssertionError(f"no {count} x {kind.__name__} in {[type(f).__name__ for f in self]}")


@pytest.fixture
def charon():
    return FakeCharon()


@pytest.fixture
def adapter(charon):
    facts = Recorder()
    a = CharonAdapter(emit=facts.append, settings=CharonSettings(vici_socket="unix:///x/charon.vici"),
                      session_factory=charon.factory, tick_s=0.01, backoff_max_s=0.05)
    a.facts = facts
    yield a
    a.stop()


def test_connects_then_reports_version_and_one_snapshot(adapter, charon):
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    assert adapter.path == "/x/charon.vici"
    assert [type(f) for f in adapter.facts] == [CharonConnected, SaSnapshot]
    assert adapter.facts[0].version.startswith("charon 5.9.8")
    assert adapter.facts[1].sas[0].local_host == "10.1.0.2" and adapter.facts[1].complete
    assert charon.registered == ["ike-updown", "ike-update", "child-updown", "ike-rekey", "child-rekey"]


def test_events_become_facts(adapter, charon):
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    charon.push(*vici_event("ike-updown-up"))
    charon.push(*vici_event("ike-update-steered"))
    assert adapter.facts.wait(IkeUp)[0].sa.name == "home"
    assert adapter.facts.wait(IkeUpdated)[0].new_local == "10.2.0.2"


def test_child_updown_is_answered_with_a_snapshot(adapter, charon):
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    charon.push(*vici_event("child-updown-down"))
    adapter.facts.wait(SaSnapshot, 2)


def test_a_malformed_event_is_skipped_and_the_session_lives_on(adapter, charon):
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    charon.push("ike-rekey", OrderedDict(home=OrderedDict(state=b"REKEYED")))
    charon.push(*vici_event("ike-update-steered"))
    adapter.facts.wait(IkeUpdated)
    assert not any(isinstance(f, CharonLost) for f in adapter.facts)


def until(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_charon_restart_gives_lost_then_connected_and_a_fresh_snapshot(adapter, charon):
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    charon.running = False
    adapter.facts.wait(CharonLost)
    failed_from = charon.connects
    until(lambda: charon.connects >= failed_from + 3)  # several failed attempts: still one CharonLost
    charon.sas = []
    charon.total = 0
    charon.running = True
    adapter.facts.wait(SaSnapshot, 2)
    kinds = [type(f) for f in adapter.facts]
    assert kinds == [CharonConnected, SaSnapshot, CharonLost, CharonConnected, SaSnapshot]
    assert "closed" in adapter.facts[2].why
    assert adapter.facts[-1].sas == ()
    assert charon.connects > 4


def test_charon_absent_at_start_is_reported_once_then_followed(adapter, charon):
    charon.running = False
    adapter.start()
    adapter.facts.wait(CharonLost)
    assert "cannot reach charon at /x/charon.vici" in adapter.facts[0].why
    until(lambda: charon.connects >= 3)  # it keeps trying, and reports the loss once
    charon.running = True
    adapter.facts.wait(SaSnapshot)
    assert [type(f) for f in adapter.facts] == [CharonLost, CharonConnected, SaSnapshot]


def test_an_unknown_event_is_dropped_and_the_rest_registered(adapter, charon):
    charon.unknown_events = {"ike-update"}  # a charon older than 5.9.2
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    assert "ike-update" not in charon.registered and "ike-updown" in charon.registered
    assert not any(isinstance(f, CharonLost) for f in adapter.facts)


def test_alert_is_never_registered(adapter, charon):
    charon.unknown_events = {"alert"}
    adapter.start()
    adapter.facts.wait(SaSnapshot)
    assert "alert" not in charon.registered


def test_a_hung_charon_is_noticed_by_the_watchdog(charon):
    facts = Recorder()
    a = CharonAdapter(emit=facts.append, session_factory=charon.factory, tick_s=0.01, watchdog_s=0.05,
                      backoff_max_s=0.05)
    try:
        a.start()
        facts.wait(SaSnapshot)
        charon.failures["version"] = socket.timeout("timed out")
        assert "in time" in facts.wait(CharonLost)[0].why
        facts.wait(SaSnapshot, 2)
    finally:
        a.stop()


def test_a_command_timeout_is_a_mobikectl_error_and_the_session_is_replaced(adapter, charon):
    charon.failures["list-sas"] = socket.timeout("timed out")
    with pytest.raises(CharonTimeout) as err:
        adapter.snapshot()
    assert err.value.exit_code == EX_UNAVAILABLE
    before = charon.connects
    assert adapter.snapshot().sas
    assert charon.connects == before + 1


def test_charon_refusing_a_command_is_not_ok(adapter, charon):
    charon.failures["initiate"] = CommandException("Command failed: establishing CHILD_SA 'net' failed")
    with pytest.raises(CharonRefused, match="charon refused initiate home/net: establishing CHILD_SA 'net' failed") as err:
        adapter.execute(Initiate("home", reason="fallback"))
    assert err.value.exit_code == EX_NOT_OK


def test_a_broken_session_is_unavailable(adapter, charon):
    charon.failures["version"] = BrokenPipeError(32, "Broken pipe")
    with pytest.raises(CharonUnavailable):
        adapter.version()
    charon.running = False
    with pytest.raises(CharonUnavailable, match="cannot reach charon"):
        adapter.version()


def test_initiate_brings_up_every_child_with_a_timeout(adapter, charon):
    adapter.execute(Initiate("home", reason="fallback"))
    (request,) = [r for kind, r in charon.requests if kind == "initiate"]
    assert request == {"ike": "home", "child": "net", "timeout": 20000, "init-limits": "no"}


def test_initiate_of_an_unknown_connection_says_what_to_do(adapter):
    with pytest.raises(CharonRefused, match="load it"):
        adapter.initiate("office")


def test_terminate_finds_the_sa_by_spis_and_forces(adapter, charon):
    sa = adapter.snapshot().sas[0]
    assert adapter.terminate("home", sa.spi_i, sa.spi_r) is True
    (request,) = [r for kind, r in charon.requests if kind == "terminate"]
    assert request == {"ike-id": sa.uniqueid, "force": "yes", "timeout": 10000}
    assert adapter.terminate("home", "00", "00") is False  # already gone


def test_resync_emits_a_snapshot_and_incomplete_when_charon_counts_more(adapter, charon):
    charon.total = 2  # one SA busy, skipped by noblock
    adapter.execute(Resync(reason="check"))
    (snap,) = adapter.facts
    assert isinstance(snap, SaSnapshot) and not snap.complete
    assert ("list-sas", {"noblock": "yes"}) in charon.requests


def test_orders_for_other_adapters_are_refused_loudly(adapter):
    with pytest.raises(InternalError, match="SteerTo"):
        adapter.execute(SteerTo(Path("wlan0", "10.1.0.2", "203.0.113.10"), "10.1.0.1", reason="x"))


def test_stop_is_prompt(charon):
    a = CharonAdapter(emit=lambda f: None, session_factory=charon.factory, tick_s=0.5)
    a.start()
    a.connected.wait(2)
    t0 = time.monotonic()
    a.stop()
    assert time.monotonic() - t0 < 1.0
    assert not a._thread.is_alive()
    assert not any(t.name == "vici-events" for t in threading.enumerate())
