"""`mobikectl policy check` through click's runner: output, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobikectl.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "policies" / "default.toml")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def no_traceback(result) -> None:
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


@pytest.fixture
def bad(tmp_path) -> str:
    path = tmp_path / "bad.toml"
    path.write_text('schema = 1\n[classes.wwan.probe]\nfall = 0\n[failback]\nhold_dwon = "30s"\n')
    return str(path)


def test_check_good_files():
    files = [str(p) for p in sorted((ROOT / "policies").glob("*.toml"))]
    result = run("policy", "check", *files)
    assert result.exit_code == 0, result.output
    assert f"{DEFAULT}: ok (3 uplinks, prefer dock > wifi > cell)" in result.stdout.splitlines()
    assert len(result.stdout.splitlines()) == len(files)
    assert result.stderr == ""


def test_check_bad_file_prints_every_problem_and_exits_65(bad):
    result = run("policy", "check", DEFAULT, bad)
    assert result.exit_code == 65
    assert result.stdout.splitlines() == [
        f"{DEFAULT}: ok (3 uplinks, prefer dock > wifi > cell)",
        f"{bad}: classes.wwan.probe.fall: expected an integer >= 1, got 0",
        f"{bad}: failback.hold_dwon: unknown key (expected one of: hold_down, min_dwell)",
    ]
    no_traceback(result)


def test_check_missing_file_is_bad_data(tmp_path):
    missing = str(tmp_path / "nope.toml")
    result = run("policy", "check", missing)
    assert result.exit_code == 65
    assert result.stdout.strip() == f"{missing}: cannot read: No such file or directory (check the path and its permissions)"
    no_traceback(result)


def test_check_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "syntax.toml"
    path.write_text('schema = 1\n[failback]\nhold_down = 30s\n')
    result = run("policy", "check", str(path))
    assert result.exit_code == 65
    assert result.stdout.startswith(f"{path}: line 3, column 15: TOML syntax error: ")
    no_traceback(result)


def test_check_json(bad):
    result = run("policy", "check", "--json", DEFAULT, bad)
    assert result.exit_code == 65
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1
    good, wrong = doc["files"]
    assert good == {"file": DEFAULT, "ok": True, "problems": [], "uplinks": 3, "prefer": ["dock", "wifi", "cell"],
                    "summary": "3 uplinks, prefer dock > wifi > cell"}
    assert wrong["file"] == bad and wrong["ok"] is False and len(wrong["problems"]) == 2


def test_check_json_all_ok_exits_0():
    result = run("policy", "check", "--json", DEFAULT)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["files"][0]["ok"] is True


def test_check_needs_a_file_usage_error():
    result = run("policy", "check")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# --- simulate --------------------------------------------------------------------------------

SCENARIO = ROOT / "tests" / "scenarios" / "blackhole-failover" / "inputs.jsonl"


def test_simulate_text():
    result = run("policy", "simulate", DEFAULT, "--inputs", str(SCENARIO))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    steer = [line for line in lines if "SteerTo" in line]
    assert len(steer) == 2
    assert "wlan0:10.1.0.2>192.0.2.1: eth0 is down; wlan0 is the best healthy path" in steer[1]
    assert any("suspect -> down" in line for line in lines)  # the notes explain the move


def test_simulate_json_orders_only():
    result = run("policy", "simulate", DEFAULT, "--inputs", str(SCENARIO), "--json", "--orders-only")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["policy"] == DEFAULT and doc["inputs"] == str(SCENARIO)
    assert [(d["order"], d["uplink"]) for d in doc["decisions"]] == [("SteerTo", "eth0"), ("SteerTo", "wlan0")]
    assert 10.2 < doc["decisions"][1]["at"] < 10.8
    assert set(doc["decisions"][1]) == {"at", "order", "kind", "uplink", "target", "reason"}


def test_simulate_uses_the_given_policy(tmp_path):
    # Open loop: the recorded facts (answers to the first run's probes, charon's move) come
    # at their recorded times whatever the policy; the decisions about them differ.
    slow = tmp_path / "slow.toml"
    slow.write_text('schema = 1\n[classes.ethernet.probe]\nfall = 10\n')
    default = json.loads(run("policy", "simulate", DEFAULT, "--inputs", str(SCENARIO), "--json").stdout)
    result = run("policy", "simulate", str(slow), "--inputs", str(SCENARIO), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["policy"] == str(slow)
    assert not any(d["reason"].startswith("eth0 is down") for d in doc["decisions"] if d["at"] < 10.6)
    assert any(d["reason"].startswith("eth0 is down") for d in default["decisions"])


def test_simulate_bad_recording_names_the_line(tmp_path):
    rec = tmp_path / "rec.jsonl"
    good = SCENARIO.read_text().splitlines()[0]
    rec.write_text(good + "\n" + '{"schema": 1, "now": 1, "fact": {"type": "ProbeReplied", "seq": "7"}}\n')
    result = run("policy", "simulate", DEFAULT, "--inputs", str(rec))
    assert result.exit_code == 65
    assert result.stderr.startswith(f"mobikectl: error: {rec}: line 2: ")
    assert "Traceback" not in result.output


def test_simulate_missing_recording_and_bad_policy(tmp_path, bad):
    result = run("policy", "simulate", DEFAULT, "--inputs", str(tmp_path / "none.jsonl"))
    assert result.exit_code == 65 and "cannot read: No such file or directory" in result.stderr
    result = run("policy", "simulate", bad, "--inputs", str(SCENARIO))
    assert result.exit_code == 65 and len(result.stderr.splitlines()) == 2


def test_simulate_needs_inputs():
    result = run("policy", "simulate", DEFAULT)
    assert result.exit_code == 2 and "--inputs" in result.stderr
