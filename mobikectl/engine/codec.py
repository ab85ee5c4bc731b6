"""The JSON form of facts and orders, and recordings of a run.

A fact or an order is an object with its class name under "type" and its fields beside
it: `{"type": "ProbeReplied", "path": {"uplink": "wlan0", "local": "10.1.0.2", "gateway":
"192.0.2.1"}, "kind": "echo", "seq": 7, "rtt": 0.0051}`. Paths are objects, enums their
string values, tuples lists, nested records (SaInfo, LinkChanged in a NetSnapshot) objects
without "type"; `ActionFailed.order` is a tagged order; `PolicyLoaded.policy` the policy's
fields. Decoding checks every field against the dataclass's annotations and raises
ValueError naming the field (`ProbeReplied.seq: expected an integer, got "7"`).

A recording is JSON lines, one fact a line: `{"schema": 1, "now": 12.345, "fact": {...}}`.
`replay(policy, lines)` runs a fresh engine over one, firing its timers between facts as
the daemon would, and returns every order with the time it was given.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Iterable, Iterator
from typing import IO, Any

from mobikectl.engine import actions, inputs
from mobikectl.engine.ids import Path
from mobikectl.policy import model

SCHEMA = 1
TYPES: dict[str, type] = {cls.__name__: cls for cls in (*inputs.FACTS, *actions.ORDERS)}
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# --- encoding -----------------------------------------------------------------------------
def to_json(obj: object) -> dict:
    """A fact or an order as a JSON-able dict with its "type"."""
    name = type(obj).__name__
    if TYPES.get(name) is not type(obj):
        raise ValueError(f"not a fact or an order: {obj!r}")
    if isinstance(obj, inputs.PolicyLoaded):  # typed `object`: give it the policy's own form
        return {"type": name, "policy": _fields(obj.policy)}
    return {"type": name, **_fields(obj)}


def _fields(obj: object) -> dict:
    hints = _hints(type(obj))
    out = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        tagged = hints[f.name] in (object, Any) and type(value).__name__ in TYPES
        out[f.name] = to_json(value) if tagged else _encode(value)
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(_encode(k)): _encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return _fields(value)
    return value


# --- decoding -----------------------------------------------------------------------------
def from_json(doc: Any) -> object:
    """The fact or order a `to_json` dict describes. ValueError names what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected an object with a \"type\", got {_show(doc)}")
    name = doc.get("type")
    cls = TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"type: expected one of the facts or orders, got {_show(name)}")
    if cls is inputs.PolicyLoaded:
        extra = sorted(set(doc) - {"type", "policy"})
        if extra:
            raise ValueError(f"PolicyLoaded.{extra[0]}: unknown field")
        if "policy" not in doc:
            raise ValueError("PolicyLoaded.policy: missing")
        return inputs.PolicyLoaded(_record(model.Policy, doc["policy"], "PolicyLoaded.policy"))
    return _record(cls, {k: v for k, v in doc.items() if k != "type"}, name)  # type: ignore[arg-type]


def _record(cls: type, doc: Any, where: str) -> Any:
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected an object, got {_show(doc)}")
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field")
    kwargs = {}
    for fname, f in known.items():
        if fname not in doc:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}.{fname}: missing")
            continue
        kwargs[fname] = _decode(hints[fname], doc[fname], f"{where}.{fname}")
    return cls(**kwargs)


def _decode(tp: Any, value: Any, where: str) -> Any:
    if hasattr(tp, "__supertype__"):  # NewType
        tp = tp.__supertype__
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _decode(arg, value, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {_show(value)}")
    if tp is Any or tp is object:
        return from_json(value) if isinstance(value, dict) and "type" in value else value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {_show(value)}")
        return {_decode(kt, k, f"{where}.{k}"): _decode(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {_show(value)}")
        return value
    if tp is Path:
        return _record(Path, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{where}: expected one of {[m.value for m in tp]}, got {_show(value)}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise ValueError(f"{where}: cannot decode a value of type {tp!r}")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (set, bytes)) else repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# --- recordings ---------------------------------------------------------------------------
def record_line(now: float, fact: object) -> str:
    """One line of a recording (no newline)."""
    return json.dumps({"schema": SCHEMA, "now": now, "fact": to_json(fact)}, sort_keys=True)


def write_recording(fp: IO[str], now: float, fact: object) -> None:
    fp.write(record_line(now, fact) + "\n")


def read_recording(lines: Iterable[str]) -> Iterator[tuple[float, object]]:
    """(now, fact) from JSON lines; blank lines and lines starting with # are skipped."""
    last = None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("expected an object")
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema: expected {SCHEMA}, got {_show(doc.get('schema'))}")
            now = doc.get("now")
            if isinstance(now, bool) or not isinstance(now, (int, float)):
                raise ValueError(f"now: expected a number, got {_show(now)}")
            if last is not None and now < last:
                raise ValueError(f"now: {now} is earlier than the line before ({last})")
            fact = from_json(doc.get("fact"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"line {number}: {exc}") from None
        if type(fact).__name__ not in {c.__name__ for c in inputs.FACTS}:
            raise ValueError(f"line {number}: fact: {type(fact).__name__} is an order, not a fact")
        last = float(now)
        yield last, fact


def replay(policy: model.Policy, lines: Iterable[str], *, until: float | None = None,
           route_proto: int = 73) -> list[tuple[float, object]]:
    """Run a fresh engine over a recording: every fact at its time, and handle_timer at
    every deadline that falls between two facts (and up to `until`, if given)."""
    from mobikectl.engine.engine import Engine

    out: list[tuple[float, object]] = []
    engine = None
    for now, fact in read_recording(lines):
        if engine is None:
            engine = Engine(policy, now, route_proto=route_proto)
        _run_timers(engine, now, out)
        out += [(now, o) for o in engine.handle(fact, now)]
    if engine is not None and until is not None:
        _run_timers(engine, until, out)
    return out


STUCK_ROUNDS = 10_000  # timer rounds at one deadline that mean the engine is stuck (a bug)


def _run_timers(engine: Any, now: float, out: list) -> None:
    last, rounds = None, 0
    while True:
        deadline = engine.next_deadline()
        if deadline is None or deadline > now:
            return
        rounds = rounds + 1 if deadline == last else 0
        if rounds >= STUCK_ROUNDS:
            raise RuntimeError(f"replay: the engine's next deadline stays at {deadline!r} after "
                               f"{STUCK_ROUNDS} timer rounds there (an engine bug: a timer that "
                               f"does not advance)")
        last = deadline
        out += [(deadline, o) for o in engine.handle_timer(deadline)]
