"""Keeping the managed connections up: the engine's Initiates. A mixin of `Engine`.

Theory of operation
-------------------
A connection is *kept* once the engine has seen an IKE_SA of it (or the policy names it in
`connections` and charon has it loaded). When a kept connection has no IKE_SA at all in
charon's table (the gateway deleted it, DPD gave up, a fallback's new SA never came) and
charon is connected, the engine orders `Initiate` at once, in the same step as the
decisions and after them: the steering route already points at the best healthy path, so
the new SA uses it. A failed Initiate (`ActionFailed`) is tried again after 1, 2, 4, ... s,
at most `BACKOFF_MAX` apart, until an IKE_SA of the connection is up (`IkeUp`, or a
snapshot that lists one). A connection missing from the first snapshot after charon
(re)connected is initiated only after `RECONNECT_GRACE`: a charon that has just started may
be bringing its SAs up itself (start_action, its service manager).

`_initiate` is the only way to order an Initiate (a move's fallback uses it too). Never two
in flight for one connection: one is in flight from the order until an IKE_SA of the
connection comes up, its `ActionFailed`, `CharonLost`, or `INITIATE_TIMEOUT`. None while
an IKE_SA of the connection is being set up or rekeyed: charon would make another beside
it (K9: never a second initiate while a rekey is outstanding).

Make before break (a move's fallback, `_fallback`): the new IKE_SA is initiated and the old
one is kept; it is terminated only when an IKE_SA of the connection with other SPIs comes up
(IkeUp, or a snapshot that lists it established), whenever that is (the Initiate may outlive
the move's deadline) and wherever it landed (the gateway's `unique = replace` has dropped the
old one by then; the decisions move the new one where it belongs). A fallback whose Initiate
fails leaves the old SA alone: the tunnel is as it was, not gone, and the move is tried again
after `min_dwell` (or, once the old SA is gone too, the connection is initiated as above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mobikectl.engine import actions as A

if TYPE_CHECKING:
    from mobikectl.engine.engine import Engine

BACKOFF_FIRST = 1.0  # s after the first failed Initiate; doubled after each further failure
BACKOFF_MAX = 30.0
RECONNECT_GRACE = 2.0  # s after charon (re)connects before the engine initiates itself
INITIATE_TIMEOUT = 60.0  # an Initiate with neither an SA up nor an ActionFailed by then has failed
SETTING_UP = frozenset({"CREATED", "CONNECTING", "REKEYING", "REKEYED"})


def backoff(failures: int) -> float:
    """The pause after `failures` failed Initiates in a row (1, 2, 4, ... s, capped)."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1))


@dataclass
class Kept:
    """A connection the engine keeps up."""

    name: str
    failures: int = 0  # failed Initiates in a row
    due_at: float | None = None  # the next Initiate, when there is no IKE_SA
    initiated_at: float | None = None  # an Initiate in flight since
    replaces: tuple[tuple[str, str], ...] = ()  # SPIs of the SAs a new one replaces (make before break)


class Recovery:
    # --- the one way to initiate -----------------------------------------------------------
    def _initiate(self: "Engine", name: str, reason: str, now: float, out: list) -> bool:
        k = self.kept.setdefault(name, Kept(name))
        if k.initiated_at is not None:
            return False
        if self._setting_up(name):
            out.append(A.Note("charon", f"not initiating {name}: an IKE_SA of it is being set up or rekeyed",
                              {"ike": name}))
            return False
        out.append(A.Initiate(name, reason))  # type: ignore[arg-type]
        k.initiated_at, k.due_at = now, None
        return True

    def _setting_up(self: "Engine", name: str) -> bool:
        return any(sa.name == name and (sa.state.upper() in SETTING_UP
                                        or any("REKEY" in t or "REAUTH" in t for t in sa.busy))
                   for sa in self.sas.sas.values())

    def _has_sa(self: "Engine", name: str) -> bool:
        return any(sa.name == name for sa in self.sas.sas.values())

    # --- facts -------------------------------------------------------------------------------
    def _keep(self: "Engine", name: str) -> None:
        if self.sas.managed(name):
            self.kept.setdefault(name, Kept(name))

    def _keep_from_snapshot(self: "Engine", fact, now: float, out: list) -> None:
        for sa in self.sas.settled():
            if sa.state.upper() == "ESTABLISHED":
                self._sa_up(sa.name, sa.spis, now, out)
        for name in self.policy.connections:
            if name in fact.conns:
                self._keep(name)
        if self.fresh_connection:
            self.fresh_connection = False
            for k in self.kept.values():
                if not self._has_sa(k.name) and k.initiated_at is None:
                    k.due_at = now + RECONNECT_GRACE

    def _sa_up(self: "Engine", name: str, spis: tuple[str, str], now: float, out: list) -> None:
        """An IKE_SA of `name` is up: an Initiate in flight is done, the backoff starts over,
        and the SAs it replaces are terminated."""
        self._keep(name)
        k = self.kept.get(name)
        if k is None:
            return
        k.due_at, k.failures = None, 0
        if spis in k.replaces:
            return  # the old one itself (a snapshot)
        k.initiated_at = None
        old, k.replaces = k.replaces, ()
        self._retire(old, f"replaced by the new IKE_SA {name} {spis[0]}_i {spis[1]}_r", out)

    def _initiate_failed(self: "Engine", name: str, why: str, now: float, out: list) -> None:
        k = self.kept.get(name)
        if k is None or k.initiated_at is None:
            return
        k.initiated_at, k.replaces = None, ()  # nothing replaces the old SAs: they stay
        k.failures += 1
        if self._has_sa(name):
            return
        k.due_at = now + backoff(k.failures)
        out.append(A.Note("charon", f"initiate {name} failed ({why}): trying again in {backoff(k.failures):g} s",
                          {"ike": name, "failures": k.failures, "retry_in": backoff(k.failures)}))

    def _charon_gone(self: "Engine") -> None:
        for k in self.kept.values():
            k.initiated_at, k.due_at = None, None

    # --- each step and the timers ------------------------------------------------------------
    def _keep_up(self: "Engine", now: float, out: list) -> None:
        """Initiate every kept connection that has no IKE_SA (after the decisions)."""
        if not self.charon_up or self.awaiting_snapshot:
            return
        for name in sorted(self.kept):
            k = self.kept[name]
            if not self.sas.managed(name):
                del self.kept[name]
                continue
            if self._has_sa(name):
                k.due_at = None
                continue
            if k.initiated_at is not None:
                continue
            if k.due_at is None:
                k.due_at = now  # at once
            if k.due_at <= now:
                again = f" (attempt {k.failures + 1})" if k.failures else ""
                self._initiate(name, f"{name} has no IKE_SA: initiating it again{again}", now, out)

    def _keep_deadlines(self: "Engine") -> list[float]:
        out = []
        for k in self.kept.values():
            if k.initiated_at is not None:
                out.append(k.initiated_at + INITIATE_TIMEOUT)
            elif k.due_at is not None and self.charon_up and not self.awaiting_snapshot:
                out.append(k.due_at)
        return out

    def _keep_timers(self: "Engine", now: float, out: list) -> None:
        for name in sorted(self.kept):
            k = self.kept[name]
            if k.initiated_at is not None and k.initiated_at + INITIATE_TIMEOUT <= now:
                self._initiate_failed(name, f"no IKE_SA up within {INITIATE_TIMEOUT:g} s", now, out)
                out.append(A.Resync(f"initiate {name} timed out: reconcile with charon's SAs"))

    # --- make before break ---------------------------------------------------------------------
    def _fallback(self: "Engine", name: str, old: tuple, reason: str, now: float, out: list) -> None:
        """A new IKE_SA of `name` over the steered path, to replace the SAs `old` once it is up."""
        k = self.kept.setdefault(name, Kept(name))
        if self._initiate(name, reason, now, out) or k.initiated_at is not None:
            k.replaces = tuple(sorted(set(k.replaces) | set(old)))

    def _retire(self: "Engine", old: tuple, why: str, out: list) -> None:
        """Terminate the IKE_SAs a new one replaces (those still there)."""
        for spis in old:
            sa = self.sas.sas.get(spis)
            if sa is not None:
                out.append(A.Terminate(sa.name, sa.spi_i, sa.spi_r, why))
