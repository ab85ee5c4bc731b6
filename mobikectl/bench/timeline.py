"""A move as a timeline relative to a reference instant (the fault, or the clear): the
daemon's events (probe transitions, decisions) and the move's own timings (route set,
ike-update, CHILD_SA rekey, confirmation), plus when tunnel traffic came back.

Pure: the caller passes the events (with their wall-clock `time`s), the wall-minus-
monotonic offset, the move record from `status` (monotonic times) and the reference.
Used by the demo (printed) and the benchmark (where the gap goes: detection vs move).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Entry:
    at: float  # seconds after the reference (may be negative)
    what: str  # short key: suspect, down, decision, route, ike-update, rekey, confirmed, traffic
    text: str

    def to_json(self) -> dict:
        return {"at_ms": round(self.at * 1000, 1), "what": self.what, "text": self.text}


def event_monotonic(event: dict, offset: float) -> float | None:
    """An event's wall-clock ISO `time` minus `offset` (= time.time() - time.monotonic())."""
    iso = event.get("time")
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - offset
    except ValueError:
        return None


_PROBE_WHAT = {"suspect": "suspect", "down": "down", "up": "up"}


def from_events(events: list[dict], offset: float, ref: float, uplinks: tuple[str, ...] = ()) -> list[Entry]:
    """Probe transitions (of `uplinks`, all when empty) and decisions that order a move."""
    out: list[Entry] = []
    for ev in events:
        at = event_monotonic(ev, offset)
        if at is None:
            continue
        data = ev.get("data") or {}
        kind = ev.get("kind")
        if kind == "probe":
            up = data.get("uplink")
            if uplinks and up not in uplinks:
                continue
            to = data.get("to", "?")
            msg = ev.get("message", "")
            why = msg[msg.find("(") + 1:msg.rfind(")")] if "(" in msg else data.get("event", "")
            out.append(Entry(at - ref, _PROBE_WHAT.get(to, to), f"{up} {data.get('from', '?')} -> {to}: {why}"))
        elif kind == "decision" and data.get("to"):
            out.append(Entry(at - ref, "decision", f"decision: {ev.get('message', '')}"))
    return out


def from_move(move: dict | None, ref: float) -> list[Entry]:
    if not move:
        return []
    to = move.get("to") or {}
    out = []
    if move.get("route_set_at") is not None:
        out.append(Entry(move["route_set_at"] - ref, "route",
                         f"steering route set: {to.get('gateway')} via {to.get('uplink')} src {to.get('local')}"))
    if move.get("ike_update_at") is not None:
        out.append(Entry(move["ike_update_at"] - ref, "ike-update",
                         f"ike-update: charon moved the IKE_SA to {to.get('local')} ({to.get('uplink')}) with MOBIKE"))
    if move.get("child_rekey_at") is not None:
        out.append(Entry(move["child_rekey_at"] - ref, "rekey", "CHILD_SA rekeyed (kernel-libipsec: new SPIs)"))
    if move.get("confirmed_at") is not None:
        out.append(Entry(move["confirmed_at"] - ref, "confirmed",
                         f"move confirmed ({move.get('took', 0) * 1000:.0f} ms after the decision)"))
    elif move.get("outcome") not in (None, "pending"):
        out.append(Entry(move.get("decided_at", ref) - ref, "move", f"move {move['outcome']}"))
    return out


def traffic_back(report: dict | None) -> Entry | None:
    """From a gap meter report (mobikectl.lab.pinger): the end of the longest silence."""
    if not report or report.get("max_gap_ms") is None or report.get("max_gap_open"):
        return None
    end_ms = report["max_gap_from_ms"] + report["max_gap_ms"]
    return Entry(end_ms / 1000, "traffic", f"tunnel traffic back (silence of {report['max_gap_ms']:.0f} ms)")


def build(events: list[dict], offset: float, ref: float, move: dict | None, report: dict | None = None,
          uplinks: tuple[str, ...] = ()) -> list[Entry]:
    entries = from_events(events, offset, ref, uplinks) + from_move(move, ref)
    back = traffic_back(report)
    if back is not None:
        entries.append(back)
    return sorted(entries, key=lambda e: e.at)


def phases(entries: list[Entry]) -> dict[str, float | None]:
    """Where the time went (seconds after the reference): detection = the decision,
    move = decision -> ike-update, traffic = when the tunnel carried traffic again."""
    def first(what: str) -> float | None:
        return next((e.at for e in entries if e.what == what), None)

    return {"suspect_s": first("suspect"), "decision_s": first("decision"), "route_s": first("route"),
            "ike_update_s": first("ike-update"), "traffic_s": first("traffic")}


def render(entries: list[Entry], indent: str = "  ") -> list[str]:
    lines = []
    for e in entries:
        lines.append(f"{indent}{_fmt_at(e.at)}  {e.text}")
    return lines


def _fmt_at(at: float) -> str:
    sign = "+" if at >= 0 else "-"
    if abs(at) < 1:
        return f"t{sign}{abs(at) * 1000:5.0f} ms"
    return f"t{sign}{abs(at):6.3f} s "
