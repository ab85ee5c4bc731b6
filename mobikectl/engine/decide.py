"""Which path an IKE_SA should sit on: one pure function over the paths to one gateway.

The rules, in order:
1. A manual switch (not expired) wins while its uplink is UP (or the switch was forced).
2. The SA's path is gone (its address left the uplink, or was renumbered or deprecated):
   move now, to the same uplink's new address if that is not DOWN, else the best UP path.
3. The SA's path is DOWN: move now to the best UP path; with none, stay (no thrashing).
4. Otherwise move only to a better UP path (preference order, metered last) that has been
   UP for `failback.hold_down`, counted from the last time it became UP (`up_since`; a
   suspicion of a standby path that clears restarts it, health.py) and from the engine's
   start at the earliest, and only if the last move (ours or charon's own) was at least
   `failback.min_dwell` ago. A healthy path that no UP path beats is never left.
"Better" is the key (metered, policy rank, IPv6 after IPv4, uplink name): a metered uplink
is the last resort whatever its rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobikectl.engine.ids import Health, Path
from mobikectl.policy.model import Failback


@dataclass(frozen=True)
class Candidate:
    path: Path
    health: Health
    up_since: float | None
    rank: int
    metered: bool

    @property
    def key(self) -> tuple:
        return (self.metered, self.rank, ":" in self.path.local, self.path.uplink, self.path.local)


@dataclass(frozen=True)
class Override:
    uplink: str
    until: float | None
    force: bool
    since: float


@dataclass(frozen=True)
class Choice:
    target: Path | None  # None: stay where the SA is
    reason: str
    urgent: bool = False  # the current path is DOWN or gone: min_dwell does not apply
    recheck_at: float | None = None  # when a waiting failback may become allowed
    manual: bool = False
    rule: str = ""  # which rule decided: manual, no-path, gone, down, stay, hold-down, min-dwell, failback


def better(cur: Candidate, candidates: list[Candidate]) -> list[Candidate]:
    """The UP candidates that beat `cur`, best first (rule 4 considers only these)."""
    return sorted((c for c in candidates if c.health is Health.UP and c.key < cur.key), key=lambda c: c.key)


def proven_at(c: Candidate, *, now: float, started_at: float, failback: Failback) -> float:
    """When `c` has been UP for the hold-down (counted from the engine's start at the earliest)."""
    return max(c.up_since if c.up_since is not None else now, started_at) + failback.hold_down


def choose(current: Path | None, candidates: list[Candidate], *, now: float, started_at: float,
           last_move_at: float | None, failback: Failback, override: Override | None = None) -> Choice:
    by_path = {c.path: c for c in candidates}
    ups = sorted((c for c in candidates if c.health is Health.UP), key=lambda c: c.key)
    cur = by_path.get(current) if current is not None else None

    if override is not None:
        mine = sorted((c for c in candidates if c.path.uplink == override.uplink), key=lambda c: c.key)
        if mine and (mine[0].health is Health.UP or override.force):
            if cur is not None and cur.path.uplink == override.uplink:
                return Choice(None, f"manual switch: staying on {override.uplink}", manual=True,
                              rule="manual")
            return Choice(mine[0].path, f"manual switch to {override.uplink}", urgent=True, manual=True,
                          rule="manual")

    if current is None:
        if ups:
            return Choice(ups[0].path, f"the SA is on no managed path; {_name(ups[0])} is the best healthy path",
                          urgent=True, rule="no-path")
        return Choice(None, "the SA is on no managed path and no path is healthy: staying", rule="no-path")

    if cur is None:
        same = [c for c in candidates if c.path.uplink == current.uplink and c.health is not Health.DOWN]
        if same:
            return Choice(same[0].path, f"{current.uplink}'s address changed: {current.local} -> "
                          f"{same[0].path.local}", urgent=True, rule="gone")
        if ups:
            return Choice(ups[0].path, f"{current.local} is gone from {current.uplink}; "
                          f"{_name(ups[0])} is the best healthy path", urgent=True, rule="gone")
        return Choice(None, f"{current.local} is gone from {current.uplink} and no path is healthy: staying",
                      rule="gone")

    if cur.health is Health.DOWN:
        if ups:
            return Choice(ups[0].path, f"{_name(cur)} is down; {_name(ups[0])} is the best healthy path",
                          urgent=True, rule="down")
        return Choice(None, f"{_name(cur)} is down but no other path is healthy: staying", rule="down")

    beats = better(cur, candidates)
    if not beats:
        if cur.health is Health.UP:
            return Choice(None, f"{_name(cur)} is healthy and preferred", rule="stay")
        return Choice(None, f"{_name(cur)} is {cur.health.value}; no better path is up", rule="stay")
    proven = {c.path: proven_at(c, now=now, started_at=started_at, failback=failback) for c in beats}
    eligible = [c for c in beats if proven[c.path] <= now]
    if not eligible:
        first = min(beats, key=lambda c: proven[c.path])
        wait = proven[first.path]
        return Choice(None, f"{_name(first)} is preferred but up for less than the hold-down "
                      f"({failback.hold_down:g} s)", recheck_at=wait, rule="hold-down")
    if last_move_at is not None and now < last_move_at + failback.min_dwell:  # the recheck time, exactly
        return Choice(None, f"{_name(eligible[0])} is preferred but the last move was "
                      f"{now - last_move_at:.1f} s ago (min dwell {failback.min_dwell:g} s)",
                      recheck_at=last_move_at + failback.min_dwell, rule="min-dwell")
    best = eligible[0]
    held = now - (best.up_since if best.up_since is not None else now)
    return Choice(best.path, f"failback: {_name(best)} is preferred to {_name(cur)} and has been up "
                  f"for {held:.0f} s", rule="failback")


def _name(c: Candidate) -> str:
    return c.path.uplink
