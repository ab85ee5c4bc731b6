"""The event hub: the run loop publishes events, control-socket clients follow them.

    hub = EventHub(keep=1000, max_pending=1000)
    hub.publish({"kind": "move", "message": "...", "data": {...}})  -> the stored event
    sub = hub.subscribe(since=None)       # since=N: first the kept events with seq > N
    sub.get(timeout=0.5)                  # an event, or None on timeout
    for event in sub: ...                 # blocking iteration (ends when closed)
    sub.close(); hub.close()

Every stored event carries `schema`, `seq` (1, 2, ... for the hub's life), `time`
(ISO 8601 UTC, milliseconds; kept if the publisher set it), `kind`, `message`, `data`.
The hub keeps the last `keep` events so `since` works after a reconnect.

publish() never blocks on a subscriber: each subscriber has its own queue of at most
`max_pending` events; a subscriber that falls that far behind is dropped, and its next
get() raises Overrun (with the last seq it received, to resume from). Thread-safe.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Iterator

SCHEMA = 1


class Overrun(Exception):
    """The subscriber fell behind and was dropped. `last_seq`: the last event it got."""

    def __init__(self, last_seq: int, dropped_after: int) -> None:
        super().__init__(f"fell behind by more than {dropped_after} events after event {last_seq}")
        self.last_seq = last_seq


class HubClosed(Exception):
    """The hub was closed (the daemon is stopping)."""


def iso_utc(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


class Subscription:
    def __init__(self, hub: "EventHub", backlog: list[dict], max_pending: int) -> None:
        self._hub = hub
        self._queue: collections.deque[dict] = collections.deque(backlog)
        self._max = max_pending
        self._limit = max_pending + len(backlog)  # the backlog does not count against it
        self._cond = threading.Condition(hub._lock)
        self._dropped = False
        self._closed = False
        self.last_seq = backlog[0]["seq"] - 1 if backlog else hub._seq

    def _offer(self, event: dict) -> None:  # hub lock held
        if self._dropped:
            return
        if len(self._queue) >= self._limit:
            self._dropped = True
            self._queue.clear()
        else:
            self._queue.append(event)
        self._cond.notify_all()

    def _end(self) -> None:  # hub lock held
        self._closed = True
        self._cond.notify_all()

    def get(self, timeout: float | None = None) -> dict | None:
        """The next event; None after `timeout` seconds without one. Raises Overrun when
        dropped, HubClosed when the hub (or this subscription) was closed."""
        with self._cond:
            if not self._queue and not self._dropped and not self._closed:
                self._cond.wait(timeout)
            if self._queue:
                event = self._queue.popleft()
                self.last_seq = event["seq"]
                return event
            if self._dropped:
                raise Overrun(self.last_seq, self._max)
            if self._closed:
                raise HubClosed()
            return None

    def close(self) -> None:
        self._hub._unsubscribe(self)

    def __iter__(self) -> Iterator[dict]:
        while True:
            try:
                event = self.get(timeout=1.0)
            except HubClosed:
                return
            if event is not None:
                yield event


class EventHub:
    def __init__(self, *, keep: int = 1000, max_pending: int = 1000) -> None:
        self._lock = threading.Lock()
        self._ring: collections.deque[dict] = collections.deque(maxlen=keep)
        self._subs: set[Subscription] = set()
        self._seq = 0
        self._max_pending = max_pending
        self._closed = False

    def publish(self, event: dict) -> dict:
        with self._lock:
            self._seq += 1
            stored = {
                "schema": SCHEMA,
                "seq": self._seq,
                "time": event.get("time") or iso_utc(),
                "kind": str(event.get("kind", "")),
                "message": str(event.get("message", "")),
                "data": event.get("data") or {},
            }
            self._ring.append(stored)
            for sub in self._subs:
                sub._offer(stored)
            return stored

    def recent(self, since: int | None = None) -> list[dict]:
        """The kept events with seq > since (all kept events if since is None)."""
        with self._lock:
            return [e for e in self._ring if since is None or e["seq"] > since]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def first_seq(self) -> int:
        """The oldest kept event's seq (last_seq + 1 when none is kept)."""
        with self._lock:
            return self._ring[0]["seq"] if self._ring else self._seq + 1

    def subscribe(self, since: int | None = None) -> Subscription:
        """Live events from now on; with `since`, first the kept events after it."""
        with self._lock:
            backlog = [] if since is None else [e for e in self._ring if e["seq"] > since]
            sub = Subscription(self, backlog, self._max_pending)
            if self._closed:
                sub._end()
            else:
                self._subs.add(sub)
            return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            sub._end()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sub in self._subs:
                sub._end()
            self._subs.clear()
