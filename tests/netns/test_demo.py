"""`mobikectl demo` as a user runs it: a subprocess, exit 0, the move to wwan0 and the
failback to wlan0 in its output, nothing left behind."""

import json
import os
import subprocess
import sys

from mobikectl.lab.netns import list_namespaces


def _demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    name = f"dm{os.getpid()}"
    proc = subprocess.run([sys.executable, "-m", "mobikectl", "demo", "--name", name, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert not [ns for ns in list_namespaces() if ns.startswith(f"mk-{name}-")], "the demo left namespaces"
    return proc


def test_demo_shows_failover_and_failback(lab_env):
    proc = _demo()
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "FAULT: wlan0 blackholed" in out
    assert "ike-update: charon moved the IKE_SA to 100.64.30.2 (wwan0)" in out
    assert "ike-update: charon moved the IKE_SA to 192.168.20.2 (wlan0)" in out
    assert "the same IKE SPIs" in out
    assert "moved to wwan0 with MOBIKE" in out and "failback to wlan0" in out
    assert "lab down" in out


def test_demo_json(lab_env):
    proc = _demo("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["ok"] is True
    assert doc["failover"]["to"] == "wwan0" and doc["failover"]["same_ike_sa"] is True
    assert doc["failover"]["gap_ms"] < 5000
    assert doc["failback"]["to"] == "wlan0"
    assert any(e["what"] == "decision" for e in doc["failover"]["timeline"])
