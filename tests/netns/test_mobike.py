"""charon's own MOBIKE move when the active uplink goes down, and charon restarts."""

from __future__ import annotations

import subprocess
import time

import pytest

from mobikectl.lab import topology as t
from mobikectl.lab.netns import pid_alive
from mobikectl.lab.pinger import Pinger
from mobikectl.lab.sas import EventListener

pytestmark = pytest.mark.netns

WLAN = t.UPLINKS["wlan0"].rw_addr
WWAN = t.UPLINKS["wwan0"].rw_addr


def the_sa(lab):
    (sa,) = lab.list_sas(t.RW)
    return sa


def test_link_down_moves_the_ike_sa_with_mobike(mobike_lab):
    lab = mobike_lab
    before = the_sa(lab)
    assert before["local_host"] == WLAN and before["state"] == "ESTABLISHED"
    meter = Pinger(lab, src=lab.vip(), hz=100, duration=30).start()
    try:
        assert lab.wait_tunnel(time.monotonic() + 2)
        with EventListener(lab.vici_path(t.RW)) as events:
            fault = meter.mark()
            lab.impair("wlan0", "down")
            got = events.wait_for("ike-update", time.monotonic() + 10)
        assert got is not None, "no ike-update within 10 s"
        msg, at = got
        assert msg["local-host"] == WWAN and msg["remote-host"] == t.GW_ADDR
        old = msg[t.CONN]
        assert old["local-host"] == WLAN  # the SA as it was, under its name
        assert at - fault < 2.0
        assert lab.wait_tunnel(time.monotonic() + 10)
        # traffic keeps flowing for a while after the move
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.05)
        report = meter.stop()
    finally:
        meter.kill()
    after = the_sa(lab)
    assert after["local_host"] == WWAN
    assert (after["initiator_spi"], after["responder_spi"]) == (before["initiator_spi"], before["responder_spi"])
    assert after["local_vips"] == before["local_vips"]
    assert report["recovered"] and report["replies_after_mark"] > 10
    assert report["max_gap_ms"] < 2000, report


def test_restart_charon_rw_brings_the_tunnel_back(mobike_lab):
    lab = mobike_lab
    old_pid = lab.state.pids["rw"]
    before = the_sa(lab)
    done = subprocess.run(["mobikectl", "lab", "restart-charon", "--name", lab.name, "rw"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tunnel up" in done.stderr
    assert lab.state.pids["rw"] != old_pid and not pid_alive(old_pid)
    assert lab.tunnel_ok()
    after = the_sa(lab)
    assert after["initiator_spi"] != before["initiator_spi"]  # a new IKE_SA
    # the gateway replaced the old SA (unique = replace): one IKE_SA for the laptop
    assert _eventually_one(lab)


def _eventually_one(lab) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(lab.list_sas(t.GW)) == 1:
            return True
        time.sleep(0.05)
    return False


def test_restart_charon_gw_then_rw_initiates_again(mobike_lab):
    lab = mobike_lab
    lab.restart_charon("gw")
    assert lab.list_sas(t.GW) == []  # a restarted gateway knows no SA
    lab.restart_charon("rw")
    assert lab.tunnel_ok()


def test_a_host_route_steers_the_sa_and_it_stays_on_ipv4(mobike_lab):
    """The controller's lever (controller profile: prefer_best_path = yes): a /32 route to
    the gateway with `src` moves the IKE_SA; removing it moves it back. gw does not announce
    its IPv6 address, so path checks never take the SA to IPv6."""
    lab = mobike_lab
    wwan = t.UPLINKS["wwan0"]

    def on(addr):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sas = [sa for sa in lab.list_sas(t.RW) if sa["state"] == "ESTABLISHED"]
            if sas and sas[0]["local_host"] == addr and "IKE_MOBIKE" not in sas[0]["tasks_active"]:
                return True
            time.sleep(0.05)
        return False

    assert on(WLAN)
    spis = the_sa(lab)["initiator_spi"]
    for _ in range(2):
        lab.exec(t.RW, ["ip", "route", "add", f"{t.GW_ADDR}/32", "via", wwan.router_addr, "dev", "wwan0",
                        "src", WWAN, "metric", "50"], check=True)
        assert on(WWAN)
        lab.exec(t.RW, ["ip", "route", "del", f"{t.GW_ADDR}/32"], check=True)
        assert on(WLAN)
    assert the_sa(lab)["initiator_spi"] == spis
    assert lab.wait_tunnel(time.monotonic() + 5)
