"""Probe bookkeeping for one path: sequence numbers, probes in flight and their deadlines,
the cadence, the confirming burst, and the bytes spent (with the monthly budget of a
metered uplink).

Cadence (the engine picks the role; this module keeps the clock of it):
- the active path (where the SA is): every `interval`, unless tunnel traffic arrived
  within the interval (proof of life: counted as an answer, no probe sent);
- an UNKNOWN path, or a DOWN path that has started answering again: every `interval`
  until `rise` answers decide it (a handful of probes, once);
- an idle standby path: every `standby_interval`; on a metered uplink only while the
  monthly budget's token bucket allows;
- a SUSPECT path: the confirming burst, `confirm` probes `confirm_interval` apart,
  instead of the regular probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobikectl.engine.health import PathHealth
from mobikectl.engine.ids import Path, ProbeKind

MONTH = 30 * 86400.0  # the budget's month, in seconds
BUCKET_SHARE = 0.02  # the token bucket holds 2 % of the monthly budget

# The bytes of a probe at layer 3 (IP headers included), out and back: what the probe
# adapter puts on the wire (mobikectl/adapters/probes.py, probe_packets.py; a unit test
# holds them to it). ECHO_PAYLOAD is the adapter's payload size (its matching token).
ECHO_PAYLOAD = 8
IP_HEADER = {4: 20, 6: 40}
ICMP_HEADER = UDP_HEADER = 8
IKE_PROBE = 4 + 28  # non-ESP marker + an IKE header without payloads
IKE_ANSWER = IKE_PROBE + 8  # charon's answer adds the INVALID_MAJOR_VERSION notify payload
# DATA: the inner echo (the virtual IP's family, taken to be the gateway's) in ESP-in-UDP,
# an estimate for AES-CBC + HMAC-SHA256-128 (the lab's aes128-sha256): SPI and sequence
# number 8, IV 16, the inner packet and its 2 trailer bytes padded to 16, ICV 16 (AES-GCM:
# IV 8, padding to 4, so 4 to 20 B less).
ESP_HEADER, ESP_IV, ESP_BLOCK, ESP_ICV = 8, 16, 16, 16


def _echo(family: int) -> int:
    return IP_HEADER[family] + ICMP_HEADER + ECHO_PAYLOAD


def _esp_in_udp(inner: int, family: int) -> int:
    padded = -(-(inner + 2) // ESP_BLOCK) * ESP_BLOCK
    return IP_HEADER[family] + UDP_HEADER + ESP_HEADER + ESP_IV + padded + ESP_ICV


PROBE_BYTES = {  # (kind, IP version of the gateway): (bytes out, bytes back)
    **{(ProbeKind.ECHO, f): (_echo(f), _echo(f)) for f in (4, 6)},
    **{(ProbeKind.IKE, f): (IP_HEADER[f] + UDP_HEADER + IKE_PROBE, IP_HEADER[f] + UDP_HEADER + IKE_ANSWER)
       for f in (4, 6)},
    **{(ProbeKind.DATA, f): (_esp_in_udp(_echo(f), f),) * 2 for f in (4, 6)},
}


def probe_bytes(kind: ProbeKind, address: str) -> tuple[int, int]:
    """(bytes out, bytes back) of a probe of `kind` to `address`."""
    return PROBE_BYTES[(kind, 6 if ":" in address else 4)]


def probe_cost(kind: ProbeKind, address: str) -> int:
    """A probe and its answer: what it costs a metered uplink."""
    return sum(probe_bytes(kind, address))


class Budget:
    """A token bucket that keeps probes on a metered uplink within `monthly` bytes per
    (30-day) month: capacity 2 % of it, refilled at (monthly - capacity) per month, so any
    30 days spend at most `monthly`. Regular standby probes wait for tokens; the rare
    probes that decide a state (bursts, rise) may borrow, and are paid back by waiting."""

    def __init__(self, monthly: float, now: float) -> None:
        self.monthly = monthly
        self.capacity = monthly * BUCKET_SHARE
        self.rate = (monthly - self.capacity) / MONTH
        self.tokens = 0.0  # starts empty: from the start too, spend <= rate * elapsed (+ borrowing)
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def allows(self, cost: float, now: float) -> bool:
        self._refill(now)
        return self.tokens >= cost - 1e-6

    def spend(self, cost: float, now: float) -> None:
        self._refill(now)
        self.tokens -= cost

    def ready_at(self, cost: float, now: float) -> float:
        self._refill(now)
        if self.allows(cost, now):
            return now
        return now + max(0.001, (cost - self.tokens) / self.rate)  # always a step forward


@dataclass
class InFlight:
    seq: int
    kind: ProbeKind
    sent_at: float
    deadline: float
    burst: bool


class PathProbe:
    """Everything the engine knows about one path (uplink, gateway)."""

    def __init__(self, uplink: str, gateway: str, health: PathHealth, now: float) -> None:
        self.uplink = uplink
        self.gateway = gateway
        self.local: str | None = None
        self.path: Path | None = None
        self.health = health
        self.down_reason = ""  # why the link cannot carry anything ('' = it can)
        self.seq = 0
        self.inflight: dict[int, InFlight] = {}
        self.next_at: float | None = now  # next regular probe
        self.burst_left = 0  # burst probes still to send
        self.burst_at: float | None = None
        self.last_sent: float | None = None
        self.bytes_out = 0
        self.bytes_in = 0
        self.month_bytes = 0
        self.month_start = now
        self.probes_sent = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.uplink, self.gateway)

    def set_local(self, local: str | None) -> bool:
        """The uplink's source address for this gateway; True if it changed."""
        if local == self.local:
            return False
        self.local = local
        self.path = None if local is None else Path(self.uplink, local, self.gateway)  # type: ignore[arg-type]
        return True

    def can_probe(self) -> bool:
        return self.path is not None and not self.down_reason

    def start_burst(self, now: float) -> None:
        self.burst_left = self.health.timing.confirm
        self.burst_at = now

    def stop_burst(self) -> None:
        self.burst_left = 0
        self.burst_at = None

    def sent(self, kind: ProbeKind, now: float, burst: bool) -> tuple[int, float]:
        """Record a probe going out; returns (seq, timeout)."""
        self.seq += 1
        timeout = self.health.timeout()
        self.inflight[self.seq] = InFlight(self.seq, kind, now, now + timeout, burst)
        size = probe_bytes(kind, self.gateway)[0]
        self._count(now, size)
        self.bytes_out += size
        self.last_sent = now
        self.probes_sent += 1
        return self.seq, timeout

    def received(self, kind: ProbeKind, now: float) -> None:
        size = probe_bytes(kind, self.gateway)[1]
        self._count(now, size)
        self.bytes_in += size

    def _count(self, now: float, size: int) -> None:
        if now - self.month_start >= MONTH:
            self.month_start += MONTH * ((now - self.month_start) // MONTH)
            self.month_bytes = 0
        self.month_bytes += size

    def expired(self, now: float) -> list[InFlight]:
        """Probes whose deadline passed, oldest first; they leave the in-flight set."""
        if not self.inflight:
            return []
        due = sorted((p for p in self.inflight.values() if p.deadline <= now), key=lambda p: p.deadline)
        for p in due:
            del self.inflight[p.seq]
        return due

    def next_deadline(self) -> float | None:
        times = [p.deadline for p in self.inflight.values()]
        if self.can_probe():
            if self.next_at is not None:
                times.append(self.next_at)
            if self.burst_left and self.burst_at is not None:
                times.append(self.burst_at)
        return min(times) if times else None
