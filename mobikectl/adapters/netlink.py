"""The netlink adapter: follows the laptop's links, addresses and routes.

Theory of operation (pyroute2's InterfaceStateWatcher pattern):
1. subscribe first: a NETLINK_ROUTE socket bound to RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
   RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE;
2. then dump links, addresses and routes (pyroute2 IPRoute) → one `NetSnapshot`;
3. then stream: every message the subscription queued meanwhile and after is parsed by
   pyroute2's rtnl marshal, translated (netlink_translate) and emitted as a fact;
4. and poll the links every `poll_s` (50 ms): a carrier change is announced late. The
   kernel sends RTM_NEWLINK for it from its linkwatch work, which runs events of a device
   that is not "urgent" for it (most NICs, and a veth whose ifindex equals its peer's) at
   most once a second machine-wide: a carrier loss soon after any other link event
   anywhere on the machine reached us up to 1 s late (2 of 10 benchmark trials, decided
   by the probes instead). A RTM_GETLINK dump shows the carrier at once (IFF_LOWER_UP is
   read live; IFF_RUNNING and the operstate wait for linkwatch too), so the adapter dumps
   the links (a few hundred bytes, no statistics) and emits a link whose IFF_UP or
   IFF_LOWER_UP differs from its last fact, through the same translation.
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
import struct
import threading
import time
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
POLL_S = 0.05  # links polled this often (see 4. above)
RTM_GETLINK, NLM_F_REQUEST, NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR = 18, 0x1, 0x300, 3, 2
IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 29, 1 << 3


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


class LinkPoller:
    """RTM_GETLINK dumps on a socket of their own: each link's message as the kernel's bytes."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self.seq = 0

    def __call__(self) -> list[bytes]:
        self.seq += 1
        body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + struct.pack("HHI", 8, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        self.sock.send(struct.pack("IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
                       + body)
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            for kind, seq, msg in split(data):
                if seq != self.seq:
                    continue  # the rest of an earlier dump that timed out
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("i", msg, 16)[0]
                    raise OSError(err, os.strerror(err))
                out.append(msg)

    def close(self) -> None:
        self.sock.close()


def split(data: bytes) -> list[tuple[int, int, bytes]]:
    """A netlink datagram → (type, seq, message bytes) for each message in it."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind, _, seq = struct.unpack_from("IHHI", data, off)
        if length < 16:
            break
        out.append((kind, seq, data[off:off + length]))
        off += (length + 3) & ~3
    return out


def link_state(msg: bytes) -> tuple[int, bool, bool]:
    """An RTM_NEWLINK's (index, admin up, carrier) from its ifinfomsg, without parsing the rest."""
    index, flags = struct.unpack_from("iI", msg, 20)
    return index, bool(flags & nt.IFF_UP), bool(flags & nt.IFF_LOWER_UP)


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
                 dumper: Callable[[], list[Any]] = dump, tick_s: float = 1.0,
                 poller: Callable[[], Callable[[], list[bytes]]] | None = LinkPoller,
                 poll_s: float = POLL_S) -> None:
        self.emit = emit
        self.charon_table = charon_table
        self.subscriber = subscriber
        self.dumper = dumper
        self.tick_s = tick_s
        self.poller = poller  # makes the link poll (None: no polling)
        self.poll_s = poll_s
        self.polled = 0  # links emitted because the poll saw them change first
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
        poll = None
        try:
            poll = self.poller() if self.poller is not None else None
        except OSError as exc:
            log.warning("cannot poll the links (carrier changes may be seen up to 1 s late): %s", exc)
        next_poll = time.monotonic()
        try:
            while not self._stop.is_set():
                wait = self.tick_s if poll is None else max(0.0, min(self.tick_s, next_poll - time.monotonic()))
                ready, _, _ = select.select([sock, self._wake_r], [], [], wait)
                if poll is not None and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    if self.poll_links(poll):
                        self._resync()
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
            close = getattr(poll, "close", None)
            if close is not None:
                close()

    def poll_links(self, poll: Callable[[], list[bytes]]) -> bool:
        """Emit each known link whose admin state or carrier differs from its last fact;
        True when a re-dump is needed. A link not known yet is left to its RTM_NEWLINK
        (a new device is announced at once)."""
        try:
            messages = poll()
        except OSError as exc:
            log.debug("link poll failed: %s", exc)
            return False
        redump = False
        for msg in messages:
            index, admin_up, carrier = link_state(msg)
            last = self._last.get(("link", index))
            if last is None or (last.admin_up, last.carrier) == (admin_up, carrier):
                continue
            self.polled += 1
            redump |= self.handle(msg)
        return redump

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
