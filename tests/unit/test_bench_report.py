"""The benchmark's pure parts: targets, summaries, the document and the table; the
timeline from recorded events; lost pings by sequence number; the TOML writer."""

import tomllib

from mobikectl.bench import report, seqping, timeline
from mobikectl.bench.figures import summarize
from mobikectl.bench.run import toml_dump
from mobikectl.bench.trials import Trial


def test_blackhole_target_met_and_missed():
    assert report.gap_target("blackhole", summarize([0.6, 0.7, 0.9]), None)["met"] is True
    miss = report.gap_target("blackhole", summarize([0.9, 1.2, 1.7]), None)
    assert miss["met"] is False and miss["distance"] == "median +0.200 s; max +0.200 s"
    assert report.gap_target("blackhole", summarize([0.6, None]), None)["distance"] == "1 not recovered"


def test_carrier_and_down_targets():
    assert report.gap_target("carrier", summarize([0.12, 0.13]), None)["met"] is True
    assert report.gap_target("carrier", summarize([0.30, 0.31]), None)["distance"] == "median +0.055 s"
    alone = summarize([0.110, 0.120, 0.130])
    assert report.gap_target("down", summarize([0.16, 0.17]), alone)["met"] is True
    miss = report.gap_target("down", summarize([0.2, 0.2]), alone)
    assert miss["met"] is False and miss["distance"] == "median +0.030 s"
    assert report.gap_target("down", summarize([0.2]), None)["met"] is None


def test_failback_summary_and_target():
    trials = [Trial("controller", "failback", i, lost=lost, sent=600, move_s=0.11, failed_back=True)
              for i, lost in enumerate([0, 0, 2], 1)]
    s = report.failback_summary(trials)
    assert (s["lost_total"], s["lost_max"], s["trials_losing_pings"], s["sent"]) == (2, 2, 1, 1800)
    t = report.failback_target(s)
    assert t["met"] is False and t["distance"] == "2 pings lost in 1 trials (max 2)"
    alone = report.failback_summary([Trial("alone", "failback", 1, lost=0, sent=700, failed_back=False)])
    assert alone["no_failback"] == 1


def test_document_and_table():
    trials = [Trial("controller", "blackhole", i, gap_s=g, phases={"decision_s": 0.5, "ike_update_s": 0.6,
                                                                   "traffic_s": g})
              for i, g in enumerate([0.6, 0.7, 0.65], 1)]
    trials += [Trial("alone", "blackhole", 1, gap_s=None)]
    trials += [Trial("controller", "failback", 1, lost=0, sent=700, move_s=0.11, failed_back=True),
               Trial("alone", "failback", 1, lost=0, sent=700, failed_back=False)]
    doc = report.build(trials, ["blackhole", "failback"], date="2026-12-03T00:00:00Z",
                       machine={"summary": "test"}, policy="policies/default.toml",
                       probe_floor={"class": "wlan", "best_s": 0.4, "worst_s": 0.5},
                       probes={"rates": {"wwan0": {"bytes_per_s": 3.2, "seconds": 100.0, "tx_packets": 9}}},
                       usage={"controller": {"rss_kb": 40960, "hwm_kb": 45056, "cpu_percent": 3.5, "cpu_s": 3.5,
                                             "wall_s": 100.0}},
                       false_moves={"loss": 0.03, "false_moves": 0, "days": 1.0, "false_moves_per_day": 0.0,
                                    "expected_false_downs_per_day": 0.03, **report.false_move_target(0.0)})
    assert doc["schema"] == 1
    bh = doc["faults"]["blackhole"]
    assert bh["controller"]["median_s"] == 0.65 and bh["alone"]["not_recovered"] == 1
    assert bh["ratio"] == "> 46×" and bh["met"] is True
    assert bh["phases_median_s"]["decision_s"] == 0.5
    assert doc["faults"]["failback"]["alone_text"] == "no failback" and doc["faults"]["failback"]["met"] is True
    text = report.render(doc)
    assert "blackhole" in text and "> 46×" in text and "no failback" in text
    assert "RSS 40.0 MiB" in text and "0.00/day" in text


def test_standby_and_false_move_targets():
    assert report.standby_target(14.5)["met"] is True
    assert report.standby_target(16.0)["distance"] == "+1.00 MB/month"
    assert report.false_move_target(1.5)["met"] is False


EVENTS = [
    {"kind": "probe", "time": "2026-12-03T17:19:55.751Z", "message": "wlan0:a>g: up -> suspect (2 probes lost in a row (timeout))",
     "data": {"uplink": "wlan0", "from": "up", "to": "suspect", "event": "fell"}},
    {"kind": "probe", "time": "2026-12-03T17:19:55.800Z", "message": "wwan0:b>g: up -> up (x)",
     "data": {"uplink": "wwan0", "from": "up", "to": "up"}},
    {"kind": "decision", "time": "2026-12-03T17:19:56.002Z", "message": "wlan0 is down; wwan0 is the best healthy path",
     "data": {"to": {"uplink": "wwan0"}}},
    {"kind": "decision", "time": "2026-12-03T17:19:56.109Z", "message": "wwan0 is healthy and preferred",
     "data": {"stay": True}},
]


def test_timeline_from_events_and_move():
    from datetime import datetime

    wall0 = datetime.fromisoformat("2026-12-03T17:19:55.500+00:00").timestamp()
    offset = wall0 - 100.0  # the fault at monotonic 100.0 is wall 17:19:55.500
    move = {"to": {"uplink": "wwan0", "local": "100.64.30.2", "gateway": "203.0.113.10"}, "decided_at": 100.502,
            "route_set_at": 100.505, "ike_update_at": 100.609, "child_rekey_at": 100.610,
            "confirmed_at": 100.609, "took": 0.107, "outcome": "confirmed"}
    report_ = {"max_gap_ms": 640.0, "max_gap_from_ms": -10.0, "max_gap_open": False}
    entries = timeline.build(EVENTS, offset, 100.0, move, report_, ("wlan0",))
    whats = [e.what for e in entries]
    assert whats == ["suspect", "decision", "route", "ike-update", "confirmed", "rekey", "traffic"]
    ph = timeline.phases(entries)
    assert round(ph["suspect_s"], 3) == 0.251 and round(ph["decision_s"], 3) == 0.502
    assert round(ph["traffic_s"], 3) == 0.63
    lines = timeline.render(entries)
    assert lines[0].strip().startswith("t+  251 ms")


def test_lost_pings_by_sequence():
    out = "\n".join(f"[1796318316.{i:06d}] 64 bytes from 10.200.0.10: icmp_seq={i} ttl=63 time=0.5 ms"
                    for i in (1, 2, 3, 5, 6))
    out += "\n\n--- 10.200.0.10 ping statistics ---\n7 packets transmitted, 5 received, 28% packet loss\n"
    r = seqping.parse(out, 20)
    assert (r["sent"], r["received"], r["lost"], r["lost_seqs"], r["unanswered_tail"]) == (7, 5, 1, [4], 1)
    out_dead = out.replace("7 packets transmitted", "60 packets transmitted")
    assert seqping.parse(out_dead, 20)["lost"] == 1 + 54  # a tail longer than a second counts as lost


def test_toml_dump_round_trips_a_policy():
    doc = {"schema": 1, "description": 'a "lab"', "uplinks": {"wifi": {"match": ["wlan*"], "class": "wlan"}},
           "failback": {"hold_down": "10s", "min_dwell": "10s"}, "classes": {"wlan": {"probe": {"fall": 2}}}}
    assert tomllib.loads(toml_dump(doc)) == doc
