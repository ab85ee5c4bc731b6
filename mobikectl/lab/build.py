"""Builds the lab's network from topology.py: namespaces, veths, addresses, routes, NAT.

Three passes so no step waits for another: (1) namespaces and sysctls, (2) veth pairs
created directly inside their namespaces and set up, (3) addresses and routes (IPv6 with
`nodad`, so nothing is tentative).
"""

from __future__ import annotations

from mobikectl.lab import topology as t
from mobikectl.lab.netns import add_namespace, ip_batch, nft, sysctls

_COMMON_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
}
_FORWARDING = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    # A router's veth that is set down (the `carrier` impairment) keeps its IPv6 address.
    "net.ipv6.conf.all.keep_addr_on_down": 1,
    "net.ipv6.conf.default.keep_addr_on_down": 1,
}


def build(lab: str, uplinks: list[str]) -> dict[str, str]:
    """Create every namespace and link of a lab; returns node -> namespace."""
    nodes = t.nodes_for(uplinks)
    ns = {node: t.ns_name(lab, node) for node in nodes}
    for node in nodes:
        add_namespace(ns[node])
        settings = dict(_COMMON_SYSCTLS)
        if node != t.RW and node != t.SRV:
            settings.update(_FORWARDING)
        sysctls(ns[node], settings)

    links: dict[str, list[str]] = {node: [] for node in nodes}
    ups: dict[str, list[str]] = {node: ["link set lo up"] for node in nodes}

    def veth(a: str, a_dev: str, b: str, b_dev: str) -> None:
        links[a].append(f"link add {a_dev} type veth peer name {b_dev} netns {ns[b]}")
        ups[a].append(f"link set dev {a_dev} up")
        ups[b].append(f"link set dev {b_dev} up")

    for name in uplinks:
        u = t.UPLINKS[name]
        veth(t.RW, u.name, u.router, u.lan_dev)
        veth(u.router, u.wan_dev, t.CORE, u.core_dev)
    veth(t.GW, t.GW_WAN_DEV, t.CORE, t.CORE_GW_DEV)
    veth(t.GW, t.GW_WAN2_DEV, t.CORE, t.CORE_GW2_DEV)
    veth(t.GW, t.GW_LAN_DEV, t.SRV, t.SRV_DEV)
    for node in nodes:
        ip_batch(ns[node], links[node])
    for node in nodes:
        ip_batch(ns[node], ups[node])

    cfg: dict[str, list[str]] = {node: [] for node in nodes}
    for name in uplinks:
        u = t.UPLINKS[name]
        cfg[t.RW] += rw_uplink_lines(u)
        r = cfg[u.router]
        r.append(f"addr add {u.router_addr}/{u.plen} dev {u.lan_dev}")
        r.append(f"addr add {u.wan_addr}/{u.wan_plen} dev {u.wan_dev}")
        r.append(f"route add default via {u.core_addr} dev {u.wan_dev}")
        c = cfg[t.CORE]
        c.append(f"addr add {u.core_addr}/{u.wan_plen} dev {u.core_dev}")
        if u.rw_addr6:
            r.append(f"addr add {u.router_addr6}/64 dev {u.lan_dev} nodad")
            r.append(f"addr add {u.wan_addr6}/64 dev {u.wan_dev} nodad")
            r.append(f"route add ::/0 via {u.core_addr6} dev {u.wan_dev}")
            c.append(f"addr add {u.core_addr6}/64 dev {u.core_dev} nodad")
            c.append(f"route add {u.subnet6} via {u.wan_addr6} dev {u.core_dev}")
        if u.nat is None:
            c.append(f"route add {u.subnet} via {u.wan_addr} dev {u.core_dev}")
    c = cfg[t.CORE]
    c.append(f"addr add {t.GW_CORE_ADDR}/{t.GW_PLEN} dev {t.CORE_GW_DEV}")
    c.append(f"addr add {t.GW_CORE_ADDR2}/{t.GW_PLEN} dev {t.CORE_GW2_DEV}")
    c.append(f"addr add {t.GW_CORE_ADDR6}/64 dev {t.CORE_GW2_DEV} nodad")
    g = cfg[t.GW]
    g.append(f"addr add {t.GW_ADDR}/{t.GW_PLEN} dev {t.GW_WAN_DEV}")
    g.append(f"addr add {t.GW_ADDR2}/{t.GW_PLEN} dev {t.GW_WAN2_DEV}")
    g.append(f"addr add {t.GW_ADDR6}/64 dev {t.GW_WAN2_DEV} nodad")
    g.append(f"addr add {t.GW_LAN_ADDR}/{t.LAN_PLEN} dev {t.GW_LAN_DEV}")
    g.append(f"route add default via {t.GW_CORE_ADDR} dev {t.GW_WAN_DEV}")
    g.append(f"route add ::/0 via {t.GW_CORE_ADDR6} dev {t.GW_WAN2_DEV}")
    cfg[t.SRV] += [f"addr add {t.SRV_ADDR}/{t.LAN_PLEN} dev {t.SRV_DEV}",
                   f"route add default via {t.GW_LAN_ADDR} dev {t.SRV_DEV}"]
    for node in nodes:
        ip_batch(ns[node], cfg[node])

    for name in uplinks:
        u = t.UPLINKS[name]
        if u.nat:
            nft(ns[u.router], nat_script(u, 0, fresh=True))
    return ns


def rw_uplink_lines(u: t.Uplink, *, replace: bool = False) -> list[str]:
    """rw's addresses and default routes on one uplink (also used to restore after `down`)."""
    verb = "replace" if replace else "add"
    lines = [f"addr {verb} {u.rw_addr}/{u.plen} dev {u.name}",
             f"route {verb} default via {u.router_addr} dev {u.name} metric {u.metric}"]
    if u.rw_addr6:
        lines.insert(1, f"addr {verb} {u.rw_addr6}/64 dev {u.name} nodad")
        lines.append(f"route {verb} ::/0 via {u.router_addr6} dev {u.name} metric {u.metric6}")
    return lines


def nat_ports(generation: int) -> tuple[int, int]:
    base = t.NAT_PORT_BASE + (generation % 40) * 1000
    return base, base + 999


def nat_script(u: t.Uplink, generation: int, *, fresh: bool = False) -> str:
    """nft script for a NAT router: masquerade rw's subnet, TCP/UDP into a port range."""
    lo, hi = nat_ports(generation)
    head = "table ip mobikectl_nat\n" + ("" if fresh else "flush table ip mobikectl_nat\n")
    return head + f"""table ip mobikectl_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{u.wan_dev}" ip saddr {u.subnet} meta l4proto {{ tcp, udp }} masquerade to :{lo}-{hi}
        oifname "{u.wan_dev}" ip saddr {u.subnet} masquerade
    }}
}}
"""
