"""The netlink adapter: follows the laptop's links, addresses and routes.

Theory of operation (pyroute2's InterfaceStateWatcher pattern):
1. subscribe first: a NETLINK_ROUTE socket bound to RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
   RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE;
2. then dump links, addresses and routes (pyroute2 IPRoute) → one `NetSnapshot`;
3. then stream: every message the subscription queued meanwhile and after is parsed by
   pyroute2's rtnl marshal, translated (netlink_translate) and emitted as a fact.
On an overrun (recv fails with ENOBUFS: the kernel dropped messages) the adapter dumps
again and emits a new NetSnapshot. It does the same after a link goes admin-down or
disappears, because the kernel then flushes that link's IPv4 routes **without** sending
RTM_DELROUTE (seen in the recordings: link-admin-down.json has no route deletions).

Why a plain socket for the subscription and not IPRoute.get(): pyroute2 0.9's sync
facade blocks in get() with no timeout and hides the socket behind its own event loop,
so neither a prompt stop() (select on a wake-up pipe) nor the ENOBUFS check would be
possible. The messages are still pyroute2 objects (its MarshalRtnl parses them).

Identical consecutive facts for the same object are emitted once (a link's statistics
changes arrive as RTM_NEWLINK with nothing we use changed); a route is the same object as
the one it replaces (same destination, table and metric). Works in whatever network
namespace the process runs in (`ip netns exec NS mobikectl run`).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from mobikectl.adapters import netlink_translate as nt
from mobikectl.engine.inputs import AddressChanged, LinkChanged, NetSnapshot, RouteChanged
from mobikectl.errors import Unavailable

log = logging.getLogger(__name__)

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
RCVBUF = 4 << 20


def subscribe(groups: int = GROUPS, rcvbuf: int = RCVBUF) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, groups))
    return sock


def dump() -> list[Any]:
    """Every link, address and route of the current namespace (pyroute2 messages)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [*ipr.get_links(), *ipr.get_addr(), *ipr.route("dump")]


def parse(data: bytes) -> list[Any]:
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return list(MarshalRtnl().parse(data))


def key(fact: Any) -> tuple:
    if isinstance(fact, LinkChanged):
        return ("link", fact.index)
    if isinstance(fact, AddressChanged):
        return ("addr", fact.ifname, fact.address, fact.prefixlen)
    # a route by the slot `ip route replace` replaces: the kernel sends one RTM_NEWROUTE and
    # no RTM_DELROUTE for the route it displaced, so a key with the device would keep that
    # one and take a later replace back to it for a repeat
    return ("route", fact.dst, fact.table, fact.metric)


class NetlinkAdapter:
    def __init__(self, *, emit: Callable[[object], None], charon_table: int = nt.CHARON_TABLE,
                 subscriber: Callable[[], socket.socket] = subscribe,
                 dumper: Callable[[], list[Any]] = dump, tick_s: float = 1.0) -> None:
        self.emit = emit
        self.charon_table = charon_table
        self.subscriber = subscriber
        self.dumper = dumper
        self.tick_s = tick_s
        self.names: dict[int, str] = {}
        self._last: dict[tuple, Any] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.snapshots = 0  # NetSnapshots sent (1 + re-dumps)

    def start(self) -> None:
        """Subscribe and send the first NetSnapshot before returning; then stream in the
        thread "netlink-watch". Raises Unavailable when netlink cannot be opened."""
        try:
            sock = self.subscriber()
            self._resync()
        except OSError as exc:
            raise Unavailable(f"cannot follow the network over netlink: {exc}") from None
        self._thread = threading.Thread(target=self._run, args=(sock,), name="netlink-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([sock, self._wake_r], [], [], self.tick_s)
                if sock not in ready:
                    continue
                try:
                    data = sock.recv(1 << 20)
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        log.warning("netlink overrun: messages were lost, dumping again")
                        self._resync()
                        continue
                    raise
                if self.handle(data):
                    self._resync()
        except Exception:  # noqa: BLE001 - the watcher must say why it died
            log.exception("netlink watcher stopped")
        finally:
            sock.close()

    def handle(self, data: bytes) -> bool:
        """Emit the facts of one datagram; True when a re-dump is needed."""
        redump = False
        for msg in parse(data):
            plain = nt.to_plain(msg)
            if plain["event"] == "RTM_NEWLINK" and plain.get("attrs", {}).get("IFLA_IFNAME"):
                self.names[plain["index"]] = plain["attrs"]["IFLA_IFNAME"]
            fact = nt.translate(plain, self.names, charon_table=self.charon_table)
            if plain["event"] == "RTM_DELLINK":
                self.names.pop(plain.get("index"), None)
            if fact is None:
                continue
            if isinstance(fact, LinkChanged):
                before = self._last.get(key(fact))
                if not fact.present or (before is not None and before.admin_up and not fact.admin_up):
                    redump = True  # the kernel flushes IPv4 routes without telling
            self._send(fact)
        return redump

    def _send(self, fact: Any) -> None:
        k = key(fact)
        if self._last.get(k) == fact:
            return
        if getattr(fact, "present", True):
            self._last[k] = fact
        else:
            self._last.pop(k, None)
        self.emit(fact)

    def _resync(self) -> None:
        messages = [nt.to_plain(m) for m in self.dumper()]
        self.names = {p["index"]: p["attrs"]["IFLA_IFNAME"] for p in messages
                      if p["event"] == "RTM_NEWLINK" and p.get("attrs", {}).get("IFLA_IFNAME")}
        facts = [nt.translate(p, self.names, charon_table=self.charon_table) for p in messages]
        snap = NetSnapshot(
            links=tuple(f for f in facts if isinstance(f, LinkChanged)),
            addresses=tuple(f for f in facts if isinstance(f, AddressChanged)),
            routes=tuple(f for f in facts if isinstance(f, RouteChanged)),
        )
        self._last = {key(f): f for f in (*snap.links, *snap.addresses, *snap.routes)}
        self.snapshots += 1
        self.emit(snap)
