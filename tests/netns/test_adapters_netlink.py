"""The netlink adapter inside the lab's rw namespace (root): the first NetSnapshot, carrier
loss, admin down (followed by a fresh snapshot, the kernel flushes IPv4 routes silently)
and our steering route, as the adapter reports them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mobikectl.lab import topology as t
from mobikectl.lab.fixtures import poll

pytestmark = pytest.mark.netns

WATCH = r"""
import sys
from mobikectl.adapters.netlink import NetlinkAdapter
def emit(fact):
    print(type(fact).__name__, repr(fact), flush=True)
a = NetlinkAdapter(emit=emit)
a.start()
print("ready", flush=True)
sys.stdin.readline()
a.stop()
"""


@pytest.fixture
def watch(mobike_lab):
    proc = mobike_lab.popen(t.RW, [sys.executable, "-c", WATCH], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        while True:
            line = proc.stdout.readline()
            assert line, "watcher died"
            if line.strip() == "ready":
                break
            lines.append(line)
        import threading

        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        yield lines
    finally:
        proc.stdin.close()
        proc.wait(5)


def seen(lines, *parts):
    return poll(lambda: [ln for ln in lines if all(p in ln for p in parts)], timeout=5)


def test_snapshot_first_with_uplinks_addresses_and_routes(watch):
    assert watch[0].startswith("NetSnapshot ")
    snap = watch[0]
    for text in ("ifname='wlan0'", "ifname='wwan0'", t.UPLINKS["wlan0"].rw_addr, "dst='default'"):
        assert text in snap
    assert "table=220" not in snap and "table=255" not in snap


def test_carrier_loss_is_reported(mobike_lab, watch):
    mobike_lab.impair("wwan0", "carrier")
    assert seen(watch, "LinkChanged", "ifname='wwan0'", "admin_up=True", "carrier=False")
    mobike_lab.clear("wwan0")
    assert seen(watch, "LinkChanged", "ifname='wwan0'", "carrier=True")


def test_admin_down_is_followed_by_a_new_snapshot(mobike_lab, watch):
    t0 = len(watch)
    mobike_lab.impair("wwan0", "down")
    assert seen(watch, "LinkChanged", "ifname='wwan0'", "admin_up=False")
    assert poll(lambda: any(ln.startswith("NetSnapshot") for ln in watch[t0:]), timeout=5)
    mobike_lab.clear("wwan0")


def test_our_steering_route_is_seen_with_proto_73(mobike_lab, watch):
    u = t.UPLINKS["wwan0"]
    code = ("from mobikectl.adapters import routes\nfrom mobikectl.engine.actions import SteerTo\n"
            "from mobikectl.engine.ids import Path\n"
            f"routes.install(SteerTo(Path('wwan0', {u.rw_addr!r}, {t.GW_ADDR!r}), {u.router_addr!r}, reason='t'))\n"
            f"routes.remove({t.GW_ADDR!r})")
    done = mobike_lab.exec(t.RW, [sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert seen(watch, "RouteChanged", f"dst='{t.GW_ADDR}/32'", "proto=73", "present=True")
    assert seen(watch, "RouteChanged", f"dst='{t.GW_ADDR}/32'", "proto=73", "present=False")
