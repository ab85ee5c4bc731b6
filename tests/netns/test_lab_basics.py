"""lab up -> tunnel up -> ping from the virtual IP; status as users run it; exec."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from mobikectl.lab import topology as t
from mobikectl.lab.netns import ping

pytestmark = pytest.mark.netns


def test_tunnel_carries_traffic_from_the_virtual_ip(lab):
    vip = lab.vip()
    assert vip and ipaddress.ip_address(vip) in ipaddress.ip_network(t.VIP_POOL)
    assert ping(lab.ns(t.RW), t.SRV_ADDR, src=vip, count=5, interval=0.02) == 5


def test_status_json_via_the_cli_shows_an_established_sa(lab):
    done = subprocess.run(["mobikectl", "lab", "status", "--name", lab.name, "--json"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == 1 and doc["up"] is True
    (sa,) = doc["sas"]["rw"]
    assert sa["state"] == "ESTABLISHED"
    assert sa["remote_host"] == t.GW_ADDR and sa["local_host"] == t.UPLINKS["eth0"].rw_addr
    assert sa["initiator_spi"] and sa["responder_spi"]
    assert sa["children"] and sa["children"][0]["spi_in"] and sa["children"][0]["state"] == "INSTALLED"
    assert doc["tunnel"] == {"established": True, "vip": sa["local_vips"][0], "to": t.SRV_ADDR, "reachable": True}
    assert doc["sas"]["gw"][0]["remote_vips"] == sa["local_vips"]
    assert doc["charons"]["rw"]["alive"] and doc["charons"]["gw"]["alive"]
    assert f"{t.GW_ADDR2}/24" in doc["nodes"]["gw"]["interfaces"]["wan2"]["addresses"]


def test_default_routes_follow_networkmanager_metrics(lab):
    routes = lab.exec(t.RW, ["ip", "-j", "route", "show", "default"], capture_output=True, text=True).stdout
    metrics = {r["dev"]: r["metric"] for r in json.loads(routes)}
    assert metrics == {"eth0": 100, "wlan0": 600, "wwan0": 700}


@pytest.mark.parametrize("uplink", t.ALL_UPLINKS)
def test_every_uplink_reaches_the_gateway(lab, uplink):
    assert lab.uplink_reaches_gateway(uplink)


def test_ipv6_is_routed_on_dock_and_wifi(lab):
    for uplink in ("eth0", "wlan0"):
        assert ping(lab.ns(t.RW), t.GW_ADDR6, dev=uplink, count=1) == 1


@pytest.mark.parametrize("uplink", t.ALL_UPLINKS)
def test_the_second_gateway_address_is_reachable(lab, uplink):
    assert ping(lab.ns(t.RW), t.GW_ADDR2, dev=uplink, count=1) == 1


def test_gw_announces_no_additional_address(lab):
    log = (lab.node_dir(t.RW) / "charon.log").read_text()
    assert "peer supports MOBIKE" in log and "got additional MOBIKE peer address" not in log


def test_exec_passes_environment_and_exit_code(lab):
    done = subprocess.run(["mobikectl", "lab", "exec", "--name", lab.name, "rw", "--", "sh", "-c",
                           'echo "$MOBIKECTL_VICI $STRONGSWAN_CONF"; exit 3'],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    vici, conf = done.stdout.split()
    assert vici == f"unix://{lab.vici_path('rw')}" and conf.endswith("/rw/strongswan.conf")
    # a controller run inside rw finds charon through that environment, and mobikectl works as typed
    done = subprocess.run(["mobikectl", "lab", "exec", "--name", lab.name, "rw", "--", "sh", "-c",
                           'swanctl --list-sas --uri "$MOBIKECTL_VICI" && mobikectl --version'],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "ESTABLISHED" in done.stdout and "mobikectl" in done.stdout


def test_up_on_a_healthy_lab_is_a_no_op(lab):
    pids = dict(lab.state.pids)
    result = lab.up()
    assert result["already_up"] is True and lab.state.pids == pids


def test_unknown_uplink_is_a_usage_error(lab):
    done = subprocess.run(["mobikectl", "lab", "impair", "--name", lab.name, "wlan0", "loss", "lots"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "integer" in done.stderr and "Traceback" not in done.stderr
