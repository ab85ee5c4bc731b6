"""Impairments of one uplink, each reversible. Applied in the uplink's router namespace
(nftables table `inet mobikectl_impair`, so clearing is deleting that table) or on the
laptop's link.

    down            rw's link admin-down (the kernel flushes its IPv4 routes)
    up              rw's link admin-up, its addresses and default routes restored
    carrier         the router's end of the veth goes down: rw's link stays admin-up but
                    shows NO-CARRIER (Wi-Fi losing association)
    blackhole       the router drops everything to and from the laptop on that uplink
    loss PCT        random loss of PCT percent in each direction (nft numgen; no netem)
    drop-udp PORT   the router drops UDP to and from PORT
    nat-remap       NATed uplinks: the NAT forgets the laptop's mappings (conntrack) and
                    shifts its port range, so the next packet leaves from a new public port
    mtu N           the router forwards at most N bytes (IP length) on that uplink and
                    silently drops larger packets (no ICMP)
"""

from __future__ import annotations

from mobikectl.errors import UsageError
from mobikectl.lab import topology as t
from mobikectl.lab.build import nat_ports, nat_script, rw_uplink_lines
from mobikectl.lab.netns import ip, ip_batch, nft, require_tool, run, ns_argv

KINDS = ("down", "up", "carrier", "blackhole", "loss", "drop-udp", "nat-remap", "mtu")
NEEDS_ARG = {"loss": "PCT", "drop-udp": "PORT", "mtu": "N"}
TABLE = "mobikectl_impair"

_SKELETON = f"""table inet {TABLE} {{
    chain forward {{ type filter hook forward priority filter - 10; policy accept; }}
    chain input {{ type filter hook input priority filter - 10; policy accept; }}
    chain output {{ type filter hook output priority filter - 10; policy accept; }}
}}
"""


def parse_arg(kind: str, arg) -> int | None:
    """Validate an impairment's argument; returns it as int (or None)."""
    if kind not in KINDS:
        raise UsageError(f"unknown impairment {kind!r}: use one of {', '.join(KINDS)}")
    if kind not in NEEDS_ARG:
        if arg not in (None, ""):
            raise UsageError(f"impairment {kind} takes no argument (got {arg!r})")
        return None
    if arg in (None, ""):
        raise UsageError(f"impairment {kind} needs {NEEDS_ARG[kind]}: mobikectl lab impair UPLINK {kind} {NEEDS_ARG[kind]}")
    try:
        value = int(arg)
    except (TypeError, ValueError):
        raise UsageError(f"impairment {kind}: {NEEDS_ARG[kind]} must be an integer, got {arg!r}") from None
    low, high = {"loss": (0, 100), "drop-udp": (1, 65535), "mtu": (68, 1500)}[kind]
    if not low <= value <= high:
        raise UsageError(f"impairment {kind}: {NEEDS_ARG[kind]} must be between {low} and {high}, got {value}")
    return value


def _rules(u: t.Uplink, kind: str, arg: int | None) -> list[str]:
    """nft rules (chain, match) for the nft kinds; both directions of the uplink."""
    lan = f'"{u.lan_dev}"'
    if kind == "blackhole":
        return [f"forward iifname {lan} drop", f"forward oifname {lan} drop",
                f"input iifname {lan} drop", f"output oifname {lan} drop"]
    if kind == "loss":
        if not arg:
            return []
        m = "drop" if arg >= 100 else f"numgen random mod 100 < {arg} drop"
        return [f"forward iifname {lan} {m}", f"forward oifname {lan} {m}",
                f"input iifname {lan} {m}", f"output oifname {lan} {m}"]
    if kind == "drop-udp":
        return [f"forward iifname {lan} udp dport {arg} drop", f"forward iifname {lan} udp sport {arg} drop",
                f"forward oifname {lan} udp dport {arg} drop", f"forward oifname {lan} udp sport {arg} drop"]
    if kind == "mtu":
        return [f"forward iifname {lan} meta length > {arg} drop", f"forward oifname {lan} meta length > {arg} drop"]
    raise AssertionError(kind)


def apply(lab: str, uplink: str, kind: str, arg: int | None, nat_generation: int = 0) -> dict:
    """Apply one impairment; returns a record for state.json (kind, arg, details)."""
    u = t.UPLINKS[uplink]
    rw = t.ns_name(lab, t.RW)
    router = t.ns_name(lab, u.router)
    record: dict = {"kind": kind, "arg": arg}
    if kind == "down":
        ip(rw, "link", "set", "dev", u.name, "down")
    elif kind == "up":
        restore_link(lab, u)
    elif kind == "carrier":
        ip(router, "link", "set", "dev", u.lan_dev, "down")
    elif kind == "nat-remap":
        if not u.nat:
            raise UsageError(f"nat-remap: {uplink} is not NATed (NATed uplinks: "
                             f"{', '.join(n for n, x in t.UPLINKS.items() if x.nat)})")
        require_tool("conntrack")
        new_gen = nat_generation + 1
        nft(router, nat_script(u, new_gen))
        forget_mappings(router, u)
        record["generation"] = new_gen
        record["ports"] = "%d-%d" % nat_ports(new_gen)
    else:
        script = _SKELETON + "".join(f"add rule inet {TABLE} {r}\n" for r in _rules(u, kind, arg))
        nft(router, script)
    return record


def forget_mappings(router_ns: str, u: t.Uplink) -> None:
    """Delete the laptop's conntrack entries (and with them its NAT mappings)."""
    run(ns_argv(router_ns, ["conntrack", "-D", "-s", u.rw_addr]), check=False)


def restore_link(lab: str, u: t.Uplink) -> None:
    """rw's link up with its addresses and default routes (admin-down flushed them)."""
    rw = t.ns_name(lab, t.RW)
    ip_batch(rw, [f"link set dev {u.name} up", *rw_uplink_lines(u, replace=True)])


def clear(lab: str, uplink: str, records: list[dict], nat_generation: int = 0) -> None:
    """Undo everything on one uplink (whatever the records say, and the nft table anyway)."""
    u = t.UPLINKS[uplink]
    kinds = {r["kind"] for r in records}
    router = t.ns_name(lab, u.router)
    nft(router, f"table inet {TABLE}\ndelete table inet {TABLE}\n", check=False)
    if "carrier" in kinds:
        ip(router, "link", "set", "dev", u.lan_dev, "up")
    if "down" in kinds:
        restore_link(lab, u)
    if u.nat and nat_generation:
        # Back to the original port range; existing mappings are kept.
        nft(router, nat_script(u, 0))


def describe(record: dict) -> str:
    if record.get("kind") == "nat-remap":
        return f"nat-remap (ports {record.get('ports')})"
    return record["kind"] + ("" if record.get("arg") is None else f" {record['arg']}")
