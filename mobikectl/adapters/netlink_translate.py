"""Pure translation of rtnetlink messages (links, addresses, routes) into engine facts.

Two steps, both pure:
  to_plain(msg)           a pyroute2 message object → a plain dict of the fields and
                          attributes mobikectl uses (JSON-able; what tests and logs show)
  translate(plain, names) that dict → LinkChanged / AddressChanged / RouteChanged, or None

`names` maps interface indices to names: address and route messages carry only the
index (IPv6 addresses have no label). The adapter keeps it from the link messages.

Routes left out (None): charon's own table (220 by default) and the `local` table (255),
cloned (cache) routes, and routes that are not unicast (broadcast, local, multicast,
blackhole, ...). Our own steering routes (protocol 73) are reported like any other, so
the engine can adopt them after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mobikectl.engine.ids import UplinkName
from mobikectl.engine.inputs import AddressChanged, LinkChanged, RouteChanged

# rtnetlink numbers (linux/rtnetlink.h, linux/if.h, linux/if_addr.h)
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 16, 17, 20, 21, 24, 25
EVENT_NAMES = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK", RTM_NEWADDR: "RTM_NEWADDR",
               RTM_DELADDR: "RTM_DELADDR", RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE"}
IFF_UP, IFF_LOOPBACK, IFF_POINTOPOINT, IFF_NOARP, IFF_LOWER_UP = 0x1, 0x8, 0x10, 0x80, 0x10000
LINK_FLAG_NAMES = ((IFF_LOOPBACK, "loopback"), (IFF_POINTOPOINT, "pointopoint"), (IFF_NOARP, "noarp"))
IFA_F_SECONDARY = IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE = 0x08, 0x20, 0x40
AF_INET, AF_INET6 = 2, 10
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTN_UNICAST = 1
RTM_F_CLONED = 0x200
CHARON_TABLE = 220

LINK_ATTRS = ("IFLA_IFNAME", "IFLA_OPERSTATE")
ADDR_ATTRS = ("IFA_ADDRESS", "IFA_LOCAL", "IFA_LABEL", "IFA_FLAGS")
ROUTE_ATTRS = ("RTA_DST", "RTA_OIF", "RTA_GATEWAY", "RTA_PREFSRC", "RTA_PRIORITY", "RTA_TABLE")


def to_plain(msg: Any) -> dict:
    """A pyroute2 rtnl message (ifinfmsg, ifaddrmsg, rtmsg) as a plain dict."""
    kind = msg["header"]["type"]
    plain: dict[str, Any] = {"event": EVENT_NAMES.get(kind, str(kind))}
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        plain.update(index=msg["index"], flags=msg["flags"])
        plain["attrs"] = {a: msg.get_attr(a) for a in LINK_ATTRS if msg.get_attr(a) is not None}
        info_kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        if info_kind:
            plain["attrs"]["IFLA_INFO_KIND"] = info_kind
    elif kind in (RTM_NEWADDR, RTM_DELADDR):
        plain.update(family=msg["family"], index=msg["index"], prefixlen=msg["prefixlen"],
                     flags=msg["flags"], scope=msg["scope"])
        plain["attrs"] = {a: msg.get_attr(a) for a in ADDR_ATTRS if msg.get_attr(a) is not None}
    elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
        plain.update(family=msg["family"], dst_len=msg["dst_len"], table=msg["table"], proto=msg["proto"],
                     scope=msg["scope"], type=msg["type"], flags=msg["flags"])
        attrs = {a: msg.get_attr(a) for a in ROUTE_ATTRS if msg.get_attr(a) is not None}
        hops = msg.get_attr("RTA_MULTIPATH")
        if hops:  # a multipath route: keep its first next hop
            attrs["RTA_OIF"] = hops[0]["oif"]
            gateway = hops[0].get_attr("RTA_GATEWAY")
            if gateway:
                attrs["RTA_GATEWAY"] = gateway
        plain["attrs"] = attrs
    return plain


def translate(plain: Mapping[str, Any], names: Mapping[int, str] | None = None,
              *, charon_table: int = CHARON_TABLE) -> LinkChanged | AddressChanged | RouteChanged | None:
    """A plain rtnl message → a fact, or None for one the engine does not need."""
    names = names or {}
    event = plain.get("event", "")
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        return link(plain, present=event == "RTM_NEWLINK")
    if event in ("RTM_NEWADDR", "RTM_DELADDR"):
        return address(plain, names, present=event == "RTM_NEWADDR")
    if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        return route(plain, names, present=event == "RTM_NEWROUTE", charon_table=charon_table)
    return None


def link(plain: Mapping[str, Any], *, present: bool = True) -> LinkChanged | None:
    attrs = plain.get("attrs", {})
    name = attrs.get("IFLA_IFNAME")
    if not name:
        return None
    flags = plain.get("flags", 0)
    return LinkChanged(
        ifname=UplinkName(name),
        index=plain.get("index", 0),
        admin_up=bool(flags & IFF_UP) and present,
        carrier=bool(flags & IFF_LOWER_UP) and present,
        present=present,
        kind=attrs.get("IFLA_INFO_KIND") or "",
        flags=tuple(n for bit, n in LINK_FLAG_NAMES if flags & bit),
    )


def address(plain: Mapping[str, Any], names: Mapping[int, str], *, present: bool = True) -> AddressChanged | None:
    attrs = plain.get("attrs", {})
    local, addr = attrs.get("IFA_LOCAL"), attrs.get("IFA_ADDRESS")
    mine = local or addr
    if not mine:
        return None
    ifname = names.get(plain.get("index", 0)) or (attrs.get("IFA_LABEL") or "").split(":")[0]
    if not ifname:
        return None
    flags = attrs.get("IFA_FLAGS", plain.get("flags", 0))  # IFA_FLAGS has the 32-bit set
    v6 = plain.get("family") == AF_INET6
    return AddressChanged(
        ifname=UplinkName(ifname),
        address=mine,
        prefixlen=plain.get("prefixlen", 0),
        present=present,
        tentative=bool(flags & IFA_F_TENTATIVE),
        deprecated=bool(flags & IFA_F_DEPRECATED),
        dadfailed=bool(flags & IFA_F_DADFAILED),
        temporary=v6 and bool(flags & IFA_F_TEMPORARY),  # for IPv4 the bit means "secondary"
        peer=addr if local and addr and addr != local else "",
    )


def route(plain: Mapping[str, Any], names: Mapping[int, str], *, present: bool = True,
          charon_table: int = CHARON_TABLE) -> RouteChanged | None:
    attrs = plain.get("attrs", {})
    table = attrs.get("RTA_TABLE", plain.get("table", RT_TABLE_MAIN))
    if table in (charon_table, RT_TABLE_LOCAL):
        return None
    if plain.get("type", RTN_UNICAST) != RTN_UNICAST or plain.get("flags", 0) & RTM_F_CLONED:
        return None
    dst_len = plain.get("dst_len", 0)
    dst = attrs.get("RTA_DST")
    if dst is None and dst_len == 0:
        dst_text = "default"
    else:
        dst = dst or ("::" if plain.get("family") == AF_INET6 else "0.0.0.0")
        dst_text = f"{dst}/{dst_len}"
    oif = attrs.get("RTA_OIF")
    return RouteChanged(
        dst=dst_text,
        ifname=UplinkName(names[oif]) if oif in names else None,
        nexthop=attrs.get("RTA_GATEWAY"),
        src=attrs.get("RTA_PREFSRC"),
        metric=attrs.get("RTA_PRIORITY", 0),
        table=table,
        proto=plain.get("proto", 0),
        present=present,
    )
