"""The tunnel-traffic sampler: inbound packets on the tunnel device are proof of life.

    TunnelSampler(emit=..., device="ipsec0", interval=0.05)
        .start()    starts the "tunnel-sampler" thread
        .stop()

Every `interval` seconds it reads the device's receive-packet counter and emits
`TunnelInbound(packets)` when the counter went up since the last read. The first read
after the device appears only sets the baseline (old traffic proves nothing now), and a
counter that went down (the device was re-created) starts a new baseline.

Where the counter comes from: /proc/self/net/dev, which always shows the network
namespace of this process, whether it runs under `ip netns exec` (which also remounts
/sys), under nsenter, or after setns(2) (where /sys/class/net would still show the old
namespace). A missing device (no SA yet, charon restarting) is quiet: no fact, a DEBUG
line when it comes and goes.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from mobikectl.engine.inputs import TunnelInbound

log = logging.getLogger(__name__)

PROC_NET_DEV = "/proc/self/net/dev"


def read_rx_packets(device: str, source: str = PROC_NET_DEV) -> int | None:
    """The device's received-packets counter, or None if the device does not exist."""
    try:
        with open(source, encoding="ascii", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    return parse_rx_packets(lines, device)


def parse_rx_packets(lines: list[str], device: str) -> int | None:
    """/proc/net/dev: two header lines, then `name: rx_bytes rx_packets ...`."""
    for line in lines[2:]:
        name, sep, rest = line.partition(":")
        if sep and name.strip() == device:
            fields = rest.split()
            try:
                return int(fields[1])
            except (IndexError, ValueError):
                return None
    return None


class TunnelSampler:
    def __init__(self, *, emit: Callable[[object], None], device: str = "ipsec0",
                 interval: float = 0.05, read: Callable[[str], int | None] = read_rx_packets) -> None:
        self._emit = emit
        self.device = device
        self.interval = interval
        self._read = read
        self._last: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tunnel-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def sample(self) -> TunnelInbound | None:
        """One read: the fact to emit, if the counter advanced. (The thread's body;
        public so a test can drive it without a thread.)"""
        packets = self._read(self.device)
        last, self._last = self._last, packets
        if packets is None:
            if last is not None:
                log.debug("tunnel device %s is gone", self.device)
            return None
        if last is None:
            log.debug("tunnel device %s: %d packets received so far", self.device, packets)
            return None
        if packets > last:
            return TunnelInbound(packets)
        return None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                fact = self.sample()
            except Exception:  # a bug: keep sampling, say so in the log
                log.exception("tunnel sampler: reading %s failed", self.device)
                continue
            if fact is not None:
                self._emit(fact)
