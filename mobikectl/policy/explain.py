"""Which uplink a policy picks for a given state, and why, step by step. Pure: a policy and a
state in, an `Explanation` out; no I/O, no clock (the state carries its own `now`).

The state is the daemon's `status` view (`{"cmd": "state"}` on the control socket) or a
file holding the same JSON document (docs/policy.md, "The state file"):

    {"schema": 1, "now": 1234.5,
     "uplinks": {"wlan0": {"class": "wlan", "addresses": ["192.168.1.2"], "admin_up": true,
                           "carrier": true, "health": "up", "rtt": 0.012, "loss": 0.0,
                           "up_since": 1200.0}, ...},
     "sas": [{"name": "home", "uplink": "wlan0", "local": "192.168.1.2", "remote": "192.0.2.1"}],
     "chosen": "wlan0",  "override": null}

The decision is the engine's own: the state becomes `decide.Candidate`s (one path per managed
uplink with an address; a link problem or a limit makes it DOWN, as in the engine) and an
`Override`, and `decide.choose` picks. This module only narrates: each uplink's steps
(managed, class, metered, rank, link, health, limits, and, when the failback rule weighed it,
the hold-down from `decide.proven_at`), and the pick's reason in words, by `Choice.rule`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass
from typing import Any

from mobikectl.engine import decide
from mobikectl.engine.decide import Candidate, Override
from mobikectl.engine.ids import Health, Path, UplinkName
from mobikectl.errors import DataError
from mobikectl.policy.model import Policy
from mobikectl.policy.values import show

# --- the state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UplinkState:
    name: str
    cls: str | None = None
    addresses: tuple[str, ...] = ()
    admin_up: bool = True
    carrier: bool = True
    health: Health = Health.UNKNOWN
    rtt: float | None = None
    loss: float | None = None
    up_since: float | None = None  # on the clock of State.now


@dataclass(frozen=True)
class State:
    uplinks: tuple[UplinkState, ...]
    current: str | None = None  # the uplink of the chosen path (or of the first managed SA)
    sa_names: tuple[str, ...] = ()
    now: float | None = None
    last_move: float | None = None
    started_at: float | None = None  # the engine's start: the hold-down counts from it at the earliest
    override: str | None = None
    override_force: bool = False


def parse_state(doc: Any, source: str) -> State:
    """A state document (dict) -> State, or DataError with every problem (FILE: KEY: ...)."""
    problems: list[str] = []

    def bad(where: str, expected: str, value: Any) -> None:
        problems.append(f"{source}: {where}: expected {expected}, got {_show(value)}")

    if not isinstance(doc, dict):
        raise DataError(f"{source}: expected a JSON object (the daemon's state), got {_show(doc)}")
    for key in ("status", "state"):  # the whole reply of `mobikectl status --json` (or of a state request)
        if "uplinks" not in doc and isinstance(doc.get(key), dict):
            doc = doc[key]
    if doc.get("schema", 1) != 1:
        raise DataError(f"{source}: schema: expected 1, got {_show(doc.get('schema'))} "
                        "(this mobikectl reads state schema 1 only)")
    now = _time(doc.get("now"), "now", bad)
    started_at = _time(doc.get("started_at"), "started_at", bad)
    path_up_since: dict[str, Any] = {}  # the engine's view keeps up_since per path
    for i, path in enumerate(doc.get("paths") or []):
        if isinstance(path, dict) and isinstance(path.get("path"), dict):
            path_up_since.setdefault(path["path"].get("uplink"), path.get("up_since"))
    uplinks = []
    raw = doc.get("uplinks")
    if not isinstance(raw, dict):
        bad("uplinks", "an object of uplinks by device name", raw)
        raw = {}
    for name, up in raw.items():
        where = f"uplinks.{name}"
        if not isinstance(up, dict):
            bad(where, "an object", up)
            continue
        fields: dict[str, Any] = {"name": name}
        for key, kind in (("admin_up", bool), ("carrier", bool)):
            if key in up:
                if isinstance(up[key], bool):
                    fields[key] = up[key]
                else:
                    bad(f"{where}.{key}", "true or false", up[key])
        if up.get("class") is not None:
            fields["cls"] = str(up["class"])
        addresses = up.get("addresses", [])
        if isinstance(addresses, list) and all(isinstance(a, str) for a in addresses):
            fields["addresses"] = tuple(addresses)
        else:
            bad(f"{where}.addresses", "a list of addresses", addresses)
        health = up.get("health", "unknown")
        try:
            fields["health"] = Health(health)
        except ValueError:
            bad(f"{where}.health", "one of " + ", ".join(show(h.value) for h in Health), health)
        for key in ("rtt", "loss"):
            value = up.get(key)
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                fields[key] = float(value)
            else:
                bad(f"{where}.{key}", "a number >= 0 or null", value)
        since = up.get("up_since", path_up_since.get(name))
        fields["up_since"] = _time(since, f"{where}.up_since", bad)
        uplinks.append(UplinkState(**fields))
    sas = doc.get("sas", [])
    sa_names: list[str] = []
    sa_uplink = None
    if not isinstance(sas, list) or not all(isinstance(sa, dict) for sa in sas):
        bad("sas", "a list of objects", sas)
    else:
        sa_names = [str(sa.get("name", "")) for sa in sas]
        sa_uplink = next((sa["uplink"] for sa in sas if isinstance(sa.get("uplink"), str)), None)
    chosen = doc.get("chosen")
    if isinstance(chosen, dict):
        chosen = chosen.get("uplink")
    if chosen is not None and not isinstance(chosen, str):
        bad("chosen", "an uplink name, a path object or null", doc.get("chosen"))
        chosen = None
    override = doc.get("override")
    override_name, force = None, False
    if isinstance(override, dict):
        override_name, force = override.get("uplink"), bool(override.get("force", False))
    elif isinstance(override, str):
        override_name = override
    elif override is not None:
        bad("override", "null, an uplink name or {\"uplink\": ..., \"force\": ...}", override)
    last_move = _time(doc.get("last_move"), "last_move", bad)
    gateways = doc.get("gateways")
    if last_move is None and isinstance(gateways, dict):  # the engine's view: per gateway
        times = [g.get("last_move_at") for g in gateways.values() if isinstance(g, dict)]
        last_move = max((t for t in times if isinstance(t, (int, float)) and not isinstance(t, bool)), default=None)
    if problems:
        raise DataError(problems[0] if len(problems) == 1 else f"{source}: {len(problems)} problems in the state",
                        problems)
    return State(tuple(uplinks), chosen or sa_uplink, tuple(sa_names), now, last_move, started_at, override_name,
                 force)


def _time(value: Any, where: str, bad) -> float | None:
    """Seconds on the daemon's clock, or an ISO 8601 time (as UNIX seconds)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=datetime.timezone.utc)
            return stamp.timestamp()
        except ValueError:
            pass
    bad(where, "seconds or an ISO 8601 time", value)
    return None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return show(value)


# --- the explanation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    check: str  # managed, class, metered, link, health, limits, rank, hold-down
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    uplink: str
    label: str | None
    steps: tuple[Step, ...]
    candidate: bool
    why_not: str = ""  # the first failed step, when not a candidate
    current: bool = False
    key: tuple[bool, int] | None = None  # (metered, rank): lower is better


@dataclass(frozen=True)
class Explanation:
    pick: str | None
    action: str  # "stay", "move", "none"
    reason: str
    current: str | None
    verdicts: tuple[Verdict, ...]

    def to_json(self) -> dict:
        return {
            "pick": self.pick, "action": self.action, "reason": self.reason, "current": self.current,
            "uplinks": [{"uplink": v.uplink, "label": v.label, "current": v.current, "candidate": v.candidate,
                         "why_not": v.why_not,
                         "rank": None if v.key is None else v.key[1] + 1, "metered": None if v.key is None else v.key[0],
                         "steps": [{"check": s.check, "ok": s.ok, "detail": s.detail} for s in v.steps]}
                        for v in self.verdicts],
        }


def explain(policy: Policy, state: State) -> Explanation:
    """The engine's `decide.choose` on the state, with every uplink's steps shown."""
    verdicts = [_judge(policy, up, up.name == state.current) for up in state.uplinks]
    by_name = {v.uplink: v for v in verdicts}
    cands = _candidates(policy, state, verdicts)
    cur_v = by_name.get(state.current) if state.current else None
    cur = cands.get(state.current) if state.current else None
    current = cur.path if cur else None if state.current is None else Path(UplinkName(state.current), "", "")
    now = state.now if state.now is not None else 0.0  # unknown: no hold-down has passed, no dwell
    started_at = state.started_at if state.started_at is not None and state.now is not None else -math.inf
    override = None if not state.override else Override(state.override, None, state.override_force, now)
    choice = decide.choose(current, list(cands.values()), now=now, started_at=started_at,
                           last_move_at=state.last_move if state.now is not None else None,
                           failback=policy.failback, override=override)
    proven: dict[str, float] = {}  # rule 4: when each uplink it weighed has held for the hold-down
    if choice.rule in ("hold-down", "min-dwell", "failback"):
        assert cur is not None
        for c in decide.better(cur, list(cands.values())):
            proven[c.path.uplink] = decide.proven_at(c, now=now, started_at=started_at, failback=policy.failback)
            i = verdicts.index(by_name[c.path.uplink])
            verdicts[i] = _with_hold_down(policy, state, verdicts[i], proven[c.path.uplink] - now)
        by_name = {v.uplink: v for v in verdicts}
    target = by_name[choice.target.uplink] if choice.target else None
    pick = target.uplink if target else state.current if cur_v and cur_v.label else None
    action = "none" if pick is None else "stay" if pick == state.current else "move"
    note = ""
    if state.override and not choice.manual:
        wanted = by_name.get(state.override)
        note = f"manual switch to {state.override} not honoured ({wanted.why_not if wanted else 'no such uplink'}); "
    if choice.manual:
        how = "forced " if state.override_force and not by_name[state.override].candidate else ""
        reason = f"{how}manual switch to {state.override} (`mobikectl switch --auto` ends it)"
    elif choice.rule in ("no-path", "gone", "down"):  # the SA must move now, if any uplink is usable
        if cur_v is not None and cur_v.label is not None:
            why = f"{cur_v.uplink} is not usable ({_unusable(cur_v)})"
            stay = "but no other uplink is usable: staying (no thrashing)"
        else:
            why = ("the SA is on no uplink" if state.current is None
                   else f"{state.current} is not in the state" if cur_v is None else f"{state.current} is not managed")
            stay = "and no uplink is usable: " + ("; ".join(f"{v.uplink}: {v.why_not}" for v in verdicts)
                                                 or "the state lists none")
        reason = f"{why}: {target.uplink} is the best usable uplink{_rank_words(target)}" if target else f"{why} {stay}"
    elif choice.rule == "stay" and cur is not None:
        then = " (the confirming burst decides whether it is down)" if cur.health is Health.SUSPECT else ""
        reason = (f"{state.current} is up and no usable uplink ranks higher" if cur.health is Health.UP
                  else f"{state.current} is {cur.health.value}; no better uplink is usable{then}")
    elif choice.rule == "hold-down" and cur is not None:
        first = by_name[next(name for name, at in proven.items() if at == choice.recheck_at)]
        reason = (f"{state.current} is {cur.health.value}; {first.uplink} ranks higher but is held down "
                  f"({first.steps[-1].detail})")
    elif choice.rule == "min-dwell" and choice.recheck_at is not None:
        first = by_name[next(name for name, at in proven.items() if at <= now)]
        reason = (f"{first.uplink} ranks higher and has held for the hold-down, but the last move was less than "
                  f"min_dwell ago: {_dur(choice.recheck_at - now)} to go")
    elif choice.rule == "failback" and target is not None:
        reason = (f"fail back: {target.uplink} ranks higher than {state.current} and has been up for the "
                  f"hold-down ({_dur(policy.failback.hold_down)})")
    else:  # a rule this narration does not know: the engine's own words
        reason = choice.reason
    return Explanation(pick, action, note + reason, state.current, tuple(verdicts))


def _candidates(policy: Policy, state: State, verdicts: list[Verdict]) -> dict[str, Candidate]:
    """The engine's candidates: one path per managed uplink with an address. A link problem or a
    limit makes it DOWN, as the engine's link and health tracking do."""
    out = {}
    for up, v in zip(state.uplinks, verdicts):
        if v.label is None or not up.addresses:
            continue
        usable = all(s.ok for s in v.steps if s.check in ("link", "limits"))
        rank = policy.rank(up.name)
        out[up.name] = Candidate(Path(UplinkName(up.name), up.addresses[0], ""),
                                 up.health if usable else Health.DOWN,
                                 up.up_since if state.now is not None else None,
                                 rank if rank is not None else 99, policy.metered(up.name))
    return out


def _unusable(v: Verdict) -> str:
    """Why the current uplink must be left: its first failed link or limits step, else DOWN."""
    return next((s.detail for s in v.steps if s.check in ("link", "limits") and not s.ok), "health down")


def _with_hold_down(policy: Policy, state: State, v: Verdict, left: float) -> Verdict:
    """A candidate the failback rule weighed: `left` = seconds to go (from `decide.proven_at`)."""
    hold, since = _dur(policy.failback.hold_down), next(u.up_since for u in state.uplinks if u.name == v.uplink)
    detail = (f"up for at least hold_down {hold}" if left <= 0
              else f"now unknown: cannot tell, hold_down is {hold}" if state.now is None
              else f"up_since unknown: counted from now, {_dur(left)} to go" if since is None
              else f"up for {_dur(policy.failback.hold_down - left)} of hold_down {hold}: {_dur(left)} to go")
    return dataclasses.replace(v, steps=v.steps + (Step("hold-down", left <= 0, detail),))


def _judge(policy: Policy, up: UplinkState, current: bool) -> Verdict:
    steps: list[Step] = []
    rule = policy.rule_for(up.name)
    if rule is None:
        steps.append(Step("managed", False, "no uplink pattern of the policy matches this device"))
        return Verdict(up.name, None, tuple(steps), False, "not managed by the policy", current)
    pattern = next(p for p in rule.match if _fnmatch(up.name, p))
    steps.append(Step("managed", True, f"matches {show(pattern)} of uplink {rule.label}"))
    seen = f" (the daemon classified it {up.cls})" if up.cls and up.cls != rule.cls.value else ""
    steps.append(Step("class", True, f"{rule.cls.value}{seen}"))
    metered = policy.metered(up.name)
    source = "uplink " + rule.label if rule.metered is not None else "class " + rule.cls.value
    steps.append(Step("metered", True, f"{'metered: last resort' if metered else 'not metered'} ({source})"))
    rank = policy.rank(up.name)
    key = (metered, rank)
    steps.append(Step("rank", True, f"{rank + 1} of {len(policy.prefer)} (prefer {' > '.join(policy.prefer)})"))
    link_problems = [w for ok, w in ((up.admin_up, "admin down"), (up.carrier, "no carrier"),
                                     (bool(up.addresses), "no address")) if not ok]
    steps.append(Step("link", not link_problems, ", ".join(link_problems) or
                      f"admin up, carrier, {', '.join(up.addresses)}"))
    healthy = up.health is Health.UP
    steps.append(Step("health", healthy, up.health.value + (f", rtt {_dur(up.rtt)}" if up.rtt is not None else "")
                      + (f", loss {up.loss:.0%}" if up.loss is not None else "")))
    limits = policy.classes[rule.cls].limits
    over = []
    if limits.max_loss and up.loss is not None and up.loss > limits.max_loss:
        over.append(f"loss {up.loss:.0%} over max_loss {limits.max_loss:.0%}")
    if limits.max_rtt and up.rtt is not None and up.rtt > limits.max_rtt:
        over.append(f"rtt {_dur(up.rtt)} over max_rtt {_dur(limits.max_rtt)}")
    no_limits = not limits.max_loss and not limits.max_rtt
    steps.append(Step("limits", not over, "; ".join(over) or ("no limits set" if no_limits else "within limits")))
    failed = next((s for s in steps if not s.ok), None)
    why_not = "" if failed is None else (failed.detail if failed.check != "health" else f"health {up.health.value}")
    return Verdict(up.name, rule.label, tuple(steps), failed is None, why_not, current, key)


def _fnmatch(name: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)


def _rank_words(v: Verdict) -> str:
    assert v.key is not None
    metered = ", metered" if v.key[0] else ""
    return f" (rank {v.key[1] + 1}{metered})"


def _dur(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.3g}s"
    return f"{seconds / 60:.3g}m"


def render(policy: Policy, result: Explanation) -> str:
    """The readable form: one block per uplink, then the pick."""
    lines = [f"policy {policy.source}: prefer {' > '.join(policy.prefer)}, "
             f"hold_down {_dur(policy.failback.hold_down)}"]
    for v in result.verdicts:
        tag = " [current]" if v.current else ""
        lines.append(f"{v.uplink} ({v.label or 'unmanaged'}){tag}")
        for s in v.steps:
            lines.append(f"  {s.check:<9} {'ok ' if s.ok else 'NO '} {s.detail}")
        held = " (held down)" if any(s.check == "hold-down" and not s.ok for s in v.steps) else ""
        lines.append("  => " + (f"candidate, rank {v.key[1] + 1}{held}" if v.candidate and v.key else
                                f"not a candidate: {v.why_not}"))
    verb = {"stay": "stay on", "move": "move to", "none": "no pick"}[result.action]
    lines.append(f"pick: {verb} {result.pick or ''}".rstrip() + f": {result.reason}")
    return "\n".join(lines)
