"""netlink_translate from rtnetlink messages recorded off the kernel (tests/unit/recorded/netlink),
rebuilt as pyroute2 message objects."""

from __future__ import annotations

import json

from recorded.messages import RECORDED, netlink_messages

from mobikectl.adapters import netlink_translate as nt
from mobikectl.engine.inputs import AddressChanged, LinkChanged, RouteChanged

NAMES = {1: "lo", 2: "wlan0", 3: "wwan0", 4: "ipsec0"}
IFF_RUNNING = 0x40


def facts(recording: str, key: str = "messages") -> list:
    out = [nt.translate(nt.to_plain(m), NAMES) for m in netlink_messages(recording, key)]
    return [f for f in out if f is not None]


def test_plain_form_is_json():
    for msg in netlink_messages("dump-rw", "routes") + netlink_messages("addr-ipv6"):
        plain = nt.to_plain(msg)
        assert json.loads(json.dumps(plain)) == plain


def test_links_in_a_dump_with_kind_and_flags():
    links = facts("dump-rw", "links")
    assert links == [
        LinkChanged("lo", 1, True, True, kind="", flags=("loopback",)),
        LinkChanged("wlan0", 2, True, True, kind="veth"),
        LinkChanged("wwan0", 3, True, True, kind="veth"),
        LinkChanged("ipsec0", 4, True, True, kind="tun", flags=("pointopoint", "noarp")),
    ]


def test_admin_down():
    link = [f for f in facts("link-admin-down") if isinstance(f, LinkChanged)]
    assert link == [LinkChanged("wwan0", 3, admin_up=False, carrier=False, kind="veth")]


def test_admin_down_flushes_ipv4_routes_without_telling():
    # the kernel drops wwan0's default and subnet routes but sends no RTM_DELROUTE for them:
    # the adapter has to dump again (see test_netlink_adapter)
    routes = [f for f in facts("link-admin-down") if isinstance(f, RouteChanged)]
    assert all(":" in r.dst for r in routes)


def test_carrier_loss_keeps_admin_up():
    link = [f for f in facts("link-carrier-loss") if isinstance(f, LinkChanged)]
    assert link == [LinkChanged("wwan0", 3, admin_up=True, carrier=False, kind="veth")]


def test_carrier_is_read_from_lower_up_not_running_or_operstate():
    """A carrier loss the kernel announced 1 s late (its linkwatch runs such events at most
    once a second): a RTM_GETLINK dump right after already has IFF_LOWER_UP cleared, while
    IFF_RUNNING and the operstate still say up until linkwatch runs."""
    doc = json.loads((RECORDED / "netlink" / "link-carrier-loss-late.json").read_text())
    assert doc["after_s"][0] >= 0.3 and doc["polled_after_s"] < 0.05
    polled = {nt.to_plain(m)["index"]: nt.to_plain(m) for m in netlink_messages("link-carrier-loss-late", "poll")}
    assert polled[3]["flags"] & IFF_RUNNING and polled[3]["attrs"]["IFLA_OPERSTATE"] == "UP"
    link = [f for f in facts("link-carrier-loss-late", "poll") if f.ifname == "wwan0"]
    assert link == [LinkChanged("wwan0", 3, admin_up=True, carrier=False, kind="veth")]
    # the notification, when it comes, says the same: the adapter's dedup drops it
    assert facts("link-carrier-loss-late") == link


def test_ipv6_address_tentative_then_valid_then_deprecated_then_gone():
    addrs = [f for f in facts("addr-ipv6") if isinstance(f, AddressChanged) and f.address == "2001:db8:2::2"]
    assert [(a.present, a.tentative, a.deprecated) for a in addrs] == [
        (True, True, False),    # added: DAD running
        (True, False, False),   # DAD done
        (True, False, True),    # preferred_lft 0
        (False, False, True),   # deleted
    ]
    assert {(a.ifname, a.prefixlen, a.temporary, a.dadfailed, a.peer) for a in addrs} == {("wwan0", 64, False, False, "")}


def test_ipv4_address_added_and_deleted():
    addrs = [f for f in facts("addr-ipv6") if isinstance(f, AddressChanged) and f.address == "10.2.0.9"]
    assert [(a.ifname, a.prefixlen, a.present, a.tentative) for a in addrs] == [
        ("wwan0", 24, True, False), ("wwan0", 24, False, False)]


def test_dump_routes_skip_charons_table_and_the_local_table():
    routes = facts("dump-rw", "routes")
    assert {r.table for r in routes} == {254}
    assert RouteChanged("default", "wlan0", "10.1.0.1", None, 100, 254, 3) in routes
    assert RouteChanged("default", "wwan0", "10.2.0.1", None, 200, 254, 3) in routes
    assert RouteChanged("10.1.0.0/24", "wlan0", None, "10.1.0.2", 0, 254, 2) in routes
    assert not any(r.dst.startswith("10.200.0.0") for r in routes)  # charon's table 220


def test_our_steering_route_is_reported_with_proto_73():
    routes = [f for f in facts("route-steering") if f.dst == "203.0.113.10/32"]
    assert routes == [
        RouteChanged("203.0.113.10/32", "wwan0", "10.2.0.1", "10.2.0.2", 0, 254, 73, present=True),
        RouteChanged("203.0.113.10/32", "wlan0", "10.1.0.1", "10.1.0.2", 0, 254, 73, present=True),
        RouteChanged("203.0.113.10/32", "wlan0", "10.1.0.1", "10.1.0.2", 0, 254, 73, present=False),
    ]


def test_other_routes_and_unknown_interfaces():
    routes = [f for f in facts("route-steering") if f.dst == "198.51.100.0/24"]
    assert [(r.ifname, r.nexthop, r.metric, r.present) for r in routes] == [
        ("wwan0", "10.2.0.1", 5, True), ("wwan0", "10.2.0.1", 5, False)]
    msg = netlink_messages("route-steering")[0]
    assert nt.translate(nt.to_plain(msg), {}).ifname is None


def test_charon_table_is_configurable():
    plain = nt.to_plain(netlink_messages("dump-rw", "routes")[0])
    assert plain["table"] == 220
    assert nt.translate(plain, NAMES) is None
    assert nt.translate(plain, NAMES, charon_table=221).dst == "10.200.0.0/24"
