"""The engine's steering half: decide per gateway, steer (SteerTo), confirm the move, retry,
fall back to a new SA; follow an SA that charon took to another address of its gateway.
A mixin of `Engine` (engine.py holds the paths, scheduling.py the probes; this module
reads them). See moves.py for the life of a move and decide.py for the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.decide import choose
from mobikectl.engine.ids import Health, Path
from mobikectl.engine.moves import ABORTED, CONFIRMED, FAILED, FALLBACK, Gateway, Move
from mobikectl.engine.uplinks import family

if TYPE_CHECKING:
    from mobikectl.engine.engine import Engine


class Steering:
    # --- deciding -------------------------------------------------------------------------
    def _decide_all(self: "Engine", now: float, out: list) -> None:
        self._refresh_active(now)
        if not self.charon_up or self.awaiting_snapshot:
            return
        self._check_override(now, out)
        for g in sorted(self.gateways):
            gw = self.gateways[g]
            if gw.move is not None:
                target = self.paths.get((gw.move.target.uplink, g))
                if target is None or target.path != gw.move.target:
                    self._end_move(gw, ABORTED, "the target path went away", now, out)
                elif target.health.state is Health.DOWN and not self._forced(gw.move):
                    self._end_move(gw, ABORTED, "the target path went down", now, out)
                else:
                    continue
            if gw.blocked_until is not None and now < gw.blocked_until:
                continue
            current = self._current(g)
            choice = choose(current, self._candidates(g), now=now, started_at=self.started_at,
                            last_move_at=gw.last_move_at, failback=self.policy.failback,
                            override=self.override)
            gw.recheck_at = choice.recheck_at
            if choice.target is not None:
                self._start_move(gw, current, choice.target, choice.reason, choice.manual, now, out)
                continue
            if choice.reason != gw.why:
                out.append(A.Note("decision", choice.reason, {"gateway": g, "stay": True}))
            gw.why, gw.chosen = choice.reason, current
            self._pin(gw, current, now, out)

    def _forced(self: "Engine", move: Move) -> bool:
        """The move is the user's forced switch (still in force): it goes on to a DOWN target."""
        ov = self.override
        return move.manual and ov is not None and ov.force and ov.uplink == move.target.uplink

    def _check_override(self: "Engine", now: float, out: list) -> None:
        ov = self.override
        if ov is None or ov.force:
            return
        states = [pp.health.state for pp in self.paths.values() if pp.uplink == ov.uplink]
        if not states or all(s is Health.DOWN for s in states):
            out.append(A.Note("switch", f"manual switch to {ov.uplink} ended: {ov.uplink} is down",
                              {"uplink": ov.uplink, "ended": True}))
            self.override = None

    def _nexthop(self: "Engine", path: Path) -> str | None:
        up = self.uplinks.links.get(path.uplink)
        return None if up is None else up.nexthop(family(path.gateway))

    def _pin(self: "Engine", gw: Gateway, current: Path | None, now: float, out: list) -> None:
        """Keep our route on the path the SA sits on, so charon's own roaming follows it."""
        if current is None or gw.route_retry_at is not None:
            return
        pp = self.paths.get((current.uplink, gw.address))
        if pp is None or pp.path != current or pp.health.state is Health.DOWN:
            return
        nexthop = self._nexthop(current)
        if gw.route == current and gw.route_nexthop == nexthop:
            return
        reason = f"keep the steering route on {current.uplink}, where the SA is"
        gw.route, gw.route_nexthop, gw.route_seen = current, nexthop, False
        out.append(A.SteerTo(current, nexthop, reason))

    # --- moving ---------------------------------------------------------------------------
    def _start_move(self: "Engine", gw: Gateway, current: Path | None, target: Path, reason: str,
                    manual: bool, now: float, out: list) -> None:
        nexthop = self._nexthop(target)
        sas = self.sas.on_gateway(gw.address)
        there = gw.route == target and gw.route_nexthop == nexthop and gw.route_seen  # netlink won't tell again
        out.append(A.Note("decision", reason, {"gateway": gw.address, "to": target.to_json(),
                                               "from": current.to_json() if current else None}))
        out.append(A.SteerTo(target, nexthop, reason))
        gw.route, gw.route_nexthop, gw.route_seen = target, nexthop, there
        gw.chosen, gw.why = target, reason
        if not sas or all(sa.local_host == target.local for sa in sas):
            return  # nothing to move: the route alone is the decision
        move = Move(gw.address, current, target, reason, now, now + self.policy.moves.confirm_timeout,
                    manual=manual, spis=tuple(sa.spis for sa in sas),
                    names=tuple(sorted({sa.name for sa in sas})))
        move.history.append(f"{now:.3f} steer")
        if there:
            move.route_set_at = now
        gw.move, gw.last_move_at = move, now
        self.moves.append(move)

    def _on_target(self: "Engine", sa: F.SaInfo, target: Path) -> bool:
        """The SA sits on the target's uplink: with the target's address, or, when charon took
        it to another address of the gateway, with the uplink's address for that one."""
        if sa.remote_host == target.gateway:
            return sa.local_host == target.local
        up = self.uplinks.links.get(target.uplink)
        return (up is not None and self.uplinks.is_managed(target.uplink)
                and sa.local_host == up.source(family(sa.remote_host)))

    def _move_of(self: "Engine", spis: tuple[str, str]) -> Move | None:
        return next((gw.move for gw in self.gateways.values() if gw.move is not None and spis in gw.move.spis),
                    None)

    def _confirm_moves(self: "Engine", now: float, out: list, ike_update: bool = False) -> None:
        """A move is confirmed when the SAs it moves (by SPIs) sit on the target uplink, at
        whichever gateway address; once all are gone, a new SA of their connection there."""
        settled = self.sas.settled()
        for gw in list(self.gateways.values()):
            m = gw.move
            if m is None:
                continue
            if m.outcome == FALLBACK:
                new = [sa for sa in settled if sa.name in m.fallback_names and sa.spis not in m.fallback_old
                       and self._on_target(sa, m.target)]
                gw.sas.update(sa.spis for sa in new)  # the replacement: followed like the SA it replaces
                done = bool(new)
            elif live := [sa for sa in settled if sa.spis in m.spis]:
                done = all(self._on_target(sa, m.target) for sa in live)
            elif not any(spis in self.sas.sas for spis in m.spis):
                done = any(sa.name in m.names and self._on_target(sa, m.target) for sa in settled)
            else:
                done = False  # still there, but not settled (e.g. being deleted)
            if done:
                if ike_update and m.ike_update_at is None:
                    m.ike_update_at = now
                self._end_move(gw, CONFIRMED, "charon reports the SA on the chosen path", now, out)

    def _end_move(self: "Engine", gw: Gateway, outcome: str, why: str, now: float, out: list) -> None:
        m = gw.move
        assert m is not None
        gw.move = None
        m.outcome = outcome
        m.history.append(f"{now:.3f} {outcome}: {why}")
        self.decide_dirty = True
        if outcome == CONFIRMED:
            m.confirmed_at = now
            took = (now - m.decided_at) * 1000
            out.append(A.Note("move", f"moved to {m.target.id} in {took:.0f} ms ({why})",
                              {"gateway": gw.address, "to": m.target.to_json(), "took_ms": round(took, 1)}))
            return
        out.append(A.Note("move", f"move to {m.target.id} {outcome}: {why}",
                          {"gateway": gw.address, "to": m.target.to_json(), "outcome": outcome}))
        if outcome == FAILED:
            self.sas.retiring -= set(m.fallback_old)  # not replaced after all
            gw.blocked_until = now + self.policy.failback.min_dwell
            out.append(A.Resync(f"the move to {m.target.uplink} failed"))

    def _move_failed(self: "Engine", gw: Gateway, why: str, now: float, out: list) -> None:
        m = gw.move
        assert m is not None
        moves = self.policy.moves
        if m.outcome == FALLBACK:
            self._end_move(gw, FAILED, f"no new SA over {m.target.uplink} ({why})", now, out)
            return
        if m.attempts <= moves.retries:
            m.attempts += 1
            m.deadline = now + moves.confirm_timeout
            m.history.append(f"{now:.3f} retry: {why}")
            reason = f"retry {m.attempts - 1}/{moves.retries}: the move to {m.target.uplink} was not confirmed ({why})"
            out.append(A.Note("move", reason, {"gateway": gw.address, "attempt": m.attempts}))
            out.append(A.SteerTo(m.target, self._nexthop(m.target), reason))
            out.append(A.Resync("confirm the move"))
            return
        sas = [sa for sa in self.sas.settled() if sa.spis in m.spis and not self._on_target(sa, m.target)]
        m.outcome = FALLBACK
        m.fallback_names = tuple(sorted({sa.name for sa in sas}))
        m.fallback_old = tuple(sa.spis for sa in sas)
        self.sas.retiring.update(m.fallback_old)
        m.deadline = now + 2 * moves.confirm_timeout
        m.history.append(f"{now:.3f} fallback: {why}")
        reason = (f"the move to {m.target.uplink} was not confirmed after {m.attempts} attempts ({why}): "
                  f"a new IKE_SA over {m.target.uplink}")
        out.append(A.Note("move", reason, {"gateway": gw.address, "fallback": True}))
        for name in m.fallback_names:  # make before break: the old SAs go once a new one is up
            self._fallback(name, tuple(sa.spis for sa in sas if sa.name == name), reason, now, out)

    def _gateway_timers(self: "Engine", now: float, out: list) -> None:
        for g in sorted(self.gateways):
            gw = self.gateways[g]
            if gw.move is not None and gw.move.deadline <= now:
                self._move_failed(gw, f"no confirmation within {gw.move.deadline - gw.move.decided_at:g} s"
                                  if gw.move.attempts == 1 and gw.move.outcome != FALLBACK else "timeout", now, out)
            for attr in ("recheck_at", "blocked_until", "route_retry_at"):
                t = getattr(gw, attr)
                if t is not None and t <= now:
                    setattr(gw, attr, None)
                    self.decide_dirty = True

    # --- the SA's gateway address ---------------------------------------------------------
    def _follow_sas(self: "Engine", now: float, out: list) -> None:
        """charon took every SA of a gateway address to another address of the gateway (MOBIKE
        may pick any it knows): the engine's state for the gateway follows the SAs (they are
        steered there from now on) and our route to the address they left is removed.
        Run on every change of the SAs, before the paths (and `Gateway.sas`) are derived."""
        table = self.sas.sas
        settled = {sa.spis: sa.remote_host for sa in self.sas.settled()}
        for g in sorted(self.gateways):
            gw = self.gateways.get(g)
            if gw is None:
                continue
            gw.sas = {spis for spis in gw.sas if spis in table}
            if any(sa.remote_host == g for sa in table.values()):
                continue
            there = sorted({settled[spis] for spis in gw.sas if spis in settled} - {g})
            if not there:
                continue
            new_g = there[0]
            why = f"charon took the IKE_SA from gateway address {g} to {new_g}"
            if gw.move is not None:  # _confirm_moves ran first: not on the target uplink
                self._end_move(gw, ABORTED, why, now, out)
            out.append(A.Note("charon", f"{why}: steering follows it", {"from": g, "to": new_g}))
            dst = self.gateways.setdefault(new_g, Gateway(new_g))
            dst.last_move_at = _latest(dst.last_move_at, gw.last_move_at)
            dst.blocked_until = _latest(dst.blocked_until, gw.blocked_until)
            dst.sas.update(gw.sas)
            del self.gateways[g]
            self.topology_dirty = self.decide_dirty = True
            if gw.route is not None or g in self.uplinks.steering:
                self.unsteered.add(g)
                out.append(A.RemoveSteering(g, f"{why}: our route to {g} is not needed"))

    # --- our steering route as netlink shows it --------------------------------------------
    def _our_route_changed(self: "Engine", g: str, route: F.RouteChanged, now: float, out: list) -> None:
        gw = self.gateways.setdefault(g, Gateway(g))
        if route.present and route.ifname:
            path = Path(route.ifname, route.src or "", g)  # type: ignore[arg-type]
            gw.route, gw.route_nexthop, gw.route_seen = path, route.nexthop, True
            m = gw.move or next((m for m in reversed(self.moves) if m.gateway == g), None)
            if m is not None and m.target == path and m.route_set_at is None \
                    and now <= m.decided_at + 2 * self.policy.moves.confirm_timeout:
                m.route_set_at = now  # the route on the target (also when shown after the confirmation)
        elif gw.route is not None and (route.ifname is None or route.ifname == gw.route.uplink):
            gw.route, gw.route_nexthop, gw.route_seen = None, None, False
        self.decide_dirty = True


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
