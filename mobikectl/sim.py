"""A random-loss probe model over simulated days: how often does the engine move for
nothing, and what do the probes cost?

The world: one IKE_SA on wlan0 with wwan0 (metered) as standby, both answering every
probe in ~`rtt` seconds, except that each direction of the active uplink (and, if asked,
of the standby) drops packets independently with probability `loss`, so a probe is lost
with probability 1 - (1 - loss)^2. The model plays charon and the kernel too: a SteerTo
shows up as our route, and charon moves the SA 108 ms later (ike-update, then a CHILD_SA
rekey, as with kernel-libipsec). Every move away from a healthy path is a false move.
The engine runs on a fake clock, so a simulated day takes seconds.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.engine import Engine
from mobikectl.engine.probing import MONTH
from mobikectl.policy.model import Policy

GATEWAY = "192.0.2.1"
UPLINKS = {"wlan0": ("10.1.0.2", "10.1.0.1", 100), "wwan0": ("10.2.0.2", "10.2.0.1", 200)}
MOVE_DELAY = 0.108  # charon's move after a route change (lab-facts.md)


def _world() -> tuple[F.NetSnapshot, F.SaSnapshot]:
    links = tuple(F.LinkChanged(n, i + 2, True, True, kind="veth") for i, n in enumerate(UPLINKS))
    addrs = tuple(F.AddressChanged(n, a, 24) for n, (a, _, _) in UPLINKS.items())
    routes = tuple(F.RouteChanged("default", n, gw, src=a, metric=m) for n, (a, gw, m) in UPLINKS.items())
    sa = F.SaInfo("home", "1", "ESTABLISHED", UPLINKS["wlan0"][0], 4500, GATEWAY, 4500, "c0ffee", "f00d",
                  vips=("10.99.0.1",))
    return F.NetSnapshot(links, addrs, routes), F.SaSnapshot((sa,))


def simulate_false_moves(policy: Policy | None = None, loss: float = 0.03, days: float = 1.0, seed: int = 1,
                         rtt: float = 0.005, standby_loss: float = 0.0) -> dict[str, Any]:
    """Run the engine over `days` of random loss; return moves and probe bytes."""
    policy = policy or Policy()
    rng = random.Random(seed)
    end = days * 86400.0
    engine = Engine(policy, 0.0)
    queue: list[tuple[float, int, object]] = []
    counter = 0
    sa_local = UPLINKS["wlan0"][0]
    spis = ("c0ffee", "f00d")
    moves: list[dict] = []
    probes = {n: 0 for n in UPLINKS}

    def push(t: float, fact: object) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(queue, (t, counter, fact))

    def act(orders: list, now: float) -> None:
        nonlocal sa_local
        for o in orders:
            if type(o) is A.SendProbe:
                up = o.path.uplink
                probes[up] += 1
                p = loss if up == "wlan0" else standby_loss
                if rng.random() >= 1 - (1 - p) ** 2:  # the probe and its answer got through
                    r = rtt * (0.8 + 0.6 * rng.random())
                    push(now + r, F.ProbeReplied(o.path, o.kind, o.seq, r))
            elif type(o) is A.SteerTo:
                a, gw, _ = UPLINKS[o.path.uplink]
                push(now + 0.001, F.RouteChanged(f"{GATEWAY}/32", o.path.uplink, gw, src=a, proto=73))
                if o.path.local != sa_local:
                    moves.append({"at": round(now, 3), "to": o.path.uplink, "reason": o.reason})
                    old, sa_local = sa_local, o.path.local
                    push(now + MOVE_DELAY, F.IkeUpdated("home", *spis, old, GATEWAY, sa_local, GATEWAY))
                    push(now + MOVE_DELAY + 0.001, F.ChildRekeyed("home", *spis, "net", "1", "2"))

    net, sas = _world()
    act(engine.handle(net, 0.0), 0.0)
    act(engine.handle(sas, 0.0), 0.0)
    while True:
        deadline = engine.next_deadline()
        t_fact = queue[0][0] if queue else None
        if t_fact is not None and (deadline is None or t_fact <= deadline):
            if t_fact > end:
                break
            _, _, fact = heapq.heappop(queue)
            act(engine.handle(fact, t_fact), t_fact)
        elif deadline is not None and deadline <= end:
            act(engine.handle_timer(deadline), deadline)
        else:
            break
    view = engine.view()
    per_month = MONTH / end
    bytes_ = {n: u["probe_bytes_sent"] + u["probe_bytes_received"] for n, u in view["uplinks"].items()}
    away = [m for m in moves if m["to"] != "wlan0"]
    return {
        "loss": loss, "probe_loss": 1 - (1 - loss) ** 2, "days": days, "seed": seed,
        "moves": len(moves), "false_moves": len(away), "false_moves_per_day": len(away) / days,
        "move_log": moves[:50],
        "probes": probes,
        "probe_bytes": bytes_,
        "probe_mb_per_month": {n: round(b * per_month / 1e6, 3) for n, b in bytes_.items()},
        "metered_standby_mb_per_month": round(bytes_["wwan0"] * per_month / 1e6, 3),
        "expected_false_downs_per_day": expected_false_downs_per_day(policy, loss),
    }


def expected_false_downs_per_day(policy: Policy, loss: float, uplink: str = "wlan0") -> float:
    """The arithmetic behind the simulation: an idle active path is probed 1/interval
    times a second; a false DOWN needs `fall` misses in a row after an answer, then the
    probe still in flight and the whole burst lost: (1-q) q^fall q^(inflight+confirm)."""
    cls = policy.class_of(uplink)
    assert cls is not None
    t = cls.probe
    q = 1 - (1 - loss) ** 2
    inflight = max(0, int(t.timeout_min // t.interval))  # probes sent but not yet timed out
    return 86400 / t.interval * (1 - q) * q ** t.fall * q ** (inflight + t.confirm)
