"""The probe adapter: carries out SendProbe orders and reports what came back.

    ProbeAdapter(emit=...)      emit(fact) is called with ProbeReplied / ProbeLost
        .start()                starts the receiver thread ("probe-receiver")
        .send(order)            non-blocking; immediate failures -> emit(ProbeLost) at once
        .counters()             bytes and packets per path (IP headers included)
        .stop()

Kinds:
- ECHO: ICMP echo from path.local on path.uplink (SO_BINDTODEVICE + bind) to path.gateway.
- DATA: ICMP echo from `order.src` (the virtual IP, no device binding, so the kernel
  routes it into the tunnel) to `order.dst` (a target behind the gateway).
- IKE: the INVALID_MAJOR_VERSION probe (see probe_packets.py) from path.local on
  path.uplink to path.gateway's udp/4500, over a connected UDP socket.
`order.src`/`order.dst`, when given, override the addresses for ECHO and IKE too.

Matching: every adapter picks a random ICMP identifier, a random 8-byte token that
replies must echo, and a random IKE SPI; it numbers the packets it sends itself (wire
sequence numbers), so the engine's `seq` may be anything. A reply is matched by
(identifier, wire seq, token) and its source address; an IKE answer by (SPI, Message ID).
RTT is time.monotonic() (CLOCK_MONOTONIC) at receive minus at send.

Timeouts are the engine's: this adapter never reports "no answer". A reply that comes
later than `order.timeout` is still reported (with its real rtt > timeout: a sample for
the engine's RTT estimate); requests are forgotten after max(4 x timeout, 5 s), at most
60 s. An ICMP error about a probe (unreachable, time exceeded) and an ICMP port
unreachable for the IKE probe come back as ProbeLost.

Threads: `emit` is called from the receiver thread and, for immediate send failures,
from the thread that called send(). Adapters act, they don't decide: nothing here
retries or judges a path.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

from mobikectl.adapters import probe_packets as pk
from mobikectl.engine.actions import SendProbe
from mobikectl.engine.ids import ProbeKind
from mobikectl.engine.inputs import ProbeLost, ProbeReplied
from mobikectl.engine.probing import ECHO_PAYLOAD  # the engine counts each probe at this size

log = logging.getLogger(__name__)

SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
IKE_PORT = 4500
_RECV_SIZE = 2048


@dataclass(frozen=True)
class _SockKey:
    proto: str  # "icmp" or "ike"
    family: int
    device: str | None
    local: str
    remote: str | None = None  # the connected peer (IKE only)


@dataclass
class _Pending:
    order: SendProbe
    key: _SockKey
    target: str
    sent_at: float
    forget_at: float


class ProbeAdapter:
    def __init__(self, *, emit: Callable[[object], None], payload_size: int = ECHO_PAYLOAD,
                 ike_port: int = IKE_PORT, clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._clock = clock
        self._ike_port = ike_port
        self.ident = struct.unpack("!H", os.urandom(2))[0]
        self.token = os.urandom(payload_size)
        self.spi = struct.unpack("!Q", os.urandom(8))[0] | 1  # never 0
        self._wire = itertools.count(1)
        self._lock = threading.Lock()
        self._socks: dict[_SockKey, socket.socket] = {}
        self._closing: list[socket.socket] = []
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._counters: dict[str, dict] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the run loop's side ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._receive_loop, name="probe-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for sock in list(self._socks.values()) + self._closing:
                sock.close()
            self._socks.clear()
            self._closing.clear()
            self._pending.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def counters(self) -> dict:
        """{path id: {"uplink", "tx_bytes", "rx_bytes", "tx_packets", "rx_packets",
        "by_kind": {kind: {same four counters}}}}; bytes include IP and UDP headers
        (the DATA probe's are inner packets: the tunnel adds its own overhead)."""
        with self._lock:
            return {pid: {**c, "by_kind": {k: dict(v) for k, v in c["by_kind"].items()}}
                    for pid, c in self._counters.items()}

    def send(self, order: SendProbe) -> None:
        try:
            self._send(order)
        except _Lost as lost:
            log.debug("probe %s %s seq %s lost at once: %s", order.path.id, order.kind.value, order.seq, lost)
            self._emit(ProbeLost(order.path, order.kind, order.seq, str(lost)))

    # --- sending ----------------------------------------------------------------------------

    def _send(self, order: SendProbe) -> None:
        kind = ProbeKind(order.kind)
        if kind is ProbeKind.DATA:
            if not order.src or not order.dst:
                raise _Lost("a data probe needs src (the virtual IP) and dst (a target behind the gateway)")
            src, dst, device = order.src, order.dst, None
        else:
            src, dst, device = order.src or order.path.local, order.dst or order.path.gateway, order.path.uplink
        family = _family(src, dst)
        wire = next(self._wire)
        if kind is ProbeKind.IKE:
            key = _SockKey("ike", family, device, src, dst)
            msgid = wire & 0xFFFFFFFF
            packet = pk.ike_probe(self.spi, msgid)
            pending_key = ("ike", msgid)
            overhead = _ip_header(family) + pk.UDP_HEADER
        else:
            key = _SockKey("icmp", family, device, src)
            seq16 = wire & 0xFFFF
            packet = pk.echo_request(self.ident, seq16, self.token, v6=family == socket.AF_INET6)
            pending_key = ("icmp", seq16)
            overhead = _ip_header(family)
        now = self._clock()
        forget = now + min(max(4 * order.timeout, 5.0), 60.0)
        with self._lock:
            sock = self._socket(key)
            self._pending[pending_key] = _Pending(order, key, dst, now, forget)
            try:
                if kind is ProbeKind.IKE:
                    sock.send(packet)
                else:
                    sock.sendto(packet, (dst, 0))
            except OSError as exc:
                self._pending.pop(pending_key, None)
                self._drop_socket(key)
                raise _Lost(f"send from {src} to {dst} failed: {_why(exc)}") from None
            self._count(order, "tx", len(packet) + overhead)
        self._wake()

    def _socket(self, key: _SockKey) -> socket.socket:
        """The cached socket for `key`, opened on first use (lock held)."""
        sock = self._socks.get(key)
        if sock is not None:
            return sock
        try:
            if key.proto == "ike":
                sock = socket.socket(key.family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            elif key.family == socket.AF_INET:
                sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", _icmp4_filter()))
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
                sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter())
        except PermissionError:
            raise _Lost("opening a raw ICMP socket needs root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise _Lost(f"cannot open a probe socket: {_why(exc)}") from None
        try:
            sock.setblocking(False)
            if key.device:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, key.device.encode())
            sock.bind((key.local, 0))
            if key.proto == "ike":
                sock.connect((key.remote, self._ike_port))
        except OSError as exc:
            sock.close()
            where = f"{key.local} on {key.device}" if key.device else key.local
            raise _Lost(f"cannot bind a probe socket to {where}: {_why(exc)}") from None
        self._socks[key] = sock
        return sock

    def _drop_socket(self, key: _SockKey) -> None:
        """Forget a broken socket; the receiver thread closes it (lock held)."""
        sock = self._socks.pop(key, None)
        if sock is not None:
            self._closing.append(sock)

    def _count(self, order: SendProbe, direction: str, size: int) -> None:
        c = self._counters.setdefault(order.path.id, {
            "uplink": order.path.uplink, "tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0,
            "rx_packets": 0, "by_kind": {}})
        k = c["by_kind"].setdefault(ProbeKind(order.kind).value, {
            "tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0})
        for target in (c, k):
            target[f"{direction}_bytes"] += size
            target[f"{direction}_packets"] += 1

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # --- receiving (the "probe-receiver" thread) ------------------------------------------

    def _receive_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                for sock in self._closing:
                    sock.close()
                self._closing.clear()
                by_fd = {sock.fileno(): (key, sock) for key, sock in self._socks.items()}
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            try:
                ready = poller.poll(500)
            except OSError:
                continue
            for fd, _ in ready:
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except OSError:
                        pass
                    continue
                if fd in by_fd:
                    self._drain(*by_fd[fd])
            self._forget_old()

    def _drain(self, key: _SockKey, sock: socket.socket) -> None:
        for _ in range(64):  # bounded: let the other sockets have a turn
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self._refused(key)
                continue
            except OSError as exc:
                log.debug("probe socket %s: %s", key, _why(exc))
                return
            now = self._clock()
            try:
                self._received(key, data, addr[0], now)
            except Exception:  # a bug: keep receiving, say so in the log
                log.exception("probe receiver: cannot handle a packet from %s", addr[0])

    def _received(self, key: _SockKey, data: bytes, source: str, now: float) -> None:
        if key.proto == "ike":
            answer = pk.parse_ike_answer(data)
            if answer is None or answer.spi != self.spi:
                return
            pending_key, size, error = ("ike", answer.msgid), len(data) + _ip_header(key.family) + pk.UDP_HEADER, None
        else:
            if key.family == socket.AF_INET:
                icmp = pk.parse_icmp4(data, source)
                size = len(data)
            else:
                icmp = pk.parse_icmp6(data, source)
                size = len(data) + pk.IPV6_HEADER
            if icmp is None or icmp.ident != self.ident:
                return
            if icmp.error is None and icmp.payload[:len(self.token)] != self.token:
                return
            pending_key, error = ("icmp", icmp.seq), icmp.error
        with self._lock:
            entry = self._pending.get(pending_key)
            if entry is None or entry.key != key:
                return
            if error is None and _norm(source) != _norm(entry.target):
                return  # an echo reply from somebody else
            del self._pending[pending_key]
            self._count(entry.order, "rx", size)
        order = entry.order
        if error is not None:
            self._emit(ProbeLost(order.path, order.kind, order.seq, error))
        else:
            self._emit(ProbeReplied(order.path, order.kind, order.seq, now - entry.sent_at))

    def _refused(self, key: _SockKey) -> None:
        """ICMP port unreachable on the connected IKE socket: the oldest probe on it."""
        with self._lock:
            mine = [(p.sent_at, k) for k, p in self._pending.items() if p.key == key]
            if not mine:
                return
            entry = self._pending.pop(min(mine)[1])
        why = f"udp/{self._ike_port} on {entry.target}: port unreachable (no IKE daemon listening)"
        self._emit(ProbeLost(entry.order.path, entry.order.kind, entry.order.seq, why))

    def _forget_old(self) -> None:
        now = self._clock()
        with self._lock:
            for k in [k for k, p in self._pending.items() if p.forget_at <= now]:
                del self._pending[k]


class _Lost(Exception):
    """A probe that could not go out; becomes ProbeLost(why)."""


def _family(src: str, dst: str) -> int:
    try:
        a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    except ValueError as exc:
        raise _Lost(f"bad probe address: {exc}") from None
    if a.version != b.version:
        raise _Lost(f"source {src} and target {dst} are not of the same address family")
    return socket.AF_INET if a.version == 4 else socket.AF_INET6


def _ip_header(family: int) -> int:
    return pk.IPV4_HEADER if family == socket.AF_INET else pk.IPV6_HEADER


def _norm(address: str) -> str:
    return str(ipaddress.ip_address(address.split("%")[0]))


def _why(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror or exc} ({name})" if name else str(exc.strerror or exc)


def _icmp4_filter() -> int:
    """ICMP_FILTER: a set bit blocks that type; let echo replies and errors through."""
    allowed = (pk.ICMP_ECHO_REPLY, pk.ICMP_DEST_UNREACH, pk.ICMP_TIME_EXCEEDED)
    return ~sum(1 << t for t in allowed) & 0xFFFFFFFF


def _icmp6_filter() -> bytes:
    words = [0xFFFFFFFF] * 8
    for t in (pk.ICMP6_ECHO_REPLY, pk.ICMP6_DEST_UNREACH, pk.ICMP6_PACKET_TOO_BIG, pk.ICMP6_TIME_EXCEEDED):
        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("8I", *words)
