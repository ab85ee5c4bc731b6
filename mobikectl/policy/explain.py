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

The rules are those of the engine (`mobikectl/engine/decide.py`), applied per uplink: an
uplink is a candidate when the policy manages it, it is admin-up with carrier and an
address, its health is UP and it is within its class's loss and RTT limits. Candidates rank
by the policy's order, a metered uplink after every unmetered one (metered = last resort).
A manual switch (`override`) wins when its uplink is a candidate, or when forced. A current
uplink that is DOWN, without link or address, or over a limit is left at once for the best
candidate (with none, it stays). An UP, SUSPECT or UNKNOWN current uplink is left only for
a better candidate that has been UP for `failback.hold_down`, and only if the last move was
at least `failback.min_dwell` ago.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass
from typing import Any

from mobikectl.engine.ids import Health
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
    override: str | None = None
    override_force: bool = False


def parse_state(doc: Any, source: str) -> State:
    """A state document (dict) -> State, or DataError with every problem (FILE: KEY: ...)."""
    problems: list[str] = []

    def bad(where: str, expected: str, value: Any) -> None:
        problems.append(f"{source}: {where}: expected {expected}, got {_show(value)}")

    if not isinstance(doc, dict):
        raise DataError(f"{source}: expected a JSON object (the daemon's state), got {_show(doc)}")
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
        if fields["up_since"] is not None and started_at is not None:  # the engine counts from its start
            fields["up_since"] = max(fields["up_since"], started_at)
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
    return State(tuple(uplinks), chosen or sa_uplink, tuple(sa_names), now, last_move, override_name, force)


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
    """The rules of the engine's `decide.choose`, per uplink, with every step shown."""
    verdicts = [_judge(policy, up, up.name == state.current) for up in state.uplinks]
    by_name = {v.uplink: v for v in verdicts}
    candidates = sorted((v for v in verdicts if v.candidate), key=lambda v: v.key)
    cur = by_name.get(state.current) if state.current else None
    best = candidates[0] if candidates else None

    note = ""
    if state.override:
        wanted = by_name.get(state.override)
        if wanted is not None and (wanted.candidate or state.override_force):
            how = "forced " if state.override_force and not wanted.candidate else ""
            return _done(state.override, state, verdicts, f"{how}manual switch to {state.override} "
                                                          "(`mobikectl switch --auto` ends it)")
        note = f"manual switch to {state.override} not honoured ({wanted.why_not if wanted else 'no such uplink'}); "

    if cur is None or cur.label is None:
        why = ("the SA is on no uplink" if state.current is None
               else f"{state.current} is not in the state" if cur is None else f"{cur.uplink} is not managed")
        if best is None:
            return Explanation(None, "none", note + f"{why} and no uplink is usable: "
                               + ("; ".join(f"{v.uplink}: {v.why_not}" for v in verdicts) or "the state lists none"),
                               state.current, tuple(verdicts))
        return _done(best.uplink, state, verdicts, note + f"{why}: {best.uplink} is the best usable uplink"
                     + _rank_words(best))

    urgent = _urgent(policy, state, cur)
    if urgent:
        if best is None:
            return _done(cur.uplink, state, verdicts, note + f"{cur.uplink} is not usable ({urgent}) but no other "
                                                             "uplink is usable: staying (no thrashing)")
        return _done(best.uplink, state, verdicts, note + f"{cur.uplink} is not usable ({urgent}): {best.uplink} "
                                                          "is the best usable uplink" + _rank_words(best))

    # UP, SUSPECT or UNKNOWN: leave it only for a better uplink that has held for the hold-down
    health = _health(state, cur.uplink)
    verdicts = [_with_hold_down(policy, state, v) if v.candidate and v.key < cur.key else v for v in verdicts]
    better = sorted((v for v in verdicts if v.candidate and v.key < cur.key), key=lambda v: v.key)
    if not better:
        if health is Health.UP:
            return _done(cur.uplink, state, verdicts, note + f"{cur.uplink} is up and no usable uplink ranks higher")
        then = " (the confirming burst decides whether it is down)" if health is Health.SUSPECT else ""
        return _done(cur.uplink, state, verdicts, note + f"{cur.uplink} is {health.value}; no better uplink is "
                                                         f"usable{then}")
    eligible = [v for v in better if _held_down(policy, state, v.uplink) is None]
    if not eligible:
        first = better[0]
        return _done(cur.uplink, state, verdicts, note + f"{cur.uplink} is {health.value}; {first.uplink} ranks "
                     f"higher but is held down ({_held_down(policy, state, first.uplink)})")
    dwell = _dwell_left(policy, state)
    if dwell:
        return _done(cur.uplink, state, verdicts, note + f"{eligible[0].uplink} ranks higher and has held for the "
                     f"hold-down, but the last move was less than min_dwell ago: {dwell} to go")
    return _done(eligible[0].uplink, state, verdicts, note + f"fail back: {eligible[0].uplink} ranks higher than "
                 f"{cur.uplink} and has been up for the hold-down ({_dur(policy.failback.hold_down)})")


def _urgent(policy: Policy, state: State, cur: Verdict) -> str:
    """Why the current uplink must be left now ('' = it need not): link, DOWN, over a limit."""
    for step in cur.steps:
        if step.check in ("link", "limits") and not step.ok:
            return step.detail
    if _health(state, cur.uplink) is Health.DOWN:
        return "health down"
    return ""


def _with_hold_down(policy: Policy, state: State, v: Verdict) -> Verdict:
    """A candidate ranking above a healthy current uplink: has it held for the hold-down?"""
    held = _held_down(policy, state, v.uplink)
    step = Step("hold-down", held is None, held or f"up for at least hold_down {_dur(policy.failback.hold_down)}")
    return dataclasses.replace(v, steps=v.steps + (step,))


def _done(pick: str, state: State, verdicts: list[Verdict], reason: str) -> Explanation:
    action = "stay" if pick == state.current else "move"
    return Explanation(pick, action, reason, state.current, tuple(verdicts))


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


def _health(state: State, name: str) -> Health:
    return next((u.health for u in state.uplinks if u.name == name), Health.UNKNOWN)


def _held_down(policy: Policy, state: State, name: str) -> str | None:
    """None if `name` has been UP for the hold-down; else why it is still held down."""
    up = next(u for u in state.uplinks if u.name == name)
    hold = policy.failback.hold_down
    if up.up_since is None or state.now is None:
        return None if hold == 0 else f"up_since or now unknown: cannot tell, hold_down is {_dur(hold)}"
    held = state.now - up.up_since
    if held >= hold:
        return None
    return f"up for {_dur(held)} of hold_down {_dur(hold)}: {_dur(hold - held)} to go"


def _dwell_left(policy: Policy, state: State) -> str:
    if state.last_move is None or state.now is None:
        return ""
    left = policy.failback.min_dwell - (state.now - state.last_move)
    return _dur(left) if left > 0 else ""


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
