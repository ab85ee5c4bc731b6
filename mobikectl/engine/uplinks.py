"""The laptop's uplinks as netlink shows them: links, their addresses, their default
routes, and our own steering routes.

An uplink is a link the policy manages (`policy.rule_for(ifname)`) that is not a tunnel or
virtual device (kernel-libipsec's `ipsec0`, xfrm interfaces, WireGuard, TUN, loopback).
Its usable source address for a gateway of one family is a present, non-tentative,
non-deprecated, non-dadfailed, non-link-local address of that family, preferring the
`src` of the uplink's default route, then stable over temporary addresses. Its nexthop is
the gateway of its default route (None on a point-to-point link without one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobikectl.engine.inputs import AddressChanged, LinkChanged, NetSnapshot, RouteChanged
from mobikectl.policy.model import Policy

VIRTUAL_KINDS = frozenset({"tun", "tap", "wireguard", "xfrm", "vti", "vti6", "ipip", "gre",
                           "gretap", "ip6tnl", "sit", "dummy"})
VIRTUAL_PREFIXES = ("ipsec", "xfrm")
DEFAULT_DSTS = frozenset({"default", "0.0.0.0/0", "::/0"})
MAIN_TABLE = 254


def family(address: str) -> int:
    return 6 if ":" in address else 4


def is_virtual(link: LinkChanged) -> bool:
    return (link.kind in VIRTUAL_KINDS or "loopback" in link.flags
            or link.ifname == "lo" or link.ifname.startswith(VIRTUAL_PREFIXES))


def host_of(dst: str) -> str:
    """'192.0.2.1/32' -> '192.0.2.1'; anything that is not a host route -> ''."""
    addr, _, plen = dst.partition("/")
    if plen and plen != ("128" if ":" in addr else "32"):
        return ""
    return addr


@dataclass
class Uplink:
    ifname: str
    link: LinkChanged | None = None
    addresses: dict[str, AddressChanged] = field(default_factory=dict)
    defaults: dict[tuple, RouteChanged] = field(default_factory=dict)

    @property
    def carrier(self) -> bool:
        return self.link is not None and self.link.carrier

    @property
    def admin_up(self) -> bool:
        return self.link is not None and self.link.admin_up

    def down_reason(self) -> str:
        """Why this uplink cannot carry anything ('' = it can)."""
        if self.link is None:
            return "link not seen"
        if not self.link.admin_up:
            return "link down"
        if not self.link.carrier:
            return "carrier lost"
        return ""

    def default_route(self, fam: int) -> RouteChanged | None:
        routes = [r for r in self.defaults.values() if _route_family(r) == fam]
        routes.sort(key=lambda r: (r.table != MAIN_TABLE, r.metric))
        return routes[0] if routes else None

    def nexthop(self, fam: int) -> str | None:
        route = self.default_route(fam)
        return route.nexthop if route is not None else None

    def source(self, fam: int) -> str | None:
        route = self.default_route(fam)
        preferred = route.src if route is not None else None
        usable = [a for a in self.addresses.values() if _usable(a) and family(a.address) == fam]
        usable.sort(key=lambda a: (a.address != preferred, a.temporary, a.address))
        return usable[0].address if usable else None

    def owns(self, address: str) -> bool:
        return address in self.addresses

    def usable_addresses(self) -> list[str]:
        found = [a.address for a in self.addresses.values() if _usable(a)]
        return sorted(found, key=lambda a: (family(a), a))


def _usable(a: AddressChanged) -> bool:
    if not a.present or a.tentative or a.deprecated or a.dadfailed:
        return False
    return not (a.address.lower().startswith("fe80:") or a.address.startswith("169.254."))


def _route_family(r: RouteChanged) -> int:
    if r.dst in ("default", "0.0.0.0/0"):
        return family(r.nexthop or r.src or "0.0.0.0")
    return 6 if r.dst == "::/0" else family(r.dst)


class Uplinks:
    """Every link netlink told us of; `managed()` lists the uplinks among them."""

    def __init__(self, policy: Policy, route_proto: int) -> None:
        self.policy = policy
        self.route_proto = route_proto
        self.links: dict[str, Uplink] = {}
        self.steering: dict[str, RouteChanged] = {}  # gateway -> our route as netlink shows it

    def _get(self, ifname: str) -> Uplink:
        if ifname not in self.links:
            self.links[ifname] = Uplink(ifname)
        return self.links[ifname]

    def link_changed(self, fact: LinkChanged) -> None:
        if not fact.present:
            self.links.pop(fact.ifname, None)
            return
        self._get(fact.ifname).link = fact

    def address_changed(self, fact: AddressChanged) -> None:
        up = self._get(fact.ifname)
        if fact.present:
            up.addresses[fact.address] = fact
        else:
            up.addresses.pop(fact.address, None)

    def route_changed(self, fact: RouteChanged) -> str | None:
        """Returns the gateway whose steering route changed, if it is one of ours."""
        if fact.proto == self.route_proto:
            gw = host_of(fact.dst)
            if not gw:
                return None
            if fact.present:
                self.steering[gw] = fact
            elif gw in self.steering and _same_route(self.steering[gw], fact):
                del self.steering[gw]
            return gw
        if fact.dst in DEFAULT_DSTS and fact.ifname:
            key = (fact.dst, fact.table, fact.metric, fact.nexthop)
            if fact.present:
                self._get(fact.ifname).defaults[key] = fact
            elif fact.ifname in self.links:
                self.links[fact.ifname].defaults.pop(key, None)
        return None

    def snapshot(self, snap: NetSnapshot) -> None:
        self.links.clear()
        self.steering.clear()
        for link in snap.links:
            self.link_changed(link)
        for addr in snap.addresses:
            self.address_changed(addr)
        for route in snap.routes:
            self.route_changed(route)

    def is_managed(self, ifname: str) -> bool:
        up = self.links.get(ifname)
        if up is None or self.policy.rule_for(ifname) is None:
            return False
        return up.link is None or not is_virtual(up.link)

    def managed(self) -> list[Uplink]:
        return [u for name, u in sorted(self.links.items()) if self.is_managed(name)]

    def owner_of(self, address: str) -> Uplink | None:
        for up in self.managed():
            if up.owns(address):
                return up
        return None


def _same_route(a: RouteChanged, b: RouteChanged) -> bool:
    return (a.ifname, a.src, a.nexthop) == (b.ifname, b.src, b.nexthop) or b.ifname is None
