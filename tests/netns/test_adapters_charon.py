"""The VICI adapter and the steering route against real charons in the lab (root).

The lab's `mobike_lab`: rw with wlan0 (default route metric 600) and wwan0 (700), charon
with prefer_best_path = yes (controller profile). The adapter runs in the test process: the
VICI socket is a path in the lab's directory, reachable from any network namespace.
Routes are put in inside rw's namespace (a subprocess under `ip netns exec`).
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from mobikectl.adapters.vici import CharonAdapter
from mobikectl.engine.inputs import (
    CharonConnected, CharonLost, ChildRekeyed, IkeUp, IkeUpdated, SaSnapshot,
)
from mobikectl.lab import topology as t
from mobikectl.lab.fixtures import poll
from mobikectl.settings import CharonSettings

pytestmark = pytest.mark.netns

WLAN, WWAN = t.UPLINKS["wlan0"], t.UPLINKS["wwan0"]


class Facts(list):
    def append(self, fact):
        super().append((time.monotonic(), fact))

    def of(self, kind, since=0.0):
        return [f for ts, f in self if isinstance(f, kind) and ts >= since]

    def wait(self, kind, since=0.0, timeout=10.0, where=lambda f: True):
        found = poll(lambda: [(ts, f) for ts, f in self if isinstance(f, kind) and ts >= since and where(f)],
                     timeout=timeout)
        assert found, f"no {kind.__name__} within {timeout}s: {[type(f).__name__ for _, f in self]}"
        return found[0]


@pytest.fixture
def charon(mobike_lab):
    facts = Facts()
    adapter = CharonAdapter(emit=facts.append,
                            settings=CharonSettings(vici_socket=str(mobike_lab.vici_path(t.RW))))
    adapter.facts = facts
    adapter.start()
    try:
        facts.wait(SaSnapshot)
        yield adapter
    finally:
        adapter.stop()
        rw_python(mobike_lab, "from mobikectl.adapters import routes; routes.remove_all()")


def rw_python(lab, code: str) -> str:
    done = lab.exec(t.RW, [sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


def steer(lab, uplink) -> None:
    rw_python(lab, "from mobikectl.adapters import routes\n"
                   "from mobikectl.engine.actions import SteerTo\nfrom mobikectl.engine.ids import Path\n"
                   f"routes.install(SteerTo(Path({uplink.name!r}, {uplink.rw_addr!r}, {t.GW_ADDR!r}), "
                   f"{uplink.router_addr!r}, reason='test'))")


def local_host(adapter) -> str | None:
    """The SA's local address once it is established and idle (no exchange in flight)."""
    sas = [sa for sa in adapter.snapshot().sas if sa.state == "ESTABLISHED" and not sa.busy]
    return sas[0].local_host if len(sas) == 1 else None


def settle_on(adapter, uplink, timeout=15.0) -> None:
    assert poll(lambda: local_host(adapter) == uplink.rw_addr, timeout=timeout), \
        f"SA not on {uplink.name}: {adapter.snapshot()}"


def test_first_facts_are_connected_and_a_snapshot_with_the_sa(charon):
    kinds = [type(f) for _, f in charon.facts]
    assert kinds[:2] == [CharonConnected, SaSnapshot]
    assert "5.9" in charon.facts[0][1].version
    snap = charon.facts[1][1]
    assert t.CONN in snap.conns and snap.sas and snap.sas[0].vips


def test_steering_route_moves_the_sa_and_removing_it_follows_the_metrics(mobike_lab, charon):
    settle_on(charon, WLAN)
    before = [sa for sa in charon.snapshot().sas][0]
    t0 = time.monotonic()
    steer(mobike_lab, WWAN)
    ts, moved = charon.facts.wait(IkeUpdated, since=t0, where=lambda f: f.new_local == WWAN.rw_addr)
    print(f"\nroute install -> ike-update: {1000 * (ts - t0):.0f} ms (includes the subprocess)")
    assert (moved.spi_i, moved.spi_r) == before.spis  # the same IKE_SA: a MOBIKE move, not a new SA
    settle_on(charon, WWAN, timeout=5)
    assert rw_python(mobike_lab, "from mobikectl.adapters import routes; print(routes.check_route("
                                 f"{t.GW_ADDR!r}))").strip() == str((WWAN.name, WWAN.rw_addr))
    ours = json.loads(rw_python(mobike_lab, "import json; from mobikectl.adapters import routes; "
                                            "print(json.dumps([r.dst for r in routes.list_ours()]))"))
    assert ours == [f"{t.GW_ADDR}/32"]

    t1 = time.monotonic()
    rw_python(mobike_lab, f"from mobikectl.adapters import routes; assert routes.remove({t.GW_ADDR!r})")
    charon.facts.wait(IkeUpdated, since=t1, where=lambda f: f.new_local == WLAN.rw_addr)
    settle_on(charon, WLAN, timeout=5)
    assert charon.snapshot().sas[0].spis == before.spis


def test_charon_moving_by_itself_is_seen_as_ike_update(mobike_lab, charon):
    settle_on(charon, WLAN)
    t0 = time.monotonic()
    mobike_lab.impair("wlan0", "down")
    ts, moved = charon.facts.wait(IkeUpdated, since=t0)
    assert (moved.old_local, moved.new_local) == (WLAN.rw_addr, WWAN.rw_addr)
    charon.facts.wait(ChildRekeyed, since=t0)  # kernel-libipsec rekeys the CHILD_SA after a move
    t1 = time.monotonic()
    mobike_lab.clear("wlan0")
    # prefer_best_path takes it back to wlan0 (better metric). charon's MOBIKE check probes
    # every address the gateway announced, and the first answer wins: often the gateway's
    # IPv6 address over wlan0's IPv6. Either way the SA is back on wlan0.
    ts, _ = charon.facts.wait(IkeUpdated, since=t1,
                              where=lambda f: f.new_local in (WLAN.rw_addr, WLAN.rw_addr6))
    charon.facts.wait(ChildRekeyed, since=ts)


def test_survives_a_charon_restart_and_resyncs(mobike_lab, charon):
    t0 = time.monotonic()
    result = mobike_lab.restart_charon(t.RW)
    charon.facts.wait(CharonLost, since=t0)
    ts, _ = charon.facts.wait(CharonConnected, since=t0)
    snaps = [f for f in charon.facts.of(SaSnapshot, since=ts)]
    assert snaps, "no snapshot after reconnecting"
    print(f"\ncharon restart: reconnected {ts - t0:.2f} s after the restart began ({result['seconds']} s)")
    # the lab initiates again: the adapter sees the new SA either as IkeUp (connected before)
    # or in the snapshot it sends on reconnecting (connected after)
    assert snaps[0].sas or poll(lambda: charon.facts.of(IkeUp, since=ts), timeout=10)
    assert poll(lambda: local_host(charon) is not None, timeout=10)
