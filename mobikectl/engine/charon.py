"""The engine's facts from charon, from failed orders and from the user: a mixin of
`Engine`. SAs are compared by SPIs; a move is confirmed when charon shows the IKE_SA's
local address on the chosen path (ike-update or a snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.decide import Override
from mobikectl.engine.ids import Health
from mobikectl.engine.moves import ABORTED, FALLBACK, FAILED

if TYPE_CHECKING:
    from mobikectl.engine.engine import Engine


class CharonFacts:
    # --- charon ---------------------------------------------------------------------------
    def _on_sa_snapshot(self: "Engine", fact: F.SaSnapshot, now: float, out: list) -> None:
        self.sas.snapshot(fact)
        self.awaiting_snapshot = False
        self.topology_dirty = True
        self._keep_from_snapshot(fact, now, out)
        self._confirm_moves(now, out)

    def _on_ike_up(self: "Engine", fact: F.IkeUp, now: float, out: list) -> None:
        if self.sas.up(fact.sa):
            out.append(A.Note("charon", f"IKE_SA {fact.sa.name} up: {fact.sa.local_host} -> {fact.sa.remote_host}",
                              {"ike": fact.sa.name, "spis": list(fact.sa.spis)}))
            self.topology_dirty = True
            self._confirm_moves(now, out)
            self._sa_up(fact.sa.name, fact.sa.spis, now, out)

    def _on_ike_down(self: "Engine", fact: F.IkeDown, now: float, out: list) -> None:
        if self.sas.down((fact.spi_i, fact.spi_r)) is not None:
            out.append(A.Note("charon", f"IKE_SA {fact.name} down", {"ike": fact.name}))
            self.topology_dirty = True
            self._confirm_moves(now, out)

    def _on_ike_updated(self: "Engine", fact: F.IkeUpdated, now: float, out: list) -> None:
        sa = self.sas.updated(fact)
        if sa is None:
            if self.sas.managed(fact.name):
                out.append(A.Resync(f"ike-update for an IKE_SA of {fact.name} the engine does not know"))
            return
        self.topology_dirty = True
        move = self._move_of(sa.spis)
        if move is not None and self._on_target(sa, move.target):
            move.ike_update_at = now
            move.history.append(f"{now:.3f} ike-update" + (f" (gateway {sa.remote_host})"
                                                          if sa.remote_host != move.target.gateway else ""))
        else:
            out.append(A.Note("charon", f"charon moved {fact.name} by itself: {fact.old_local} -> {fact.new_local}",
                              {"ike": fact.name, "from": fact.old_local, "to": fact.new_local}))
            for g in {fact.old_remote, fact.new_remote}:
                if g in self.gateways:
                    self.gateways[g].last_move_at = now  # a move all the same: it counts for min_dwell
        self._confirm_moves(now, out)

    def _on_ike_rekeyed(self: "Engine", fact: F.IkeRekeyed, now: float, out: list) -> None:
        if self.sas.rekeyed(fact):
            old, new = (fact.old_spis[0], fact.old_spis[1]), fact.new.spis
            for gw in self.gateways.values():  # the successor is the same SA to the engine
                if old in gw.sas:
                    gw.sas = (gw.sas - {old}) | {new}
                if gw.move is not None and old in gw.move.spis:
                    gw.move.spis = tuple(new if spis == old else spis for spis in gw.move.spis)
            self.topology_dirty = True
            self._confirm_moves(now, out)

    def _on_child_rekeyed(self: "Engine", fact: F.ChildRekeyed, now: float, out: list) -> None:
        sa = self.sas.sas.get((fact.spi_i, fact.spi_r))
        if sa is None:
            return
        for m in reversed(self.moves):
            if (sa.spis in m.spis or m.gateway == sa.remote_host) \
                    and now - m.decided_at <= 2 * self.policy.moves.confirm_timeout:
                if m.child_rekey_at is None:
                    m.child_rekey_at = now
                    m.history.append(f"{now:.3f} child rekey")
                break

    def _on_charon_connected(self: "Engine", fact: F.CharonConnected, now: float, out: list) -> None:
        if not self.charon_up:
            self.awaiting_snapshot = True
        self.charon_up = True
        self.fresh_connection = True
        out.append(A.Note("charon", f"charon {fact.version} connected", {"version": fact.version}))
        out.append(A.Resync("charon connected: reconcile with its SAs"))

    def _on_charon_lost(self: "Engine", fact: F.CharonLost, now: float, out: list) -> None:
        self.charon_up = False
        self._charon_gone()
        out.append(A.Note("charon", f"charon lost ({fact.why}): no moves until it is back", {"why": fact.why}))
        for g in sorted(self.gateways):
            if self.gateways[g].move is not None:
                self._end_move(self.gateways[g], ABORTED, "charon lost", now, out)

    # --- failed orders --------------------------------------------------------------------
    def _on_action_failed(self: "Engine", fact: F.ActionFailed, now: float, out: list) -> None:
        order = fact.order
        if isinstance(order, A.SendProbe):
            self._on_probe_lost(F.ProbeLost(order.path, order.kind, order.seq, fact.error), now, out)
            return
        out.append(A.Note("decision", f"{type(order).__name__} failed: {fact.error}",
                          {"order": type(order).__name__, "error": fact.error}))
        if isinstance(order, A.SteerTo):
            gw = self.gateways.get(order.path.gateway)
            if gw is None:
                return
            if gw.move is not None and gw.move.target == order.path and gw.move.outcome != FALLBACK:
                self._move_failed(gw, f"route not installed: {fact.error}", now, out)
            elif gw.route == order.path:
                gw.route, gw.route_seen = None, False
                gw.route_retry_at = now + self.policy.moves.confirm_timeout
        elif isinstance(order, A.Initiate):
            self._initiate_failed(order.ike, fact.error, now, out)
            for gw in self.gateways.values():
                if gw.move is not None and gw.move.outcome == FALLBACK and order.ike in gw.move.fallback_names:
                    self._end_move(gw, FAILED, f"initiate failed: {fact.error}", now, out)
        elif isinstance(order, A.Terminate):
            out.append(A.Resync("a Terminate failed: reconcile with charon's SAs"))
        elif isinstance(order, A.RemoveSteering) and order.gateway in self.unsteered:
            self.unsteered.discard(order.gateway)  # the route stays: it is steered like any of ours
            self.topology_dirty = True

    # --- the user -------------------------------------------------------------------------
    def _on_switch(self: "Engine", fact: F.SwitchRequested, now: float, out: list) -> None:
        if fact.uplink is None:
            if self.override is not None:
                out.append(A.Note("switch", f"manual switch to {self.override.uplink} ended: back to automatic",
                                  {"uplink": self.override.uplink, "ended": True}))
                self.override = None
                self.decide_dirty = True
            return
        name = fact.uplink
        states = [pp.health.state for pp in self._sorted_paths() if pp.uplink == name and pp.path is not None]
        why, forcible = "", False  # forcible: a forced switch would be taken (the caller says how)
        if not states:
            why = f"{name} is not a managed uplink with a path to the gateway"
        elif Health.UP not in states and not fact.force:
            why, forcible = f"{name} is {states[0].value}, not up", True
        elif fact.until is not None and fact.until <= now:
            why = "the switch would already have expired"
        if why:
            out.append(A.Note("switch", f"switch to {name} refused: {why}", {"uplink": name, "refused": True,
                                                                              "why": why, "forcible": forcible}))
            return
        self.override = Override(name, fact.until, fact.force, now)
        until = "" if fact.until is None else f" for {fact.until - now:g} s"
        out.append(A.Note("switch", f"manual switch to {name}{until}{' (forced)' if fact.force else ''}",
                          {"uplink": name, "until": fact.until, "force": fact.force, "refused": False}))
        self.decide_dirty = True
        for gw in self.gateways.values():  # the user's word overrides the dwell and a failed move's pause
            gw.blocked_until = None

    def _on_policy(self: "Engine", fact: F.PolicyLoaded, now: float, out: list) -> None:
        policy = fact.policy
        self.policy = policy
        self.uplinks.policy = policy
        self.sas.policy = policy
        for pp in self.paths.values():
            cls = policy.class_of(pp.uplink)
            if cls is not None:
                pp.health.retune(cls.probe, cls.limits)
        self._replan(now)
        self.topology_dirty = True
        out.append(A.Note("policy", f"policy {policy.source} in force", {"source": policy.source}))
