"""`mobikectl bench` smoke run: one link-down trial each for charon alone and the
controller, JSON shape, exit 0, the lab removed. The figures come from full runs
(docs/benchmark.md), not from this test."""

import json
import os
import subprocess
import sys

from mobikectl.lab.netns import list_namespaces


def test_bench_smoke_json(lab_env, tmp_path):
    name = f"bs{os.getpid()}"
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "mobikectl", "bench", "--trials", "1", "--faults", "down",
                           "--json", "--name", name, "--sim-days", "0.01", "--out", str(out)],
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not [ns for ns in list_namespaces() if ns.startswith(f"mk-{name}-")], "the bench left namespaces"
    doc = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == doc
    assert doc["schema"] == 1 and doc["trials"] == 1
    down = doc["faults"]["down"]
    assert down["controller"]["trials"] == 1 and down["alone"]["trials"] == 1
    assert set(down) >= {"ratio", "target", "met", "distance", "phases_median_s"}
    assert list(doc["faults"]) == ["down"]
    assert {tr["setup"] for tr in doc["trials_detail"]} == {"controller", "alone"}
    assert doc["probe_floor"]["class"] == "wlan" and doc["probe_floor"]["best_s"] > 0
    assert doc["usage"]["controller"]["rss_kb"] > 0 and doc["usage"]["controller"]["cpu_percent"] is not None
    assert doc["usage"]["charon_alone"]["rss_kb"] > 0
    assert set(doc["probes"]["rates"]) == {"wlan0", "wwan0"}
    assert doc["probes"]["idle_standby"]["standby_interval_s"] == 30.0
    assert doc["false_moves"]["days"] == 0.01 and "false_moves_per_day" in doc["false_moves"]
    assert "controller: down 1/1" in proc.stderr  # progress on stderr
    assert os.path.exists(doc["daemon_log"])
    os.unlink(doc["daemon_log"])
