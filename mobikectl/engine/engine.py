"""The failover engine: facts and `now` in, orders out. No I/O, no clock, no randomness:
the same facts at the same times give the same orders.

    engine = Engine(policy, now)
    orders = engine.handle(fact, now)        # a fact observed at monotonic time `now`
    orders = engine.handle_timer(now)        # when now >= engine.next_deadline()
    engine.view()                            # JSON-able state for `mobikectl status`

Each call runs in three steps: apply the fact (or the timers due), then re-derive what the
fact may have changed (the paths, which one is active, the decision per gateway), then
send the probes that are due. Orders come out in that order; Notes precede the order they
explain. See docs/engine.md for the theory of operation.
"""

from __future__ import annotations

from collections import deque

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.decide import Candidate, Override
from mobikectl.engine.health import PathHealth
from mobikectl.engine.ids import Health, Path
from mobikectl.engine.moves import Gateway, Move
from mobikectl.engine.probing import Budget, PathProbe
from mobikectl.engine.recovery import Kept, Recovery
from mobikectl.engine.sas import SaTable
from mobikectl.engine.charon import CharonFacts
from mobikectl.engine.scheduling import Scheduling
from mobikectl.engine.steering import Steering
from mobikectl.engine.uplinks import Uplinks, family
from mobikectl.engine.view import render
from mobikectl.policy.model import Policy

DEFAULT_ROUTE_PROTO = 73  # mobikectl.settings.ROUTE_PROTO; passed in by the daemon


class Engine(Scheduling, Steering, CharonFacts, Recovery):
    def __init__(self, policy: Policy, now: float, *, route_proto: int = DEFAULT_ROUTE_PROTO) -> None:
        self.policy = policy
        self.started_at = now
        self.now = now
        self.route_proto = route_proto
        self.uplinks = Uplinks(policy, route_proto)
        self.sas = SaTable(policy)
        self.paths: dict[tuple[str, str], PathProbe] = {}
        self.gateways: dict[str, Gateway] = {}
        self.budgets: dict[str, Budget] = {}
        self.active: set[tuple[str, str]] = set()
        self.override: Override | None = None
        self.charon_up = True
        self.awaiting_snapshot = False
        self.inbound_packets: int | None = None
        self.inbound_at: float | None = None
        self.moves: deque[Move] = deque(maxlen=20)
        self.sa_uplink: dict[str, str] = {}  # local address -> the uplink it was last seen on
        self.unsteered: set[str] = set()  # gateway addresses whose route we remove (RemoveSteering)
        self.kept: dict[str, Kept] = {}  # connections kept up (recovery.py)
        self.fresh_connection = False  # CharonConnected came, its first SaSnapshot not yet
        self.topology_dirty = True
        self.decide_dirty = True
        self._order: list[PathProbe] | None = None  # the paths in key order (a cache)
        self._handlers = {
            F.LinkChanged: self._on_link, F.AddressChanged: self._on_address,
            F.RouteChanged: self._on_route, F.NetSnapshot: self._on_net_snapshot,
            F.ProbeReplied: self._on_reply, F.ProbeLost: self._on_probe_lost,
            F.TunnelInbound: self._on_inbound,
            F.SaSnapshot: self._on_sa_snapshot, F.IkeUp: self._on_ike_up, F.IkeDown: self._on_ike_down,
            F.IkeUpdated: self._on_ike_updated, F.IkeRekeyed: self._on_ike_rekeyed,
            F.ChildRekeyed: self._on_child_rekeyed, F.CharonConnected: self._on_charon_connected,
            F.CharonLost: self._on_charon_lost, F.ActionFailed: self._on_action_failed,
            F.SwitchRequested: self._on_switch, F.PolicyLoaded: self._on_policy,
        }

    # --- the API ----------------------------------------------------------------------------
    def handle(self, fact: object, now: float) -> list[object]:
        handler = self._handlers.get(type(fact))
        if handler is None:
            raise TypeError(f"Engine.handle: unexpected fact {fact!r}")
        self.now = now
        out: list[object] = []
        handler(fact, now, out)
        self._settle(now, out)
        return out

    def handle_timer(self, now: float) -> list[object]:
        self.now = now
        out: list[object] = []
        for pp in self._sorted_paths():
            for probe in pp.expired(now):
                self._missed(pp, probe.burst, "timeout", now, out)
        self._gateway_timers(now, out)
        self._keep_timers(now, out)
        if self.override is not None and self.override.until is not None and self.override.until <= now:
            out.append(A.Note("switch", f"manual switch to {self.override.uplink} expired; back to automatic",
                              {"uplink": self.override.uplink, "expired": True}))
            self.override = None
            self.decide_dirty = True
        self._settle(now, out)
        return out

    def next_deadline(self) -> float | None:
        times = [t for pp in self._sorted_paths() if (t := pp.next_deadline()) is not None]
        for gw in self.gateways.values():
            times.extend(gw.deadlines())
        if self.override is not None and self.override.until is not None:
            times.append(self.override.until)
        times.extend(self._keep_deadlines())
        return min(times) if times else None

    def set_policy(self, policy: Policy, now: float) -> list[object]:
        return self.handle(F.PolicyLoaded(policy), now)

    def view(self) -> dict:
        return render(self)

    # --- netlink ----------------------------------------------------------------------------
    def _on_link(self, fact: F.LinkChanged, now: float, out: list) -> None:
        self.uplinks.link_changed(fact)
        self.topology_dirty = True

    def _on_address(self, fact: F.AddressChanged, now: float, out: list) -> None:
        self.uplinks.address_changed(fact)
        self.topology_dirty = True

    def _on_route(self, fact: F.RouteChanged, now: float, out: list) -> None:
        gw = self.uplinks.route_changed(fact)
        if gw is not None:
            if gw not in self.uplinks.steering:
                self.unsteered.discard(gw)
            self._our_route_changed(gw, fact, now, out)
        self.topology_dirty = True

    def _on_net_snapshot(self, fact: F.NetSnapshot, now: float, out: list) -> None:
        self.uplinks.snapshot(fact)
        self.unsteered &= set(self.uplinks.steering)
        for gw in sorted(set(self.uplinks.steering) | set(self.gateways)):
            route = self.uplinks.steering.get(gw)
            self._our_route_changed(gw, route or F.RouteChanged(f"{gw}/32", None, None, present=False,
                                                                proto=self.route_proto), now, out)
        self.topology_dirty = True

    # --- the paths --------------------------------------------------------------------------
    def _settle(self, now: float, out: list) -> None:
        if self.topology_dirty:
            self._follow_sas(now, out)
            self._sync_paths(now, out)
        if self.decide_dirty:
            self.decide_dirty = False
            self._decide_all(now, out)
        self._keep_up(now, out)
        self._send_due(now, out)

    def _sorted_paths(self) -> list[PathProbe]:
        if self._order is None:
            self._order = [self.paths[k] for k in sorted(self.paths)]
        return self._order

    def _sync_paths(self, now: float, out: list) -> None:
        self.topology_dirty = False
        self.decide_dirty = True
        gws = set(self.sas.gateways())
        self.unsteered -= gws  # an SA uses it (again): steered again
        gws |= set(self.uplinks.steering) - self.unsteered
        gws |= {g for g, st in self.gateways.items() if st.move is not None}
        for g in gws:  # each remembers its SAs, to follow them to another address (_follow_sas)
            self.gateways.setdefault(g, Gateway(g)).sas.update(
                spis for spis, sa in self.sas.sas.items() if sa.remote_host == g)
        for g in [g for g in self.gateways if g not in gws]:
            del self.gateways[g]
        managed = self.uplinks.managed()
        wanted = {(u.ifname, g) for u in managed for g in gws}
        self._order = None
        for key in [k for k in self.paths if k not in wanted]:
            del self.paths[key]
        for up in managed:
            cls = self.policy.class_of(up.ifname)
            assert cls is not None
            monthly = cls.monthly_budget_mb * 1e6 if self.policy.metered(up.ifname) else 0.0
            if monthly <= 0:  # 0: no budget (a reload to 0 drops the one in force)
                self.budgets.pop(up.ifname, None)
            elif (budget := self.budgets.get(up.ifname)) is None or budget.monthly != monthly:
                self.budgets[up.ifname] = Budget(monthly, now)
            for g in sorted(gws):
                pp = self.paths.get((up.ifname, g))
                if pp is None:
                    pp = self.paths[(up.ifname, g)] = PathProbe(
                        up.ifname, g, PathHealth(cls.probe, cls.limits, now), now)
                local = up.source(family(g))
                pp.set_local(local)
                why = up.down_reason() or ("" if local else "no usable address")
                if why and (not pp.down_reason or pp.health.state is not Health.DOWN):
                    pp.inflight.clear()
                    tr = pp.health.link_lost(now, why)
                    if tr is not None:
                        self._transition(pp, tr, now, out)
                elif not why and pp.down_reason:
                    pp.next_at = now
                pp.down_reason = why
        self._order = None
        self.budgets = {k: v for k, v in self.budgets.items() if self.policy.metered(k)}

    def _current(self, g: str) -> Path | None:
        """Where the SA to gateway `g` sits (or, with no SA, where our route points)."""
        sas = self.sas.on_gateway(g)
        if not sas:
            return self.gateways[g].route
        local = sas[0].local_host
        owner = self.uplinks.owner_of(local)
        if owner is not None:
            self.sa_uplink[local] = owner.ifname
        uplink = owner.ifname if owner is not None else self.sa_uplink.get(local)
        return None if uplink is None else Path(uplink, local, g)  # type: ignore[arg-type]

    def _candidates(self, g: str) -> list[Candidate]:
        out = []
        for pp in self._sorted_paths():
            if pp.gateway == g and pp.path is not None:
                rank = self.policy.rank(pp.uplink)
                out.append(Candidate(pp.path, pp.health.state, pp.health.up_since,
                                     rank if rank is not None else 99, self.policy.metered(pp.uplink)))
        return out

    def _refresh_active(self, now: float) -> None:
        active = set()
        for g in self.gateways:
            cur = self._current(g)
            if cur is not None and (cur.uplink, g) in self.paths:
                active.add((cur.uplink, g))
        for key in active - self.active:
            self.paths[key].next_at = now
        for key in self.active - active:
            if key in self.paths:
                pp = self.paths[key]
                self.active = self.active - {key}
                pp.next_at = now + self._period(pp)
        self.active = active
        for key, pp in self.paths.items():
            pp.health.active = key in active
