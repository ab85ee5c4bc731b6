"""The lab's topology as data: nodes, links, addresses. Other code imports these.

    rw (laptop) ──eth0── dock (routed) ──┐
                ──wlan0─ wifi (NAT44) ───┼── core ("the internet") ── gw ── srv
                ──wwan0─ cell (CGNAT) ───┘

Every namespace is ``mk-<lab>-<node>``. Only private and documentation ranges are used:
192.168.0.0/16, 172.16.0.0/12, 100.64.0.0/10 (shared CGN space), 10.0.0.0/8,
198.18.0.0/15 (benchmarking), 203.0.113.0/24 (TEST-NET-3) and 2001:db8::/32.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "mk-"

RW, GW, SRV, CORE = "rw", "gw", "srv", "core"


@dataclass(frozen=True)
class Uplink:
    """One of the laptop's uplinks, a veth from rw to its own router namespace."""

    name: str            # device name in rw (eth0, wlan0, wwan0)
    router: str          # router node (dock, wifi, cell)
    nat: str | None      # None, "nat44" or "cgnat"
    metric: int          # default-route metric in rw, as NetworkManager would set it
    rw_addr: str         # rw's address on the uplink
    router_addr: str     # the router's address on the uplink (rw's default gateway)
    plen: int
    rw_addr6: str | None
    router_addr6: str | None
    wan_addr: str        # the router's address towards core (the NAT's public address)
    core_addr: str       # core's address on that link
    wan_plen: int
    wan_addr6: str | None
    core_addr6: str | None
    core_dev: str        # device name in core towards this router

    # device names inside the router namespace
    lan_dev: str = "lan"     # towards rw
    wan_dev: str = "wan"     # towards core

    @property
    def subnet(self) -> str:
        a, b, c, _ = self.rw_addr.split(".")
        return f"{a}.{b}.{c}.0/{self.plen}"

    @property
    def subnet6(self) -> str | None:
        return self.rw_addr6.rsplit("::", 1)[0] + "::/64" if self.rw_addr6 else None

    @property
    def metric6(self) -> int:
        return self.metric


UPLINKS: dict[str, Uplink] = {
    u.name: u
    for u in (
        Uplink(
            name="eth0", router="dock", nat=None, metric=100,
            rw_addr="172.16.10.2", router_addr="172.16.10.1", plen=24,
            rw_addr6="2001:db8:10::2", router_addr6="2001:db8:10::1",
            wan_addr="198.18.1.2", core_addr="198.18.1.1", wan_plen=24,
            wan_addr6="2001:db8:1::2", core_addr6="2001:db8:1::1", core_dev="dock",
        ),
        Uplink(
            name="wlan0", router="wifi", nat="nat44", metric=600,
            rw_addr="192.168.20.2", router_addr="192.168.20.1", plen=24,
            rw_addr6="2001:db8:20::2", router_addr6="2001:db8:20::1",
            wan_addr="198.18.2.2", core_addr="198.18.2.1", wan_plen=24,
            wan_addr6="2001:db8:2::2", core_addr6="2001:db8:2::1", core_dev="wifi",
        ),
        Uplink(
            name="wwan0", router="cell", nat="cgnat", metric=700,
            rw_addr="100.64.30.2", router_addr="100.64.30.1", plen=24,
            rw_addr6=None, router_addr6=None,
            wan_addr="198.18.3.2", core_addr="198.18.3.1", wan_plen=24,
            wan_addr6=None, core_addr6=None, core_dev="cell",
        ),
    )
}
ALL_UPLINKS = tuple(UPLINKS)  # eth0, wlan0, wwan0 (preference order)

# The gateway: two IPv4 addresses and one IPv6 address, on two links to core.
#   wan  (core: gw)  203.0.113.10/24                      the address rw connects to
#   wan2 (core: gw2) 198.51.100.10/24, 2001:db8:100::10/64
# gw's charon uses only `wan` (interfaces_use), so it does NOT announce the other two as
# MOBIKE additional addresses. Announced, they made rw's path checks after a roam pick
# whichever pair answered first (192.168.20.2 -> the second address, or IPv6), so a steering
# route to 203.0.113.10 no longer applied (seen in the lab). Both stay reachable for the
# cases that configure several gateway addresses.
GW_ADDR = "203.0.113.10"         # rw's remote_addrs
GW_ADDR2 = "198.51.100.10"
GW_ADDRS = (GW_ADDR, GW_ADDR2)
GW_ADDR6 = "2001:db8:100::10"
GW_PLEN = 24
GW_CORE_ADDR = "203.0.113.1"     # core's address on the wan link (gw's default gateway)
GW_CORE_ADDR2 = "198.51.100.1"
GW_CORE_ADDR6 = "2001:db8:100::1"
GW_WAN_DEV = "wan"               # in gw, towards core
CORE_GW_DEV = "gw"               # in core, towards gw's wan
GW_WAN2_DEV = "wan2"
CORE_GW2_DEV = "gw2"

# Behind the gateway: the protected network with one host.
PROTECTED_NET = "10.200.0.0/24"
GW_LAN_ADDR = "10.200.0.1"
SRV_ADDR = "10.200.0.10"
LAN_PLEN = 24
GW_LAN_DEV = "lan"
SRV_DEV = "eth0"

# Virtual IPs handed out by gw; rw gets the first one.
VIP_POOL = "10.99.0.0/24"

# IKE identities and the connection/child names loaded into both charons.
RW_ID = "rw@lab.mobikectl"
GW_ID = "gw.lab.mobikectl"
CONN = "home"
CHILD = "net"

# Mark on charon's own packets and lookups in the controller profile (see configs/).
CHARON_FWMARK = 0x4D42

# NAT port ranges: generation g of a NATed uplink masquerades to NAT_PORT_BASE + g*1000 ...+999.
NAT_PORT_BASE = 20000

ROUTERS = tuple(u.router for u in UPLINKS.values())
NODES = (RW, *ROUTERS, CORE, GW, SRV)


def nodes_for(uplinks: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The nodes a lab with these uplinks has (routers of absent uplinks are not created)."""
    routers = [UPLINKS[u].router for u in uplinks]
    return (RW, *routers, CORE, GW, SRV)


def ns_name(lab: str, node: str) -> str:
    return f"{PREFIX}{lab}-{node}"


def uplink_by_router(router: str) -> Uplink:
    for u in UPLINKS.values():
        if u.router == router:
            return u
    raise KeyError(router)
