"""Steering state per gateway address, and the record of each move.

A move is a SteerTo followed by confirmation: charon reports the IKE_SA being moved (known
by its SPIs, or its rekeyed successor) on the chosen uplink (`ike-update`, or a `list-sas`
snapshot) within `moves.confirm_timeout`, whichever of the gateway's addresses it then
uses. With kernel-libipsec a CHILD_SA rekey follows the move; with kernel ESP the SAs are
updated in place; neither is needed for the confirmation, a rekey seen is recorded.
Unconfirmed (or the route could not be installed): the SteerTo is retried `moves.retries`
times, then the fallback is a new IKE_SA over the chosen path (Initiate; the steering route
stays so the new SA uses it); the old one is terminated once the new one is up (make before
break, recovery.py).

`Gateway.sas` remembers which SAs used an address: when all of them are at another address
of the gateway, the state follows them there (steering._follow_sas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobikectl.engine.ids import Path

Spis = tuple[str, str]

PENDING, CONFIRMED, FALLBACK, FAILED, ABORTED = "pending", "confirmed", "fallback", "failed", "aborted"


@dataclass
class Move:
    gateway: str
    source: Path | None
    target: Path
    reason: str
    decided_at: float
    deadline: float
    manual: bool = False
    attempts: int = 1
    outcome: str = PENDING
    route_set_at: float | None = None
    ike_update_at: float | None = None
    child_rekey_at: float | None = None
    confirmed_at: float | None = None
    spis: tuple[Spis, ...] = ()  # the IKE_SAs being moved (IkeRekeyed replaces an entry)
    names: tuple[str, ...] = ()  # their connections: a new SA of one stands in once all are gone
    fallback_names: tuple[str, ...] = ()
    fallback_old: tuple[Spis, ...] = ()  # the SPIs of the SAs the fallback replaces
    history: list[str] = field(default_factory=list)

    def view(self) -> dict:
        return {
            "gateway": self.gateway,
            "from": self.source.to_json() if self.source else None,
            "to": self.target.to_json(),
            "reason": self.reason,
            "manual": self.manual,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "decided_at": self.decided_at,
            "route_set_at": self.route_set_at,
            "ike_update_at": self.ike_update_at,
            "child_rekey_at": self.child_rekey_at,
            "confirmed_at": self.confirmed_at,
            "took": None if self.confirmed_at is None else round(self.confirmed_at - self.decided_at, 4),
            "history": list(self.history),
        }


@dataclass
class Gateway:
    """What the engine steers for one gateway address."""

    address: str
    route: Path | None = None  # the path our steering route points at (ordered or found)
    route_nexthop: str | None = None
    route_seen: bool = False  # netlink showed it
    route_retry_at: float | None = None  # after a failed pin, not before
    move: Move | None = None  # the move in progress
    last_move_at: float | None = None
    blocked_until: float | None = None  # after a failed move
    chosen: Path | None = None
    why: str = ""
    recheck_at: float | None = None
    sas: set[Spis] = field(default_factory=set)  # the SAs seen on this address, while they exist

    def deadlines(self) -> list[float]:
        out = [t for t in (self.recheck_at, self.blocked_until, self.route_retry_at) if t is not None]
        if self.move is not None:
            out.append(self.move.deadline)
        return out

    def view(self) -> dict:
        return {
            "chosen": self.chosen.to_json() if self.chosen else None,
            "why": self.why,
            "route": self.route.to_json() if self.route else None,
            "route_nexthop": self.route_nexthop,
            "route_seen": self.route_seen,
            "move_in_progress": self.move.view() if self.move else None,
            "last_move_at": self.last_move_at,
        }
