"""Policy files (TOML, schema 1) validated into the typed `Policy` of `model.py`.

Theory of operation: the file is parsed with `tomllib`, then walked key by key against
the schema below. Each leaf converter either returns the typed value or raises `Invalid`
saying what it expected; the walker turns that into one problem,
`FILE: KEY.PATH: expected ..., got VALUE`, and goes on, so one run reports every problem
of a file. Unknown keys are problems too. Cross-checks (labels in the order, timeout
bounds, the metered budget) run on the values that converted. If anything is wrong the
loader raises one `DataError` carrying all the problems; otherwise it builds a complete new
`Policy`. It never returns a partly applied policy.

A key that is absent takes the model's default; a `[classes.X]` table merges over that
class's defaults; an `[uplinks]` table replaces the default uplinks as a whole.
docs/policy.md describes every key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from pathlib import Path as FsPath
from typing import Any

from mobikectl.engine.ids import ProbeKind, UplinkClass
from mobikectl.engine.probing import PROBE_BYTES
from mobikectl.errors import DataError
from mobikectl.policy.model import SCHEMA, ClassSettings, Failback, Moves, Policy, Probes, UplinkRule
from mobikectl.policy.values import (
    Converter, Invalid, boolean, choice, duration, fraction, integer, ip_address, show, size_mb, text,
)

ECHO_PROBE_BYTES = sum(PROBE_BYTES[(ProbeKind.ECHO, 4)])  # an IPv4 echo probe and its answer (72 B)
MONTH = 30 * 86400.0

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


# --- the walker ------------------------------------------------------------------------------

class _Walker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def invalid(self, where: str, expected: str, value: Any) -> None:
        self.problem(where, f"expected {expected}, got {show(value)}")

    def leaf(self, where: str, value: Any, convert: Converter) -> Any:
        try:
            return convert(value)
        except Invalid as exc:
            self.invalid(where, exc.expected, value)
            return _BAD

    def table(self, where: str, value: Any, keys: dict[str, Converter | None]) -> dict[str, Any] | None:
        """Check a table's keys; convert the leaves that have a converter (None: the caller
        walks that key itself). Returns the converted leaves, or None if it is no table."""
        if not isinstance(value, dict):
            self.invalid(where, "a table", value)
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key not in keys:
                self.problem(path, f"unknown key (expected one of: {', '.join(keys)})")
                continue
            convert = keys[key]
            out[key] = item if convert is None else self.leaf(path, item, convert)
        return out

    def string_list(self, where: str, value: Any, item: Converter = text, *, nonempty: bool = False,
                    what: str = "strings") -> tuple | object:
        if not isinstance(value, list) or (nonempty and not value):
            self.invalid(where, f"a {'non-empty ' if nonempty else ''}list of {what}", value)
            return _BAD
        out, ok = [], True
        for i, element in enumerate(value):
            converted = self.leaf(f"{where}[{i}]", element, item)
            if converted is _BAD:
                ok = False
            elif converted in out:
                self.problem(f"{where}[{i}]", f"expected each entry once, got {show(element)} again")
                ok = False
            else:
                out.append(converted)
        return tuple(out) if ok else _BAD


_BAD = object()  # a value that did not convert (its problem is already recorded)

_PROBE_KEYS: dict[str, Converter] = {
    "interval": duration(positive=True),
    "standby_interval": duration(positive=True),
    "timeout_min": duration(positive=True),
    "timeout_max": duration(positive=True),
    "fall": integer(1),
    "confirm": integer(1),
    "confirm_interval": duration(positive=True),
    "rise": integer(1),
}
_LIMIT_KEYS: dict[str, Converter] = {
    "max_loss": fraction,
    "max_rtt": duration(positive=False),
    "window": integer(1),
}
_CLASS_NAMES = [c.value for c in UplinkClass]
_KINDS = [k.value for k in ProbeKind]
_TOP_KEYS = ("schema", "description", "connections", "uplinks", "order", "classes", "failback", "moves", "probes")


def parse_policy(text_: str, source: str) -> Policy:
    """Validate the text of a policy file into a `Policy`, or raise DataError with every problem."""
    w = _Walker(source)
    try:
        doc = tomllib.loads(text_)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(source, exc) from None

    schema = doc.get("schema", _BAD)
    if schema is _BAD:
        w.problem("schema", f"missing key (expected schema = {SCHEMA} as the first line)")
    elif not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        w.invalid("schema", f"the integer {SCHEMA}", schema)
    elif schema != SCHEMA:
        w.problem("schema", f"expected {SCHEMA}, got {schema}: this mobikectl reads policy schema {SCHEMA} only "
                            f"(upgrade mobikectl, or write the policy for schema {SCHEMA}; see docs/policy.md)")
        raise DataError(w.problems[0], w.problems)  # a newer schema: its other keys mean nothing to us

    top = w.table("", doc, {k: None for k in _TOP_KEYS})
    assert top is not None
    fields: dict[str, Any] = {"source": source}
    if "description" in top:
        fields["description"] = w.leaf("description", top["description"], text)
    if "connections" in top:
        fields["connections"] = w.string_list("connections", top["connections"], _nonempty_text,
                                              what="charon connection names")
    uplinks = _uplinks(w, top["uplinks"]) if "uplinks" in top else Policy().uplinks
    fields["uplinks"] = uplinks
    if "order" in top:
        raw = top.get("uplinks")
        labels = list(raw) if isinstance(raw, dict) and raw else [rule.label for rule in Policy().uplinks]
        fields["prefer"] = _order(w, top["order"], labels)
    elif "uplinks" in top and uplinks is not _BAD:
        fields["prefer"] = tuple(rule.label for rule in uplinks)  # file order
    if "classes" in top:
        fields["classes"] = _classes(w, top["classes"])
    for key, cls in (("failback", Failback), ("moves", Moves)):
        if key in top:
            fields[key] = _simple_section(w, key, top[key], cls)
    if "probes" in top:
        fields["probes"] = _probes(w, top["probes"])

    classes = fields.get("classes", Policy().classes)
    if classes is not _BAD:
        _cross_checks(w, () if uplinks is _BAD else uplinks, classes)
    if w.problems:
        raise _all(source, w.problems)
    return Policy(**fields)


def load_policy(path: str | FsPath) -> Policy:
    """Read and validate a policy file. DataError if it cannot be read or is not valid."""
    source = str(path)
    try:
        raw = FsPath(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or exc} (check the path and its permissions)") from None
    try:
        text_ = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: cannot read: not UTF-8 text (bad byte at offset {exc.start}); "
                        "a policy is a TOML text file") from None
    return parse_policy(text_, source)


def _all(source: str, problems: list[str]) -> DataError:
    if len(problems) == 1:
        return DataError(problems[0], problems)
    return DataError(f"{source}: {len(problems)} problems in the policy", problems)


def _syntax_error(source: str, exc: tomllib.TOMLDecodeError) -> DataError:
    message = str(exc)
    where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if where:
        message = message[: where.start()]
        place = f"line {where.group(1)}, column {where.group(2)}"
    elif message.endswith("(at end of document)"):
        message = message[: -len("(at end of document)")].rstrip()
        place = "end of file"
    else:
        place = "somewhere"
    detail = message[:1].lower() + message[1:]
    return DataError(f"{source}: {place}: TOML syntax error: {detail} "
                     '(fix the syntax there; strings need quotes, e.g. hold_down = "30s")')


def _nonempty_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("a non-empty string")
    return value


# --- sections --------------------------------------------------------------------------------

def _uplinks(w: _Walker, value: Any) -> tuple[UplinkRule, ...] | object:
    if not isinstance(value, dict) or not value:
        w.invalid("uplinks", "a table of uplinks, e.g. [uplinks.wifi] with match and class", value)
        return _BAD
    rules, ok = [], True
    seen: dict[str, str] = {}
    for label, body in value.items():
        where = f"uplinks.{label}"
        if not _LABEL.fullmatch(label):
            w.problem(where, "expected a label of letters, digits, '-' and '_' (at most 32), "
                             f"got {show(label)}")
            ok = False
        got = w.table(where, body, {"match": None, "class": choice(_CLASS_NAMES), "metered": boolean})
        if got is None:
            ok = False
            continue
        for key in ("match", "class"):
            if key not in got:
                w.problem(f"{where}.{key}", "missing key (expected "
                          + ('a list of name patterns such as ["wlan*"])' if key == "match"
                             else "one of " + ", ".join(show(c) for c in _CLASS_NAMES) + ")"))
                ok = False
        match = w.string_list(f"{where}.match", got["match"], _nonempty_text, nonempty=True,
                              what='device name patterns such as "wlan*"') if "match" in got else _BAD
        if match is not _BAD:
            for i, pattern in enumerate(match):
                if pattern in seen:
                    w.problem(f"{where}.match[{i}]", f"pattern {show(pattern)} is already in uplinks.{seen[pattern]}.match "
                                                    "(a device belongs to the first uplink it matches: keep one)")
                    ok = False
                seen.setdefault(pattern, label)
        if _BAD in got.values() or match is _BAD or "class" not in got:
            ok = False
            continue
        rules.append(UplinkRule(label, UplinkClass(got["class"]), match, got.get("metered")))
    return tuple(rules) if ok else _BAD


def _order(w: _Walker, value: Any, labels: list[str]) -> tuple[str, ...] | object:
    got = w.table("order", value, {"prefer": None})
    if got is None:
        return _BAD
    if "prefer" not in got:
        w.problem("order.prefer", "missing key (expected the uplink labels, best first)")
        return _BAD
    defined = choice(labels)

    def label(item: Any) -> str:
        try:
            return defined(item)
        except Invalid:
            raise Invalid("an uplink label defined under [uplinks] (" + ", ".join(labels) + ")") from None

    prefer = w.string_list("order.prefer", got["prefer"], label, nonempty=True, what="uplink labels")
    if prefer is not _BAD:
        for missing in (lab for lab in labels if lab not in prefer):
            w.problem("order.prefer", f"uplink {show(missing)} is defined but not in the order "
                                      "(list every uplink, best first; remove [uplinks." + missing + "] to leave it unmanaged)")
    return prefer


def _classes(w: _Walker, value: Any) -> dict[UplinkClass, ClassSettings] | object:
    got = w.table("classes", value, {name: None for name in _CLASS_NAMES})
    if got is None:
        return _BAD
    classes = dict(Policy().classes)
    for name, body in got.items():
        where = f"classes.{name}"
        leaves = w.table(where, body, {"metered": boolean, "monthly_budget": size_mb, "probe": None, "limits": None})
        if leaves is None:
            continue
        base = classes[UplinkClass(name)]
        changes: dict[str, Any] = {}
        if "metered" in leaves:
            changes["metered"] = leaves["metered"]
        if "monthly_budget" in leaves:
            changes["monthly_budget_mb"] = leaves["monthly_budget"]
        if "probe" in leaves:
            changes["probe"] = _merge(w, f"{where}.probe", leaves["probe"], base.probe, _PROBE_KEYS)
        if "limits" in leaves:
            changes["limits"] = _merge(w, f"{where}.limits", leaves["limits"], base.limits, _LIMIT_KEYS)
        # A bad leaf keeps its default here, so the cross-checks still see the good ones;
        # the policy itself is never built while there is a problem.
        classes[UplinkClass(name)] = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not _BAD})
    return classes


def _merge(w: _Walker, where: str, value: Any, base: Any, keys: dict[str, Converter]) -> Any:
    """`base` with the given keys replaced; a key that did not convert keeps its default
    (its problem is recorded, so the result is only used for cross-checks)."""
    got = w.table(where, value, keys)
    if got is None:
        return _BAD
    return dataclasses.replace(base, **{k: v for k, v in got.items() if v is not _BAD})


def _simple_section(w: _Walker, where: str, value: Any, cls: type) -> Any:
    keys: dict[str, Converter] = {
        "hold_down": duration(positive=False), "min_dwell": duration(positive=False),  # failback
        "confirm_timeout": duration(positive=True), "retries": integer(0),  # moves
    }
    mine = {f.name: keys[f.name] for f in dataclasses.fields(cls)}
    return _merge(w, where, value, cls(), mine)


def _probes(w: _Walker, value: Any) -> Probes | object:
    got = w.table("probes", value, {"kinds": None, "data_target": ip_address(allow_empty=True), "gateways": None})
    if got is None:
        return _BAD
    if "kinds" in got:
        got["kinds"] = w.string_list("probes.kinds", got["kinds"], choice(_KINDS), nonempty=True, what="probe kinds")
    if "gateways" in got:
        got["gateways"] = w.string_list("probes.gateways", got["gateways"], ip_address(allow_empty=False),
                                        what="IP addresses")
    if _BAD in got.values():
        return _BAD
    return dataclasses.replace(Probes(), **got)


# --- checks across keys ----------------------------------------------------------------------

def _cross_checks(w: _Walker, uplinks: tuple[UplinkRule, ...], classes: dict[UplinkClass, ClassSettings]) -> None:
    """Checks across keys, on the values that converted (so they come with the other
    problems). `uplinks` is () when they did not convert: the budget check then waits."""
    metered_classes = {rule.cls for rule in uplinks
                       if (rule.metered if rule.metered is not None else classes[rule.cls].metered)}
    for cls, settings in classes.items():
        where = f"classes.{cls.value}"
        probe = settings.probe
        if probe.timeout_min > probe.timeout_max:
            w.problem(f"{where}.probe.timeout_min",
                      f"expected at most timeout_max ({_secs(probe.timeout_max)}), got {_secs(probe.timeout_min)}")
        budget = settings.monthly_budget_mb
        if cls in metered_classes and budget > 0:
            cost = ECHO_PROBE_BYTES * MONTH / probe.standby_interval / 1e6
            if cost > budget:
                w.problem(f"{where}.probe.standby_interval",
                          f"expected at least {_secs(ECHO_PROBE_BYTES * MONTH / (budget * 1e6))} on a metered class "
                          f"with a monthly_budget of {budget:g} MB, got {_secs(probe.standby_interval)} "
                          f"(standby probes alone would cost about {cost:.0f} MB a month)")


def _secs(seconds: float) -> str:
    """A duration for a message, rounded up: "150ms", "4s", "15m"."""
    if seconds < 1:
        return f'"{math.ceil(seconds * 1000):g}ms"'
    if seconds < 60:
        return f'"{math.ceil(seconds * 10) / 10:g}s"'
    return f'"{math.ceil(seconds / 60):g}m"'
