"""The steering route: how mobikectl makes charon move an IKE_SA.

    ip route replace GW/32 via NEXTHOP dev UPLINK src LOCAL proto 73     (IPv6: GW/128)

in the main table, metric 0. With `charon.prefer_best_path = yes` charon's route lookup for
the gateway then yields LOCAL; charon sees the route change (netlink), waits 100 ms and
runs a MOBIKE update from LOCAL (measured: ike-update 107 ms after the route change).
`replace` swaps the previous steering route for that gateway in one step (the kernel keys
a route on destination, tos, metric and table), so there is never a moment with none.
Our routes carry protocol 73 (settings.ROUTE_PROTO): `ip route show proto 73` lists them,
and after a restart the controller finds (and adopts) its own.

Every function acts in the current network namespace; errors become Unavailable with a
one-line message (the run loop reports them to the engine as ActionFailed).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mobikectl.adapters import netlink_translate as nt
from mobikectl.engine.actions import SteerTo
from mobikectl.engine.inputs import RouteChanged
from mobikectl.errors import Unavailable
from mobikectl.settings import ROUTE_PROTO

MAIN = 254


@contextmanager
def _iproute(ipr: Any = None) -> Iterator[Any]:
    if ipr is not None:
        yield ipr
        return
    from pyroute2 import IPRoute

    with IPRoute() as own:
        yield own


def _family_len(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (socket.AF_INET6, 128) if ip.version == 6 else (socket.AF_INET, 32)


def _why(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    text = str(exc.args[1]) if len(getattr(exc, "args", ())) > 1 and exc.args[1] else ""
    return f"{text or exc} (errno {code})" if code else str(exc)


def install(order: SteerTo, *, ipr: Any = None, proto: int = ROUTE_PROTO) -> None:
    """Put in (or replace) the steering route for order.path.gateway."""
    path = order.path
    family, plen = _family_len(path.gateway)
    what = (f"steering route {path.gateway}/{plen}" + (f" via {order.nexthop}" if order.nexthop else "")
            + f" dev {path.uplink} src {path.local} proto {proto}")
    try:
        with _iproute(ipr) as ip:
            index = ip.link_lookup(ifname=path.uplink)
            if not index:
                raise Unavailable(f"cannot install {what}: no device {path.uplink}")
            spec = dict(dst=path.gateway, dst_len=plen, family=family, oif=index[0], prefsrc=path.local,
                        proto=proto, table=MAIN, priority=0)
            if order.nexthop:
                spec["gateway"] = order.nexthop
            ip.route("replace", **spec)
    except Unavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - pyroute2's and the kernel's errors alike
        raise Unavailable(f"cannot install {what}: {_why(exc)}") from None


def remove(gateway: str, *, ipr: Any = None, proto: int = ROUTE_PROTO) -> bool:
    """Remove our steering route to `gateway`; False when there was none."""
    family, plen = _family_len(gateway)
    try:
        with _iproute(ipr) as ip:
            ours = [r for r in _ours(ip, proto) if r.dst == f"{gateway}/{plen}"]
            for r in ours:
                ip.route("del", dst=gateway, dst_len=plen, family=family, proto=proto, table=r.table,
                         priority=r.metric)
            return bool(ours)
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"cannot remove the steering route to {gateway}/{plen}: {_why(exc)}") from None


def list_ours(*, ipr: Any = None, proto: int = ROUTE_PROTO) -> list[RouteChanged]:
    """Our routes (protocol `proto`), in every table, as RouteChanged facts."""
    try:
        with _iproute(ipr) as ip:
            return _ours(ip, proto)
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"cannot list routes: {_why(exc)}") from None


def _ours(ip: Any, proto: int) -> list[RouteChanged]:
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
    out = []
    for msg in ip.route("dump"):
        plain = nt.to_plain(msg)
        if plain.get("proto") == proto:
            fact = nt.route(plain, names, charon_table=-1)
            if fact is not None:
                out.append(fact)
    return out


def remove_all(*, ipr: Any = None, proto: int = ROUTE_PROTO) -> int:
    """Remove every route of ours; returns how many."""
    count = 0
    with _iproute(ipr) as ip:
        for r in list_ours(ipr=ip, proto=proto):
            gateway = r.dst.split("/")[0]
            if remove(gateway, ipr=ip, proto=proto):
                count += 1
    return count


def check_route(gateway: str, *, ipr: Any = None, mark: int | None = None) -> tuple[str | None, str | None]:
    """The kernel's route lookup for `gateway` (RTM_GETROUTE): (device, source address).
    `mark` looks up as a packet with that fwmark would (charon's, with a `!mark` config)."""
    family, _ = _family_len(gateway)
    try:
        with _iproute(ipr) as ip:
            spec: dict[str, Any] = {"dst": gateway, "family": family}
            if mark is not None:
                spec["fwmark"] = mark
            found = ip.route("get", **spec)
            msg = list(found)[0]
            oif = msg.get_attr("RTA_OIF")
            dev = ip.get_links(oif)[0].get_attr("IFLA_IFNAME") if oif else None
            return dev, msg.get_attr("RTA_PREFSRC")
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"no route to {gateway}: {_why(exc)}") from None
