"""A small scripted world that plays the kernel, the probes' targets and charon around the
real engine, to record a scenario's facts (`inputs.jsonl`), the way `mobikectl run
--record` records a lab run.

Three uplinks (eth0, wlan0, wwan0) to one gateway; the SA starts on the first uplink of
`start`. Each uplink answers every probe in its RTT unless a fault is in force:

    faults = {"eth0": [("blackhole", 20.0), ("restore", 60.0)],
              "wlan0": [("carrier-off", 5.0), ("carrier-on", 9.0)]}

A blackholed uplink keeps its link and carrier and silently drops everything; carrier
loss shows up as a LinkChanged (and drops everything). A SteerTo shows up as our route,
and charon moves the SA 108 ms later (ike-update, then a CHILD_SA rekey). This is not an
engine: every decision comes from `mobikectl.engine.engine.Engine`.

    python tests/scenarios/world.py tests/scenarios/<name>   # (re)write inputs.jsonl from world.json
"""

from __future__ import annotations

import heapq
import json
import sys
from pathlib import Path as FsPath

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.codec import record_line
from mobikectl.engine.engine import Engine
from mobikectl.policy.model import Policy

GATEWAY = "192.0.2.1"
UPLINKS = {  # name: (address, router, metric, rtt)
    "eth0": ("10.3.0.2", "10.3.0.1", 100, 0.002),
    "wlan0": ("10.1.0.2", "10.1.0.1", 200, 0.008),
    "wwan0": ("10.2.0.2", "10.2.0.1", 300, 0.060),
}
MOVE_DELAY = 0.108  # charon's move after a route change (lab-facts.md)
SPIS = ("c0ffee", "f00d")


class World:
    def __init__(self, policy: Policy | None = None, *, start: str = "eth0",
                 faults: dict[str, list[tuple[str, float]]] | None = None) -> None:
        self.policy = policy or Policy()
        self.start = start
        self.faults = faults or {}
        self.recording: list[str] = []
        self.queue: list[tuple[float, int, object]] = []
        self.counter = 0
        self.sa_local = UPLINKS[start][0]

    # --- the world's state at a time ---
    def _state(self, uplink: str, now: float) -> dict[str, bool]:
        state = {"blackhole": False, "carrier": True}
        for what, at in sorted(self.faults.get(uplink, []), key=lambda f: f[1]):
            if at > now:
                break
            if what == "blackhole":
                state["blackhole"] = True
            elif what == "restore":
                state["blackhole"] = False
            elif what == "carrier-off":
                state["carrier"] = False
            elif what == "carrier-on":
                state["carrier"] = True
        return state

    def _answers(self, uplink: str, now: float) -> bool:
        state = self._state(uplink, now)
        return state["carrier"] and not state["blackhole"]

    def _push(self, at: float, fact: object) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (at, self.counter, fact))

    def _act(self, orders: list, now: float) -> None:
        for o in orders:
            if type(o) is A.SendProbe:
                rtt = UPLINKS[o.path.uplink][3]
                if self._answers(o.path.uplink, now) and self._answers(o.path.uplink, now + rtt):
                    self._push(now + rtt, F.ProbeReplied(o.path, o.kind, o.seq, rtt))
            elif type(o) is A.SteerTo:
                a, router, _, _ = UPLINKS[o.path.uplink]
                self._push(now + 0.001, F.RouteChanged(f"{GATEWAY}/32", o.path.uplink, router, src=a, proto=73))
                if o.path.local != self.sa_local:
                    old, self.sa_local = self.sa_local, o.path.local
                    self._push(now + MOVE_DELAY, F.IkeUpdated("home", *SPIS, old, GATEWAY, self.sa_local, GATEWAY))
                    self._push(now + MOVE_DELAY + 0.001, F.ChildRekeyed("home", *SPIS, "net", "1", "2"))

    def _feed(self, engine: Engine, fact: object, now: float) -> None:
        self.recording.append(record_line(round(now, 6), fact))
        self._act(engine.handle(fact, now), now)

    def run(self, until: float) -> Engine:
        names = list(UPLINKS)
        links = tuple(F.LinkChanged(n, i + 2, True, True, kind="veth") for i, n in enumerate(names))
        addrs = tuple(F.AddressChanged(n, UPLINKS[n][0], 24) for n in names)
        routes = tuple(F.RouteChanged("default", n, UPLINKS[n][1], src=UPLINKS[n][0], metric=UPLINKS[n][2])
                       for n in names)
        sa = F.SaInfo("home", "1", "ESTABLISHED", self.sa_local, 4500, GATEWAY, 4500, *SPIS, vips=("10.99.0.1",))
        for i, name in enumerate(names):  # carrier changes are netlink events
            for what, at in self.faults.get(name, []):
                if what in ("carrier-off", "carrier-on"):
                    self._push(at, F.LinkChanged(name, i + 2, True, what == "carrier-on", kind="veth"))
        engine = Engine(self.policy, 0.0)
        self._feed(engine, F.NetSnapshot(links, addrs, routes), 0.0)
        self._feed(engine, F.SaSnapshot((sa,)), 0.0)
        while True:
            deadline = engine.next_deadline()
            t_fact = self.queue[0][0] if self.queue else None
            # timers due at or before the next fact fire first, as codec.replay does
            if deadline is not None and deadline <= until and (t_fact is None or deadline <= t_fact):
                self._act(engine.handle_timer(deadline), deadline)
            elif t_fact is not None and t_fact <= until:
                _, _, fact = heapq.heappop(self.queue)
                self._feed(engine, fact, t_fact)
            else:
                break
        return engine


def policy_of(folder: FsPath) -> Policy:
    """A scenario's policy: folder/policy.toml, or the shipped policy named in folder/policy.ref."""
    from mobikectl.policy.load import load_policy

    if (folder / "policy.toml").exists():
        return load_policy(folder / "policy.toml")
    ref = (folder / "policy.ref").read_text().strip()
    return load_policy(FsPath(__file__).resolve().parents[2] / ref)


def record(folder: FsPath) -> None:
    """Write folder/inputs.jsonl from folder/world.json and the folder's policy."""
    spec = json.loads((folder / "world.json").read_text())
    faults = {name: [tuple(f) for f in fs] for name, fs in spec.get("faults", {}).items()}
    world = World(policy_of(folder), start=spec.get("start", "eth0"), faults=faults)
    world.run(until=float(spec["until"]))
    (folder / "inputs.jsonl").write_text("\n".join(world.recording) + "\n")
    print(f"{folder}/inputs.jsonl: {len(world.recording)} facts")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        record(FsPath(arg))
