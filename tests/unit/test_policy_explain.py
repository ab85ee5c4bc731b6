"""`policy explain`: the pure explanation (table-driven) and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobikectl.cli import main
from mobikectl.errors import DataError
from mobikectl.policy.explain import explain, parse_state
from mobikectl.policy.load import load_policy
from mobikectl.policy.model import Policy

ROOT = Path(__file__).resolve().parents[2]


def up(addr: str, since: float = 0.0, **kw) -> dict:
    doc = {"addresses": [addr], "admin_up": True, "carrier": True, "health": "up", "rtt": 0.01, "loss": 0.0,
           "up_since": since}
    doc.update(kw)
    return doc


def state(current: str | None, now: float = 1000.0, override=None, **uplinks) -> dict:
    return {"schema": 1, "now": now, "uplinks": uplinks, "chosen": current, "override": override,
            "sas": [{"name": "home", "uplink": current, "local": "x", "remote": "192.0.2.1"}] if current else []}


def pick(doc: dict, policy: Policy | None = None):
    return explain(policy or Policy(), parse_state(doc, "state.json"))


E, W, C = "10.1.0.2", "192.168.1.2", "100.64.0.2"


@pytest.mark.parametrize("doc, chosen, action, words", [
    # all up, on the best: stay
    (state("eth0", eth0=up(E), wlan0=up(W), wwan0=up(C)), "eth0", "stay", "no usable uplink ranks higher"),
    # the current uplink lost carrier: move to the next in order
    (state("eth0", eth0=up(E, carrier=False, health="down"), wlan0=up(W), wwan0=up(C)),
     "wlan0", "move", "eth0 is not usable (no carrier)"),
    # blackholed (down) dock and Wi-Fi: the metered last resort
    (state("wlan0", eth0=up(E, health="down"), wlan0=up(W, health="down"), wwan0=up(C)),
     "wwan0", "move", "wwan0 is the best usable uplink (rank 3, metered)"),
    # a suspect current uplink stays while the burst runs
    (state("wlan0", eth0=up(E, health="down"), wlan0=up(W, health="suspect"), wwan0=up(C)),
     "wlan0", "stay", "confirming burst"),
    # failback before the hold-down: stay
    (state("wlan0", now=1000, eth0=up(E, since=990), wlan0=up(W), wwan0=up(C)),
     "wlan0", "stay", "held down (up for 10s of hold_down 30s: 20s to go)"),
    # failback after the hold-down
    (state("wlan0", now=1000, eth0=up(E, since=960), wlan0=up(W), wwan0=up(C)),
     "eth0", "move", "fail back: eth0 ranks higher than wlan0"),
    # nothing usable: stay (no thrashing)
    (state("wlan0", eth0=up(E, health="down"), wlan0=up(W, admin_up=False, health="down")),
     "wlan0", "stay", "wlan0 is not usable (admin down) but no other uplink is usable: staying"),
    (state(None, eth0=up(E, health="down"), wlan0=up(W, admin_up=False, health="down")),
     None, "none", "the SA is on no uplink and no uplink is usable: eth0: health down; wlan0: admin down"),
    # an UNKNOWN current uplink is not left for a worse one
    (state("wlan0", eth0=up(E, health="down"), wlan0=up(W, health="unknown"), wwan0=up(C)),
     "wlan0", "stay", "wlan0 is unknown; no better uplink is usable"),
    # the last move was too recent for a failback
    (dict(state("wlan0", now=1000, eth0=up(E, since=900), wlan0=up(W)), last_move=990),
     "wlan0", "stay", "less than min_dwell ago: 20s to go"),
    # an up uplink without an address is not usable
    (state(None, eth0=up(E, addresses=[]), wlan0=up(W)), "wlan0", "move", "the SA is on no uplink"),
    # unmanaged devices never count
    (state("wlan0", tun0=up("10.9.9.9"), wlan0=up(W)), "wlan0", "stay", "no usable uplink ranks higher"),
    # a manual switch to a usable uplink wins
    (state("eth0", override={"uplink": "wwan0", "until": None, "force": False}, eth0=up(E), wwan0=up(C)),
     "wwan0", "move", "manual switch to wwan0"),
    # ... but not to a dead one, unless forced
    (state("eth0", override={"uplink": "wwan0", "force": False}, eth0=up(E), wwan0=up(C, health="down")),
     "eth0", "stay", "manual switch to wwan0 not honoured (health down)"),
    (state("eth0", override={"uplink": "wwan0", "force": True}, eth0=up(E), wwan0=up(C, health="down")),
     "wwan0", "move", "forced manual switch"),
])
def test_explain_table(doc, chosen, action, words):
    result = pick(doc)
    assert (result.pick, result.action) == (chosen, action), result.reason
    assert words in result.reason


def test_limits_make_an_answering_uplink_unusable():
    policy = load_policy(ROOT / "policies" / "wifi-first.toml")  # wlan: max_loss 25%, max_rtt 1s
    result = pick(state("wlan0", wlan0=up(W, loss=0.4), eth0=up(E)), policy)
    assert result.pick == "eth0"
    assert "loss 40% over max_loss 25%" in result.reason


def test_metered_is_last_resort_even_if_ordered_first(tmp_path):
    text = ('schema = 1\n[uplinks.cell]\nmatch = ["wwan*"]\nclass = "wwan"\n'
            '[uplinks.wifi]\nmatch = ["wlan*"]\nclass = "wlan"\n[order]\nprefer = ["cell", "wifi"]\n')
    from mobikectl.policy.load import parse_policy

    result = pick(state(None, wwan0=up(C), wlan0=up(W)), parse_policy(text, "p.toml"))
    assert result.pick == "wlan0"


def test_steps_for_each_uplink():
    result = pick(state("wlan0", now=1000, eth0=up(E, since=995), wlan0=up(W)))
    eth = next(v for v in result.verdicts if v.uplink == "eth0")
    assert [s.check for s in eth.steps] == ["managed", "class", "metered", "rank", "link", "health", "limits",
                                            "hold-down"]
    assert eth.steps[-1].ok is False
    assert eth.steps[0].detail == 'matches "eth*" of uplink dock'


def test_state_errors_are_all_reported():
    doc = {"uplinks": {"eth0": {"health": "great", "carrier": "yes", "rtt": -1}}, "now": "yesterday"}
    with pytest.raises(DataError) as caught:
        parse_state(doc, "s.json")
    assert caught.value.problems == [
        's.json: now: expected seconds or an ISO 8601 time, got "yesterday"',
        's.json: uplinks.eth0.carrier: expected true or false, got "yes"',
        's.json: uplinks.eth0.health: expected one of "unknown", "up", "suspect", "down", got "great"',
        's.json: uplinks.eth0.rtt: expected a number >= 0 or null, got -1',
    ]


def test_iso_times_work_too():
    doc = state("wlan0", eth0=up(E), wlan0=up(W))
    doc["now"] = "2025-01-01T00:01:00Z"
    doc["uplinks"]["eth0"]["up_since"] = "2025-01-01T00:00:45Z"
    result = pick(doc)
    assert result.pick == "wlan0" and "15s to go" in result.reason


# --- the command -----------------------------------------------------------------------------

def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def state_file(tmp_path) -> str:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state("eth0", eth0=up(E, carrier=False, health="down"), wlan0=up(W), wwan0=up(C))))
    return str(path)


def test_explain_text(state_file):
    result = run("policy", "explain", "--state", state_file)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "eth0 (dock) [current]" in out and "  link      NO  no carrier" in out
    assert out.splitlines()[-1] == "pick: move to wlan0: eth0 is not usable (no carrier): wlan0 is the best " \
                                   "usable uplink (rank 2)"


def test_explain_json(state_file):
    policy = str(ROOT / "policies" / "wifi-first.toml")
    result = run("policy", "explain", "--policy", policy, "--state", state_file, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["policy"] == policy and doc["state"] == state_file
    assert (doc["pick"], doc["action"], doc["current"]) == ("wlan0", "move", "eth0")
    wlan = next(u for u in doc["uplinks"] if u["uplink"] == "wlan0")
    assert wlan["rank"] == 1 and wlan["candidate"] is True and wlan["steps"][0]["check"] == "managed"


@pytest.mark.parametrize("content, message", [
    ("{not json", "line 1, column 2: invalid JSON"),
    ('{"uplinks": 3}', "uplinks: expected an object of uplinks by device name, got 3"),
    ('{"schema": 2, "uplinks": {}}', "schema: expected 1, got 2"),
])
def test_explain_bad_state_exits_65(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    result = run("policy", "explain", "--state", str(path))
    assert result.exit_code == 65
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_explain_missing_state_file(tmp_path):
    result = run("policy", "explain", "--state", str(tmp_path / "none.json"))
    assert result.exit_code == 65 and "cannot read: No such file or directory" in result.stderr


def test_explain_bad_policy_exits_65(tmp_path, state_file):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n[failback]\nhold_down = -1\nmin_dwell = \"x\"\n")
    result = run("policy", "explain", "--policy", str(bad), "--state", state_file)
    assert result.exit_code == 65
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"mobikectl: error: {bad}: failback.") for line in lines)


def test_explain_state_and_socket_is_a_usage_error(state_file):
    result = run("policy", "explain", "--state", state_file, "--socket", "/nonexistent.sock")
    assert result.exit_code == 2


def test_explain_unreachable_daemon_exits_69(tmp_path):
    result = run("policy", "explain", "--socket", str(tmp_path / "no.sock"))
    assert result.exit_code == 69
    assert "cannot reach the" in result.stderr and str(tmp_path / "no.sock") in result.stderr
    assert "Traceback" not in result.output


def _world_module():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("scenario_world", ROOT / "tests" / "scenarios" / "world.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scenario_world", module)
    spec.loader.exec_module(module)
    return module


def engine_view(faults: dict[str, float] | None = None) -> dict:
    """The real engine's view after 40 s of a world where every uplink answers (except the
    uplinks in `faults`, blackholed from that time): the state format explain must read."""
    World = _world_module().World
    world = World(faults={name: [("blackhole", at)] for name, at in (faults or {}).items()})
    engine = world.run(until=40.0)
    return json.loads(json.dumps(engine.view()))


def test_explain_reads_the_engine_view():
    state_ = parse_state(engine_view(), "daemon")
    assert {u.name for u in state_.uplinks} == {"eth0", "wlan0", "wwan0"}
    assert state_.current == "eth0" and 39 < state_.now <= 40.0
    result = explain(Policy(), state_)
    assert (result.pick, result.action) == ("eth0", "stay"), result.reason


def test_explain_after_a_blackhole_agrees_with_the_engine():
    view = engine_view({"eth0": 20.0})
    result = explain(Policy(), parse_state(view, "daemon"))
    assert view["chosen"]["uplink"] == "wlan0"  # the engine moved
    assert (result.pick, result.action) == ("wlan0", "stay"), result.reason
    eth = next(v for v in result.verdicts if v.uplink == "eth0")
    assert not eth.candidate and eth.why_not == "health down"


def test_explain_over_the_socket_with_a_fake_daemon(monkeypatch):
    import mobikectl.adapters.control_client as client

    seen = {}

    def fake_request(path, req, **kw):
        seen.update(path=path, req=req)
        return {"schema": 1, "ok": True, "state": engine_view()}

    monkeypatch.setattr(client, "request", fake_request)
    result = run("policy", "explain", "--socket", "/run/x.sock", "--json")
    assert result.exit_code == 0, result.output
    assert seen == {"path": "/run/x.sock", "req": {"cmd": "state"}}
    doc = json.loads(result.stdout)
    assert doc["state"] == "daemon at /run/x.sock" and doc["pick"] == "eth0"
