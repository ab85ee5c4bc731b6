"""Readable text for the daemon commands (mobikectl.cli_daemon), from the JSON the
control socket returns. The shapes are the engine's view (mobikectl/engine/view.py)
plus the run loop's "daemon" and "probe_counters"; missing keys show as "-" so an older
or newer daemon still renders. Engine times are monotonic seconds: shown as ages
against the view's "now"."""

from __future__ import annotations

from typing import Any


def _ms(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _pct(fraction: Any) -> str:
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        return "-"
    return f"{fraction * 100:.0f}%" if fraction >= 0.01 or fraction == 0 else f"{fraction * 100:.1f}%"


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _ago(t: Any, now: Any) -> str:
    if not isinstance(t, (int, float)) or not isinstance(now, (int, float)):
        return "-"
    age = max(0.0, now - t)
    if age < 60:
        return f"{age:.1f} s ago"
    if age < 3600:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "-"


def _path(p: Any) -> str:
    if not isinstance(p, dict):
        return "-" if p is None else str(p)
    return f"{p.get('uplink', '?')} ({p.get('local') or '?'} -> {p.get('gateway') or '?'})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def status(view: dict) -> str:
    now = view.get("now")
    out: list[str] = []
    daemon = view.get("daemon") if isinstance(view.get("daemon"), dict) else {}
    charon = view.get("charon") if isinstance(view.get("charon"), dict) else {}
    if daemon:
        out.append(f"daemon: pid {daemon.get('pid', '-')}, started {daemon.get('started', '-')}, "
                   f"policy {daemon.get('policy') or view.get('policy') or 'built-in default'}")
    out.append("charon: " + ("connected" if charon.get("connected") else "NOT connected"))
    out.append(f"chosen: {_path(view.get('chosen'))}")
    if view.get("why"):
        out.append(f"  why: {view['why']}")
    ov = view.get("override")
    if isinstance(ov, dict):
        until = "until `switch --auto`" if ov.get("until") is None else \
            f"for {max(0.0, ov['until'] - now):.0f} s more" if isinstance(now, (int, float)) else f"until {ov['until']}"
        out.append(f"override: {ov.get('uplink')} {until}{' (forced)' if ov.get('force') else ''}")
    out.append("")
    uplinks = view.get("uplinks") if isinstance(view.get("uplinks"), dict) else {}
    rows = []
    for name, up in sorted(uplinks.items(), key=lambda kv: (kv[1].get("rank") is None, kv[1].get("rank") or 0, kv[0])):
        cls = str(up.get("class") or "-") + (" metered" if up.get("metered") else "")
        addresses = ", ".join(up.get("addresses") or []) or "-"
        rows.append([name, cls, addresses, _yes(up.get("carrier")), str(up.get("health", "-")),
                     _ms(up.get("rtt")), _pct(up.get("loss")), _ago(up.get("last_probe"), now)])
    out.append(table(["UPLINK", "CLASS", "ADDRESSES", "CARRIER", "HEALTH", "RTT", "LOSS", "LAST PROBE"], rows)
               if rows else "no managed uplinks")
    out.append("")
    sas = view.get("sas") if isinstance(view.get("sas"), list) else []
    rows = [[str(sa.get("name", "-")), str(sa.get("state", "-")),
             f"{sa.get('local', '?')}:{sa.get('local_port', '?')} -> {sa.get('remote', '?')}:{sa.get('remote_port', '?')}",
             str(sa.get("uplink") or "-"), ", ".join(sa.get("vips") or []) or "-"] for sa in sas]
    out.append(table(["SA", "STATE", "ENDPOINTS", "UPLINK", "VIRTUAL IP"], rows) if rows else "no IKE_SA")
    moves = view.get("moves") if isinstance(view.get("moves"), list) else []
    if moves:
        out.append("")
        out.append("last moves:")
        out.extend(f"  {move(m, now)}" for m in moves[-5:])
    return "\n".join(out)


def move(m: dict, now: Any) -> str:
    src = m.get("from", {}).get("uplink", "?") if isinstance(m.get("from"), dict) else "-"
    dst = m.get("to", {}).get("uplink", "?") if isinstance(m.get("to"), dict) else "?"
    t0 = m.get("decided_at")
    steps = []
    for key, label in (("route_set_at", "route"), ("ike_update_at", "ike-update"),
                       ("child_rekey_at", "child-rekey"), ("confirmed_at", "confirmed")):
        t = m.get(key)
        if isinstance(t, (int, float)) and isinstance(t0, (int, float)):
            steps.append(f"{label} +{(t - t0) * 1000:.0f} ms")
    outcome = m.get("outcome") or "in progress"
    took = f" in {m['took']:.2f} s" if isinstance(m.get("took"), (int, float)) else ""
    manual = " (manual)" if m.get("manual") else ""
    timing = f" [{', '.join(steps)}]" if steps else ""
    return f"{_ago(t0, now)}: {src} -> {dst}{manual}: {outcome}{took}{timing}: {m.get('reason', '')}"


def not_ok(view: dict) -> str | None:
    """Why `status` exits 1: None when an SA is established on an uplink that is not down."""
    sas = view.get("sas") if isinstance(view.get("sas"), list) else []
    established = [sa for sa in sas if str(sa.get("state", "")).upper() == "ESTABLISHED"]
    if not established:
        return "no established IKE_SA"
    uplinks = view.get("uplinks") if isinstance(view.get("uplinks"), dict) else {}
    for sa in established:
        up = uplinks.get(sa.get("uplink")) or {}
        if up.get("health") == "down":
            return f"IKE_SA {sa.get('name')} sits on {sa.get('uplink')}, which is down"
    return None


def paths(reply: dict) -> str:
    items = reply.get("paths") if isinstance(reply.get("paths"), list) else []
    counters = reply.get("probe_counters") if isinstance(reply.get("probe_counters"), dict) else {}
    uplinks = reply.get("uplinks") if isinstance(reply.get("uplinks"), dict) else {}
    rows = []
    for p in items:
        path = p.get("path") if isinstance(p.get("path"), dict) else {}
        up = uplinks.get(path.get("uplink"), {})
        budget = up.get("monthly_budget_bytes")
        month = _bytes(p.get("probe_bytes_month")) + (f" / {_bytes(budget)}" if budget else "")
        wire = counters.get(p.get("id"), {})
        wire_bytes = (wire.get("tx_bytes", 0) + wire.get("rx_bytes", 0)) if wire else None
        rows.append([str(p.get("id", "-")), str(p.get("role", "-")), str(p.get("health", "-")),
                     _ms(p.get("srtt", p.get("rtt"))), _pct(p.get("loss")), _ms(p.get("timeout")),
                     _ago(p.get("last_probe"), reply.get("now")), month, _bytes(wire_bytes)])
    if not rows:
        return "no paths yet (no managed uplink with an address, or no IKE_SA to a gateway)"
    return table(["PATH", "ROLE", "HEALTH", "RTT", "LOSS", "TIMEOUT", "LAST PROBE", "BYTES THIS MONTH",
                  "ON THE WIRE"], rows)


def event(e: dict) -> str:
    return f"{e.get('time', '-')} #{e.get('seq', '-')} {e.get('kind', '-')}: {e.get('message', '')}"


def switch(req: dict, reply: dict) -> str:
    if reply.get("message"):
        return str(reply["message"])
    notes = [n.get("message", "") for n in reply.get("notes", []) if isinstance(n, dict)]
    if notes:
        return "\n".join(notes)
    if req.get("auto"):
        return "override ended: the policy decides again"
    duration = f" for {req['for']:.0f} s" if req.get("for") else " until `mobikectl switch --auto`"
    return f"switch to {req['uplink']} requested{duration}{' (forced)' if req.get('force') else ''}"


def reload(req: dict, reply: dict) -> str:
    if reply.get("message"):
        return str(reply["message"])
    source = reply.get("policy") or req.get("policy") or "(the daemon's own policy file)"
    return f"policy {source} loaded"
