"""The engine's probe half: answers, misses and the state changes they make, the cadence of
each path (active, standby, rising, rechecking), the confirming burst and the standby
check on suspicion, the probe kind, and the metered budget's say. A mixin of `Engine`
(engine.py holds the paths; probing.py the per-path bookkeeping). See docs/engine.md,
"Probes".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.health import Transition
from mobikectl.engine.ids import Health, ProbeKind
from mobikectl.engine.probing import PathProbe, probe_cost
from mobikectl.engine.uplinks import family

if TYPE_CHECKING:
    from mobikectl.engine.engine import Engine

FRESH = 2.0  # a standby path that answered this recently is not re-probed on suspicion
FRESH_METERED = 10.0

R_ACTIVE, R_STANDBY, R_RISE, R_BURST, R_CHECK, R_RECHECK = (
    "active path", "standby path", "rising", "confirming burst", "active path suspect: checking standby",
    "standby path missed a probe: checking again")


class Scheduling:
    # --- probes -----------------------------------------------------------------------------
    def _on_reply(self: "Engine", fact: F.ProbeReplied, now: float, out: list) -> None:
        pp = self.paths.get((fact.path.uplink, fact.path.gateway))
        if pp is None:
            return
        pp.received(fact.kind, now)
        if pp.inflight.pop(fact.seq, None) is None:  # late (already timed out) or unknown
            if fact.seq <= pp.seq:
                pp.health.learn_rtt(fact.rtt)
            return
        tr = pp.health.answered(now, fact.rtt)
        if tr is not None:
            self._transition(pp, tr, now, out)
        elif pp.health.state in (Health.UNKNOWN, Health.DOWN) and pp.key not in self.active:
            pp.next_at = min(pp.next_at if pp.next_at is not None else now, now + pp.health.timing.interval)

    def _on_probe_lost(self: "Engine", fact: F.ProbeLost, now: float, out: list) -> None:
        pp = self.paths.get((fact.path.uplink, fact.path.gateway))
        if pp is None:
            return
        probe = pp.inflight.pop(fact.seq, None)
        if probe is not None:
            self._missed(pp, probe.burst, fact.why or "lost", now, out)

    def _on_inbound(self: "Engine", fact: F.TunnelInbound, now: float, out: list) -> None:
        before, self.inbound_packets = self.inbound_packets, fact.packets
        if before is None or fact.packets <= before:
            return
        self.inbound_at = now
        for key in sorted(self.active):
            pp = self.paths.get(key)
            if pp is not None and pp.can_probe():
                tr = pp.health.answered(now)
                if tr is not None:
                    self._transition(pp, tr, now, out)

    def _missed(self: "Engine", pp: PathProbe, burst: bool, why: str, now: float, out: list) -> None:
        tr = pp.health.missed(now, burst=burst, why=why)
        if tr is not None:
            self._transition(pp, tr, now, out)
        elif self._rechecking(pp):  # an outage shorter than two standby periods must show too
            pp.next_at = now if pp.next_at is None else min(pp.next_at, now)

    def _rechecking(self: "Engine", pp: PathProbe) -> bool:
        """A standby path that missed a probe: probed at the active cadence until it answers
        (a lost packet) or `fall` misses make it SUSPECT (which restarts its hold-down)."""
        h = pp.health
        return h.state is Health.UP and h.misses > 0 and pp.key not in self.active

    def _transition(self: "Engine", pp: PathProbe, tr: Transition, now: float, out: list) -> None:
        name = pp.path.id if pp.path else f"{pp.uplink}>{pp.gateway}"
        out.append(A.Note("probe", f"{name}: {tr.old.value} -> {tr.new.value} ({tr.why})",
                          {"path": name, "uplink": pp.uplink, "from": tr.old.value, "to": tr.new.value,
                           "event": tr.event.value}))
        self.decide_dirty = True
        if tr.new is Health.SUSPECT:
            pp.start_burst(now)
            pp.next_at = None
            if pp.key in self.active:
                self._check_standbys(pp, now, out)
            return
        pp.stop_burst()
        pp.next_at = now + self._period(pp)

    def _check_standbys(self: "Engine", suspect: PathProbe, now: float, out: list) -> None:
        """The active path is suspect: make sure the target of a move is known good."""
        for pp in self._sorted_paths():
            if pp.gateway != suspect.gateway or pp is suspect or not pp.can_probe():
                continue
            if pp.health.state is Health.SUSPECT or pp.key in self.active:
                continue
            metered = self.policy.metered(pp.uplink)
            last = pp.health.last_answer
            if last is not None and now < last + (FRESH_METERED if metered else FRESH):
                continue
            kind = self._kind(pp)
            budget = self.budgets.get(pp.uplink)
            if budget is not None and not budget.allows(probe_cost(kind, pp.gateway), now):
                continue
            self._send(pp, kind, now, False, R_CHECK, out)
            pp.next_at = now + self._period(pp)

    def _period(self: "Engine", pp: PathProbe) -> float:
        t, h = pp.health.timing, pp.health
        if pp.key in self.active or h.state is Health.UNKNOWN or (h.state is Health.DOWN and h.answers) \
                or self._rechecking(pp):
            return t.interval
        return t.standby_interval

    def _replan(self: "Engine", now: float) -> None:
        """New timings (a policy reload): no planned probe waits longer than its new period."""
        for pp in self._sorted_paths():
            if pp.next_at is not None:
                pp.next_at = min(pp.next_at, now + self._period(pp))

    def _kind(self: "Engine", pp: PathProbe) -> ProbeKind:
        kinds = self.policy.probes.kinds
        if pp.key in self.active and "data" in kinds and self._vip(pp.gateway):
            return ProbeKind.DATA
        if "echo" in kinds or "ike" not in kinds:
            return ProbeKind.ECHO
        return ProbeKind.IKE

    def _vip(self: "Engine", gateway: str) -> str | None:
        """The virtual IP a DATA probe leaves from (None: no DATA probe possible)."""
        target = self.policy.probes.data_target
        if not target:
            return None
        for sa in self.sas.on_gateway(gateway):
            for vip in sa.vips:
                if family(vip) == family(target):
                    return vip
        return None

    def _send(self: "Engine", pp: PathProbe, kind: ProbeKind, now: float, burst: bool, reason: str, out: list) -> None:
        seq, timeout = pp.sent(kind, now, burst)
        budget = self.budgets.get(pp.uplink)
        if budget is not None:
            budget.spend(probe_cost(kind, pp.gateway), now)
        if kind is ProbeKind.DATA:
            out.append(A.SendProbe(pp.path, kind, seq, round(timeout, 6), reason,  # type: ignore[arg-type]
                                   src=self._vip(pp.gateway), dst=self.policy.probes.data_target))
        else:
            out.append(A.SendProbe(pp.path, kind, seq, round(timeout, 6), reason))  # type: ignore[arg-type]

    def _send_due(self: "Engine", now: float, out: list) -> None:
        for pp in self._sorted_paths():
            if not pp.can_probe():
                continue
            timing = pp.health.timing
            if pp.burst_left and pp.burst_at is not None and pp.burst_at <= now:
                self._send(pp, self._kind(pp), now, True, R_BURST, out)
                pp.burst_left -= 1
                pp.burst_at = now + timing.confirm_interval if pp.burst_left else None
            if pp.next_at is None or pp.next_at > now:
                continue
            active = pp.key in self.active
            if active and self.inbound_at is not None and now < self.inbound_at + timing.interval:
                pp.next_at = self.inbound_at + timing.interval  # the tunnel's traffic answered for us
                continue
            kind = self._kind(pp)
            period = self._period(pp)
            budget = self.budgets.get(pp.uplink)
            rising = period == timing.interval
            if budget is not None and not active and not rising:
                cost = probe_cost(kind, pp.gateway)
                if not budget.allows(cost, now):
                    pp.next_at = budget.ready_at(cost, now)
                    continue
            reason = R_ACTIVE if active else R_RECHECK if self._rechecking(pp) else R_RISE if rising else R_STANDBY
            self._send(pp, kind, now, False, reason, out)
            pp.next_at = now + period
