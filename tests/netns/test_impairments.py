"""Each impairment has its intended effect on the uplink, and `clear` undoes it.

Probes: pings bound to rw's device towards the gateway, a UDP echo in gw (reports the
public source address and port it saw), large DF pings for the MTU.
"""

from __future__ import annotations

import json
import shutil

import pytest

from mobikectl.errors import UsageError
from mobikectl.lab import topology as t
from mobikectl.lab.fixtures import poll
from mobikectl.lab.netns import link_flags, ping

pytestmark = pytest.mark.netns


def reaches(lab, uplink, count=3):
    return ping(lab.ns(t.RW), t.GW_ADDR, dev=uplink, count=count, interval=0.05, wait=0.4) > 0


def default_routes(lab):
    out = lab.exec(t.RW, ["ip", "-j", "route", "show", "default"], capture_output=True, text=True).stdout
    return {(r["dev"], r["gateway"], r["metric"]) for r in json.loads(out)}


def test_down_then_clear(lab):
    before = default_routes(lab)
    lab.impair("wlan0", "down")
    assert "UP" not in link_flags(lab.ns(t.RW), "wlan0")
    assert not any(dev == "wlan0" for dev, _, _ in default_routes(lab))
    assert not reaches(lab, "wlan0", count=1)
    assert lab.state.impairments == {"wlan0": [{"kind": "down", "arg": None}]}
    lab.clear("wlan0")
    assert default_routes(lab) == before
    assert poll(lambda: reaches(lab, "wlan0", count=1))
    assert lab.state.impairments == {}


def test_up_restores_addresses_and_routes(lab):
    before = default_routes(lab)
    lab.impair("wlan0", "down")
    lab.impair("wlan0", "up")
    assert default_routes(lab) == before
    addrs = lab.exec(t.RW, ["ip", "-j", "addr", "show", "dev", "wlan0"], capture_output=True, text=True).stdout
    locals_ = {a["local"] for a in json.loads(addrs)[0]["addr_info"]}
    assert {t.UPLINKS["wlan0"].rw_addr, t.UPLINKS["wlan0"].rw_addr6} <= locals_
    assert poll(lambda: reaches(lab, "wlan0", count=1))
    assert "wlan0" not in lab.state.impairments


def test_carrier_loss_keeps_the_link_admin_up(lab):
    lab.impair("wlan0", "carrier")
    flags = poll(lambda: "NO-CARRIER" in link_flags(lab.ns(t.RW), "wlan0") and link_flags(lab.ns(t.RW), "wlan0"))
    assert flags and "UP" in flags and "NO-CARRIER" in flags
    assert not reaches(lab, "wlan0", count=1)
    lab.clear("wlan0")
    assert poll(lambda: "LOWER_UP" in link_flags(lab.ns(t.RW), "wlan0"))
    assert poll(lambda: reaches(lab, "wlan0", count=1))


@pytest.mark.parametrize("uplink", ["eth0", "wlan0"])
def test_blackhole_keeps_link_up_and_drops_everything(lab, uplink):
    lab.impair(uplink, "blackhole")
    assert "LOWER_UP" in link_flags(lab.ns(t.RW), uplink)
    assert not reaches(lab, uplink)
    others = [u for u in lab.state.uplinks if u != uplink]
    assert all(reaches(lab, u, count=1) for u in others)
    assert lab.status()["impairments"] == {uplink: ["blackhole"]}
    lab.clear(uplink)
    assert poll(lambda: reaches(lab, uplink, count=1))


def test_loss_drops_a_share_in_each_direction(lab):
    lab.impair("wwan0", "loss", 100)
    assert not reaches(lab, "wwan0")
    lab.clear("wwan0")
    lab.impair("wwan0", "loss", "50")
    got = ping(lab.ns(t.RW), t.GW_ADDR, dev="wwan0", count=200, interval=0.005, wait=0.3)
    # 50 % each way: 25 % of the round trips survive; bounds far from flaky
    assert 15 <= got <= 90, got
    lab.clear("wwan0")
    assert ping(lab.ns(t.RW), t.GW_ADDR, dev="wwan0", count=20, interval=0.005, wait=0.3) == 20


def test_drop_udp_port(lab, udp_echo):
    assert udp_echo("wlan0")
    lab.impair("wlan0", "drop-udp", 5555)
    assert udp_echo("wlan0") is None
    assert udp_echo("eth0")  # only that uplink's router filters
    assert reaches(lab, "wlan0", count=1)  # other traffic passes
    lab.clear("wlan0")
    assert udp_echo("wlan0")


def test_mtu_drops_larger_packets_silently(lab):
    big, small = 1200, 900  # ICMP payload; +28 bytes of headers
    assert ping(lab.ns(t.RW), t.GW_ADDR, dev="wlan0", size=big, df=True) == 1
    lab.impair("wlan0", "mtu", 1000)
    assert ping(lab.ns(t.RW), t.GW_ADDR, dev="wlan0", size=big, df=True, count=2, interval=0.05) == 0
    assert ping(lab.ns(t.RW), t.GW_ADDR, dev="wlan0", size=small, df=True) == 1
    lab.clear("wlan0")
    assert ping(lab.ns(t.RW), t.GW_ADDR, dev="wlan0", size=big, df=True) == 1


@pytest.mark.parametrize("uplink", ["wlan0", "wwan0"])
def test_nat_remap_changes_the_public_port(lab, udp_echo, uplink):
    if not shutil.which("conntrack"):
        pytest.skip("conntrack missing (apt-get install conntrack)")
    public = t.UPLINKS[uplink].wan_addr
    first = udp_echo(uplink, sport=4600)
    ip, port = first.split(":")
    assert ip == public and 20000 <= int(port) <= 20999
    assert udp_echo(uplink, sport=4600) == first  # the mapping holds
    lab.impair(uplink, "nat-remap")
    second = udp_echo(uplink, sport=4600)
    ip2, port2 = second.split(":")
    assert ip2 == public and 21000 <= int(port2) <= 21999
    assert lab.status()["nat_ports"][uplink] == "21000-21999"
    lab.clear(uplink)
    assert lab.status()["nat_ports"][uplink] == "20000-20999"


def test_nat_remap_needs_a_nated_uplink(lab):
    with pytest.raises(UsageError):
        lab.impair("eth0", "nat-remap")


def test_clear_all_undoes_several_impairments(lab):
    lab.impair("eth0", "blackhole")
    lab.impair("wlan0", "down")
    lab.impair("wwan0", "mtu", 600)
    lab.clear()
    assert lab.state.impairments == {}
    assert all(poll(lambda u=u: reaches(lab, u, count=1)) for u in t.ALL_UPLINKS)
