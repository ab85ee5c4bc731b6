"""Field faults (../shared/field-faults.md) the controller must handle, in the lab with real
charons: K5 (a path that answers pings but not udp/4500) and K8 (the tunnel device is never
an uplink)."""

from __future__ import annotations

import re

import pytest

from controller import WWAN, baseline, cli, running_controller, settled_sa, spis
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns


@pytest.fixture
def data_probe_controller(mobike_lab, ctl_policy, tmp_path):
    """The controller with the data-plane probe on: from the virtual IP to the protected host."""
    text = ctl_policy.read_text()
    text, n = re.subn(r'(?m)^data_target = .*$', f'data_target = "{t.SRV_ADDR}"', text, count=1)
    assert n == 1, "policies/default.toml has no [probes] data_target line any more"
    policy = tmp_path / "data-probe.toml"
    policy.write_text(text)
    with running_controller(mobike_lab, policy, tmp_path) as ctl:
        yield ctl


def test_k5_udp_4500_dropped_on_wifi_is_left(data_probe_controller):
    """The Wi-Fi NAT drops only udp/4500 (ICMP to the gateway still passes): the data-plane
    probe through the tunnel fails, the path is declared dead and the SA moves to wwan0."""
    ctl = data_probe_controller
    lab = ctl.lab
    before = baseline(lab)
    assert before
    cli("lab", "impair", "--name", lab.name, "wlan0", "drop-udp", "4500")
    assert lab.uplink_reaches_gateway("wlan0"), "the impairment must leave ICMP to the gateway alone"
    ctl.wait(lambda: settled_sa(lab, local=WWAN.rw_addr) and lab.tunnel_ok(count=1), 15.0,
             "traffic through wwan0 after udp/4500 is dropped on wlan0")
    after = settled_sa(lab, local=WWAN.rw_addr)
    assert spis(after) == spis(before), "the move must be MOBIKE on the same IKE_SA"
    st = ctl.status()
    assert st["uplinks"]["wlan0"]["health"] in ("down", "suspect")


def test_k8_tunnel_device_is_never_an_uplink(data_probe_controller):
    """ipsec0 holds the virtual IP and routes covering the protected network: it is never
    listed as an uplink nor used as a path."""
    st = data_probe_controller.status()
    assert "ipsec0" not in st["uplinks"]
    assert all(p["path"]["uplink"] in ("wlan0", "wwan0") for p in st["paths"])
    assert st["sas"][0]["uplink"] == "wlan0"
