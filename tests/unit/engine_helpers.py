"""Helpers for engine transcripts: a small world (wlan0 active, wwan0 standby, eth0
optional) and a `Transcript` that feeds facts at times and checks the orders."""

from __future__ import annotations

import re
from dataclasses import replace

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.engine import Engine
from mobikectl.engine.ids import Path, ProbeKind
from mobikectl.policy.model import Policy

GW = "192.0.2.1"
WLAN_IP, WWAN_IP, ETH_IP = "10.1.0.2", "10.2.0.2", "10.3.0.2"
ROUTERS = {"wlan0": "10.1.0.1", "wwan0": "10.2.0.1", "eth0": "10.3.0.1"}
ADDRS = {"wlan0": WLAN_IP, "wwan0": WWAN_IP, "eth0": ETH_IP}
WLAN, WWAN, ETH = (Path(u, ADDRS[u], GW) for u in ("wlan0", "wwan0", "eth0"))


def link(name, up=True, carrier=True, index=None, kind="veth", present=True):
    return F.LinkChanged(name, index or 1, up, carrier, present=present, kind=kind)


def addr(name, address=None, **kw):
    return F.AddressChanged(name, address or ADDRS[name], 24, **kw)


def default(name, metric=100, present=True):
    return F.RouteChanged("default", name, ROUTERS[name], src=ADDRS[name], metric=metric, present=present)


def net(*names):
    return F.NetSnapshot(links=tuple(link(n) for n in names),
                         addresses=tuple(addr(n) for n in names),
                         routes=tuple(default(n, 100 + i) for i, n in enumerate(names)))


def sa(local=WLAN_IP, spis=("aa", "bb"), name="home", state="ESTABLISHED"):
    return F.SaInfo(name, "1", state, local, 4500, GW, 4500, spis[0], spis[1], vips=("10.99.0.1",))


def steering_route(path, present=True):
    return F.RouteChanged(f"{path.gateway}/32", path.uplink, ROUTERS[path.uplink], src=path.local,
                          proto=73, present=present)


class Any_:
    def __eq__(self, other):
        return True


class Matching:
    def __init__(self, pattern):
        self.pattern = pattern

    def __eq__(self, other):
        return isinstance(other, str) and re.search(self.pattern, other) is not None

    def __repr__(self):
        return f"Matching({self.pattern!r})"


class Transcript:
    """Feeds facts at given times; runs the engine's timers like a driver would."""

    def __init__(self, engine: Engine, now: float = 0.0):
        self.engine = engine
        self.now = now
        self.log: list[tuple[float, object]] = []
        self.pending: list[tuple[float, object]] = []  # answers on their way
        self.answer = None  # the last answer function given to run_until

    def feed(self, fact, at=None):
        if at is not None:
            self.run_until(at)
        orders = self.engine.handle(fact, self.now)
        self.log += [(self.now, o) for o in orders]
        self._answer(orders)
        return orders

    def _answer(self, orders):
        if self.answer is None:
            return
        for o in orders:
            if isinstance(o, A.SendProbe):
                rtt = self.answer(o)
                if rtt is not None:
                    self.pending.append((self.now + rtt, F.ProbeReplied(o.path, o.kind, o.seq, rtt)))

    def run_until(self, t, answer=None):
        """Run timers up to `t`. `answer(probe) -> rtt | None` answers SendProbes."""
        orders_all = []
        if answer is not None:
            self.answer = answer
        pending = self.pending
        rounds = 0  # at the same `now`: a deadline that never advances is an engine bug, not a hang
        while True:
            d = self.engine.next_deadline()
            nxt = min([x[0] for x in pending] + ([d] if d is not None else []), default=None)
            if nxt is None or nxt > t:
                break
            rounds = rounds + 1 if nxt <= self.now else 0
            if rounds > 10_000:
                raise AssertionError(f"the engine's deadline does not advance past {self.now!r}")
            self.now = max(self.now, nxt)
            due = [p for p in pending if p[0] <= self.now]
            pending[:] = [p for p in pending if p[0] > self.now]
            orders = []
            for _, fact in due:
                orders += self.engine.handle(fact, self.now)
            if d is not None and d <= self.now:
                orders += self.engine.handle_timer(self.now)
            self.log += [(self.now, o) for o in orders]
            orders_all += orders
            self._answer(orders)
        self.now = max(self.now, t)
        return orders_all


def kernel_routes(t, delay=0.001):
    """netlink shows the route of every SteerTo `delay` later, as the kernel installed it;
    like the netlink adapter, not again for the route that is already there."""
    engine, shown = t.engine, {}

    def watch(orders):
        for o in orders:
            if isinstance(o, A.SteerTo) and shown.get(o.path.gateway) != o.path:
                shown[o.path.gateway] = o.path
                t.pending.append((t.now + delay, steering_route(o.path)))
        return orders
    handle, handle_timer = engine.handle, engine.handle_timer
    engine.handle = lambda fact, now: watch(handle(fact, now))
    engine.handle_timer = lambda now: watch(handle_timer(now))


def probes(orders):
    return [o for o in orders if isinstance(o, A.SendProbe)]


def of(orders, *types):
    return [o for o in orders if isinstance(o, types)]


def answer_all(rtt=0.005, dead=()):
    """An answer function: every probe answered in `rtt`, except on uplinks in `dead`."""
    def answer(probe):
        return None if probe.path.uplink in dead else rtt
    return answer


def started(policy=None, names=("wlan0", "wwan0"), now=0.0, warm=40.0):
    """An engine with the SA on wlan0, run until `warm` with every probe answered."""
    e = Engine(policy or Policy(), now)
    t = Transcript(e, now)
    t.feed(net(*names))
    t.feed(F.SaSnapshot((sa(),)))
    t.run_until(now + warm, answer_all())
    return t
