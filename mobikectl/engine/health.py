"""Per-path health, written as a state table.

Theory of operation
-------------------
A path's health is one of four states (`ids.Health`). Evidence arrives as events; a
`PathHealth` turns raw evidence (a probe answered in `rtt` seconds, a probe missed, the
link lost) into exactly one table event, and the table alone says where that leads. Every
legal (state, event) pair is in `TRANSITIONS`; anything else is a programming error.

    UNKNOWN --rise answers--> UP --fall misses--> SUSPECT --whole burst lost--> DOWN
       |                       ^                     |                            |
       +--fall misses-> DOWN   +---- any answer -----+                            |
                               +-------------------- rise answers ----------------+

- An answer (a probe reply in time, or packets arriving through the tunnel while this is
  the SA's current path) is proof of life. `rise` answers in a row, within the class's
  `Limits`, make an UNKNOWN or DOWN path UP. One answer makes a SUSPECT path UP again;
  its `up_since` (what the failback hold-down counts from) is kept only if it is the SA's
  active path (`active`, kept current by the engine). A standby path that was suspect is
  UP again from that answer on: a flapping standby must prove itself for a whole hold-down.
- A miss is a probe that timed out (the engine times probes out itself at
  sent + timeout) or could not be sent. `fall` misses in a row make an UP path SUSPECT;
  the engine then sends a confirming burst of `confirm` probes. If every probe of the
  burst is lost the path is DOWN. An UNKNOWN path that never answered goes DOWN after
  `fall` misses: there is nothing to confirm.
- Carrier loss, the link going down or away, or the source address going away is proof
  the path is down: DOWN at once, from any state. Carrier present proves nothing.
- An answering path can still be unhealthy: loss over the last `window` probes above
  `max_loss`, or smoothed RTT above `max_rtt`, is DEGRADED, which is DOWN.

Timeouts follow the path's RTT the way TCP's RTO does (RFC 6298): SRTT and RTTVAR from
the answers (late answers too), timeout = SRTT + max(G, 4 * RTTVAR), clamped to the class's
[timeout_min, timeout_max]. Until the first answer the timeout is timeout_max, so a
high-RTT cellular path is not declared dead by a timeout made for Wi-Fi.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from mobikectl.engine.ids import Health
from mobikectl.policy.model import Limits, ProbeTiming

UNKNOWN, UP, SUSPECT, DOWN = Health.UNKNOWN, Health.UP, Health.SUSPECT, Health.DOWN

CLOCK_GRANULARITY = 0.001  # RFC 6298's G


class Event(str, enum.Enum):
    ANSWERED = "answered"  # an answer that does not (yet) change the state
    MISSED = "missed"  # a miss that does not (yet) change the state
    ROSE = "rose"  # the rise-th answer in a row, within the limits
    FELL = "fell"  # the fall-th miss in a row
    BURST_LOST = "burst-lost"  # every probe of the confirming burst was lost
    DEGRADED = "degraded"  # answering, but loss or RTT beyond the Limits
    LINK_LOST = "link-lost"  # carrier lost, link down or gone, no usable address


TRANSITIONS: dict[tuple[Health, Event], Health] = {
    (UNKNOWN, Event.ANSWERED): UNKNOWN,
    (UNKNOWN, Event.MISSED): UNKNOWN,
    (UNKNOWN, Event.ROSE): UP,
    (UNKNOWN, Event.FELL): DOWN,
    (UNKNOWN, Event.DEGRADED): DOWN,
    (UNKNOWN, Event.LINK_LOST): DOWN,
    (UP, Event.ANSWERED): UP,
    (UP, Event.MISSED): UP,
    (UP, Event.FELL): SUSPECT,
    (UP, Event.DEGRADED): DOWN,
    (UP, Event.LINK_LOST): DOWN,
    (SUSPECT, Event.ANSWERED): UP,
    (SUSPECT, Event.MISSED): SUSPECT,
    (SUSPECT, Event.BURST_LOST): DOWN,
    (SUSPECT, Event.DEGRADED): DOWN,
    (SUSPECT, Event.LINK_LOST): DOWN,
    (DOWN, Event.ANSWERED): DOWN,
    (DOWN, Event.MISSED): DOWN,
    (DOWN, Event.ROSE): UP,
    (DOWN, Event.DEGRADED): DOWN,
    (DOWN, Event.LINK_LOST): DOWN,
}


@dataclass(frozen=True)
class Transition:
    old: Health
    new: Health
    event: Event
    why: str


class PathHealth:
    """The evidence about one path and its state. Pure: every method takes `now`."""

    def __init__(self, timing: ProbeTiming, limits: Limits, now: float) -> None:
        self.timing = timing
        self.limits = limits
        self.state = UNKNOWN
        self.since = now  # when the state was entered
        self.up_since: float | None = None  # when it last became UP (None unless UP/SUSPECT)
        self.active = False  # the SA's current path (set by the engine): see `_apply`
        self.misses = 0  # in a row
        self.answers = 0  # in a row
        self.burst_misses = 0
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.last_rtt: float | None = None
        self.last_answer: float | None = None
        self.window: deque[bool] = deque(maxlen=max(1, limits.window))

    # --- evidence -----------------------------------------------------------------------
    def answered(self, now: float, rtt: float | None = None) -> Transition | None:
        """A probe reply in time (`rtt`), or tunnel traffic (`rtt` None). A late reply is
        not an answer: the caller only passes its RTT to `learn_rtt`."""
        if rtt is not None:
            self.learn_rtt(rtt)
            self.window.append(True)
        self.last_answer = now
        self.misses = 0
        self.burst_misses = 0
        self.answers += 1
        degraded = self._over_limits()
        if degraded:
            return self._apply(Event.DEGRADED, now, degraded)
        if self.state in (UNKNOWN, DOWN) and self.answers >= self.timing.rise:
            return self._apply(Event.ROSE, now, f"{self.answers} answers in a row")
        return self._apply(Event.ANSWERED, now, "answered")

    def missed(self, now: float, burst: bool = False, why: str = "timeout") -> Transition | None:
        self.window.append(False)
        self.answers = 0
        self.misses += 1
        if self.state is SUSPECT and burst:
            self.burst_misses += 1
            if self.burst_misses >= self.timing.confirm:
                return self._apply(Event.BURST_LOST, now, f"confirming burst of {self.timing.confirm} lost")
        degraded = self._over_limits()
        if degraded and self.state is not DOWN:
            return self._apply(Event.DEGRADED, now, degraded)
        if self.state in (UP, UNKNOWN) and self.misses >= self.timing.fall:
            return self._apply(Event.FELL, now, f"{self.misses} probes lost in a row ({why})")
        return self._apply(Event.MISSED, now, why)

    def link_lost(self, now: float, why: str) -> Transition | None:
        self.answers = 0
        self.burst_misses = 0
        return self._apply(Event.LINK_LOST, now, why)

    # --- the estimator --------------------------------------------------------------------
    def timeout(self) -> float:
        t = self.timing
        if self.srtt is None:
            return t.timeout_max
        rto = self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar)
        return min(t.timeout_max, max(t.timeout_min, rto))

    def loss(self) -> float:
        return 0.0 if not self.window else self.window.count(False) / len(self.window)

    def retune(self, timing: ProbeTiming, limits: Limits) -> None:
        """A new policy: keep the evidence, use the new thresholds from now on."""
        self.timing = timing
        if limits.window != self.limits.window:
            self.window = deque(self.window, maxlen=max(1, limits.window))
        self.limits = limits

    def learn_rtt(self, rtt: float) -> None:
        self.last_rtt = rtt
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def _over_limits(self) -> str:
        lim = self.limits
        if lim.max_loss > 0 and len(self.window) >= lim.window and self.loss() > lim.max_loss:
            return f"loss {self.loss():.0%} over the last {len(self.window)} probes > {lim.max_loss:.0%}"
        if lim.max_rtt > 0 and self.srtt is not None and self.srtt > lim.max_rtt:
            return f"RTT {self.srtt * 1000:.0f} ms > {lim.max_rtt * 1000:.0f} ms"
        return ""

    def _apply(self, event: Event, now: float, why: str) -> Transition | None:
        old = self.state
        new = TRANSITIONS[(old, event)]
        if new is old:
            return None
        self.state, self.since = new, now
        if new is UP and (old is not SUSPECT or not self.active):
            self.up_since = now  # a suspicion of a standby path restarts its hold-down
        elif new in (DOWN, UNKNOWN):
            self.up_since = None
        if new is SUSPECT:
            self.burst_misses = 0
        return Transition(old, new, event, why)
