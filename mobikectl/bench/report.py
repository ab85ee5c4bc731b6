"""The benchmark's results: per fault summaries, ratios and targets (pure), the JSON
document (`"schema": 1`) and the text table.

Targets at the shipped defaults on a low-RTT active uplink (issue 3):
    blackhole   median <= 1.0 s and max <= 1.5 s
    carrier     median <= 0.25 s
    down        median no slower than charon alone's median + 0.05 s
    failback    no ping lost at 20 Hz (in any trial)
    standby     an idle metered standby uplink <= 15 MB a month of probes
    false moves <= 1 a day at 3 % random loss each way on the active uplink
"""

from __future__ import annotations

import statistics

from mobikectl.bench.figures import Summary, fmt_s, ratio, summarize
from mobikectl.bench.trials import DEADLINE, Trial

SCHEMA = 1
FAULT_ORDER = ("blackhole", "carrier", "down", "failback")
STANDBY_MB_TARGET = 15.0
FALSE_MOVES_TARGET = 1.0


def gap_target(fault: str, ctl: Summary, alone: Summary | None) -> dict:
    """{"target": text, "met": bool|None, "distance": text} for a gap fault."""
    med, mx = ctl.median, ctl.max
    if fault == "blackhole":
        text = "median <= 1.0 s, max <= 1.5 s, all recovered"
        if med is None:
            return {"target": text, "met": False, "distance": "never recovered"}
        over = [f"median {med - 1.0:+.3f} s" if med > 1.0 else "", f"max {mx - 1.5:+.3f} s" if mx > 1.5 else "",
                f"{ctl.not_recovered} not recovered" if ctl.not_recovered else ""]
        over = [o for o in over if o]
        return {"target": text, "met": not over, "distance": "; ".join(over)}
    if fault == "carrier":
        text = "median <= 0.25 s"
        if med is None:
            return {"target": text, "met": False, "distance": "never recovered"}
        met = med <= 0.25 and not ctl.not_recovered
        return {"target": text, "met": met, "distance": "" if met else f"median {med - 0.25:+.3f} s"}
    if fault == "down":
        if alone is None or alone.median is None:
            return {"target": "median <= charon alone + 0.05 s", "met": None, "distance": "no charon-alone median"}
        limit = alone.median + 0.05
        text = f"median <= charon alone + 0.05 s = {limit:.3f} s"
        if med is None:
            return {"target": text, "met": False, "distance": "never recovered"}
        met = med <= limit and not ctl.not_recovered
        return {"target": text, "met": met, "distance": "" if met else f"median {med - limit:+.3f} s"}
    return {"target": "", "met": None, "distance": ""}


def failback_summary(trials: list[Trial]) -> dict:
    lost = [tr.lost for tr in trials if tr.lost is not None]
    moves = [tr.move_s for tr in trials if tr.move_s is not None]
    back = sum(1 for tr in trials if tr.failed_back)
    return {"trials": len(trials), "failed_back": back, "no_failback": len(trials) - back,
            "lost_total": sum(lost) if lost else None, "lost_max": max(lost) if lost else None,
            "trials_losing_pings": sum(1 for x in lost if x > 0),
            "sent": sum(tr.sent or 0 for tr in trials),
            "move_median_s": statistics.median(moves) if moves else None, "move_max_s": max(moves) if moves else None}


def failback_target(ctl: dict) -> dict:
    text = "no ping lost at 20 Hz"
    if not ctl["trials"]:
        return {"target": text, "met": None, "distance": "not measured"}
    if ctl["no_failback"]:
        return {"target": text, "met": False, "distance": f"{ctl['no_failback']} trials without a failback"}
    met = ctl["lost_total"] == 0
    return {"target": text, "met": met,
            "distance": "" if met else f"{ctl['lost_total']} pings lost in {ctl['trials_losing_pings']} trials "
                                       f"(max {ctl['lost_max']})"}


def fault_section(fault: str, ctl_trials: list[Trial], alone_trials: list[Trial]) -> dict:
    if fault == "failback":
        ctl = failback_summary(ctl_trials)
        alone = failback_summary(alone_trials) if alone_trials else None
        return {"controller": ctl, "alone": alone, **failback_target(ctl),
                "alone_text": None if alone is None else ("no failback" if alone["no_failback"] else "fails back")}
    ctl = summarize([tr.gap_s for tr in ctl_trials])
    alone = summarize([tr.gap_s for tr in alone_trials]) if alone_trials else None
    phases = _phase_medians(ctl_trials)
    return {"controller": ctl.to_json(), "alone": alone.to_json() if alone else None,
            "ratio": ratio(alone, ctl, DEADLINE) if alone else "n/a",
            "phases_median_s": phases, **gap_target(fault, ctl, alone)}


def _phase_medians(trials: list[Trial]) -> dict:
    keys = sorted({k for tr in trials for k in tr.phases})
    out = {}
    for k in keys:
        vals = [tr.phases[k] for tr in trials if tr.phases.get(k) is not None]
        out[k] = round(statistics.median(vals), 4) if vals else None
    return out


def standby_target(mb_month: float | None) -> dict:
    if mb_month is None:
        return {"target": f"<= {STANDBY_MB_TARGET:g} MB/month", "met": None, "distance": "not measured"}
    met = mb_month <= STANDBY_MB_TARGET
    return {"target": f"<= {STANDBY_MB_TARGET:g} MB/month", "met": met,
            "distance": "" if met else f"{mb_month - STANDBY_MB_TARGET:+.2f} MB/month"}


def false_move_target(per_day: float | None) -> dict:
    if per_day is None:
        return {"target": "<= 1/day", "met": None, "distance": "not simulated"}
    met = per_day <= FALSE_MOVES_TARGET
    return {"target": "<= 1/day", "met": met, "distance": "" if met else f"{per_day - FALSE_MOVES_TARGET:+.2f}/day"}


def build(results: list[Trial], faults: list[str], **sections) -> dict:
    doc = {"schema": SCHEMA, **sections, "faults": {}}
    for fault in [f for f in FAULT_ORDER if f in faults]:
        doc["faults"][fault] = fault_section(fault, [tr for tr in results if tr.fault == fault and tr.setup == "controller"],
                                             [tr for tr in results if tr.fault == fault and tr.setup == "alone"])
    doc["trials_detail"] = [tr.to_json() for tr in results]
    return doc


# --- text ------------------------------------------------------------------------------------
def _met(sec: dict) -> str:
    if sec.get("met") is None:
        return f"- ({sec.get('distance') or 'n/a'})"
    return "met" if sec["met"] else f"MISSED by {sec['distance']}"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def render(doc: dict) -> str:
    widths = [10, 13, 6, 8, 8, 8, 8]
    head = ["fault", "setup", "trials", "median", "max", "not rec", "ratio"]
    lines = [f"mobikectl bench: {doc.get('date', '')} on {doc.get('machine', {}).get('summary', '')}",
             f"policy {doc.get('policy')}; gap = longest silence of a 100 Hz ping through the tunnel after the "
             f"fault; not recovered = no traffic within {DEADLINE:g} s", "",
             _row(head, widths) + "  target / result", _row(["-" * w for w in widths], widths)]
    for fault, sec in doc["faults"].items():
        if fault == "failback":
            c = sec["controller"]
            lines.append(_row([fault, "controller", str(c["trials"]),
                               fmt_s(c["move_median_s"]), fmt_s(c["move_max_s"]), str(c["no_failback"]), ""], widths)
                         + f"  {sec['target']}: lost {c['lost_total']} of {c['sent']} (max {c['lost_max']}/trial)"
                         f" -> {_met(sec)}")
            if sec.get("alone"):
                a = sec["alone"]
                lines.append(_row(["", "charon alone", str(a["trials"]), "-", "-", str(a["no_failback"]), ""], widths)
                             + f"  {sec['alone_text']}")
            continue
        c, a = sec["controller"], sec["alone"]
        lines.append(_row([fault, "controller", str(c["trials"]), fmt_s(c["median_s"]), fmt_s(c["max_s"]),
                           str(c["not_recovered"]), sec["ratio"]], widths) + f"  {sec['target']} -> {_met(sec)}")
        if a:
            lines.append(_row(["", "charon alone", str(a["trials"]), fmt_s(a["median_s"]), fmt_s(a["max_s"]),
                               str(a["not_recovered"]), ""], widths)
                         + ("  not recovered" if a["not_recovered"] == a["trials"] else ""))
        ph = sec.get("phases_median_s") or {}
        if ph.get("decision_s") is not None:
            lines.append(f"{'':12}where the controller's time goes (medians after the fault): decision "
                         f"{fmt_s(ph.get('decision_s'))}, ike-update {fmt_s(ph.get('ike_update_s'))}, "
                         f"traffic back {fmt_s(ph.get('traffic_s'))}")
    lines.append("")
    pf = doc.get("probe_floor")
    if pf:
        lines.append(f"probe floor (active class {pf['class']}): detection {pf['best_s']:.3f}-{pf['worst_s']:.3f} s "
                     f"before charon's move (~0.1 s roam delay + 1 RTT)")
    pr = doc.get("probes", {})
    for up, r in (pr.get("rates") or {}).items():
        lines.append(f"probe traffic {up}: {r['bytes_per_s']} B/s over {r['seconds']} s of the run "
                     f"({r['tx_packets']} probes; bursts, rises and data probes included)")
    st = pr.get("idle_standby") or {}
    if st:
        lines.append(f"idle metered standby {st.get('uplink')}: {st.get('mb_per_month')} MB/month "
                     f"({st.get('bytes_per_probe')} B a probe and answer every {st.get('standby_interval_s')} s; "
                     f"engine's accounting {st.get('engine_mb_per_month')} MB) -> {_met(st)}")
    for who, u in (doc.get("usage") or {}).items():
        if u:
            lines.append(f"{who}: RSS {u['rss_kb'] / 1024:.1f} MiB (peak {u['hwm_kb'] / 1024:.1f} MiB), "
                         f"CPU {u['cpu_percent']}% of a core ({u['cpu_s']} s over {u['wall_s']} s)")
    if doc.get("daemon_log"):
        lines.append(f"controller log: {doc['daemon_log']}")
    fm = doc.get("false_moves")
    if fm:
        lines.append(f"false moves at {fm['loss'] * 100:g}% loss each way: {fm['false_moves']} in "
                     f"{fm['days']:g} simulated days = {fm['false_moves_per_day']:.2f}/day (expected "
                     f"{fm['expected_false_downs_per_day']:.3f}/day) -> {_met(fm)}")
    return "\n".join(lines)
