"""The daemon commands through click's runner, against a fake daemon at the socket seam
(the real ControlServer with a canned view and a recording submit)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from click.testing import CliRunner

from mobikectl.cli import main
from mobikectl.cli_daemon import parse_duration, socket_for
from mobikectl.errors import DataError

from test_control import USER, FakeDaemon  # noqa: E402  (tests/unit is on sys.path)

VIEW = {
    "now": 1000.0,
    "policy": "policies/default.toml",
    "charon": {"connected": True, "awaiting_snapshot": False},
    "daemon": {"pid": 4242, "started": "2026-01-01T10:00:00.000Z", "policy": "policies/default.toml"},
    "uplinks": {
        "wlan0": {"class": "wlan", "metered": False, "rank": 1, "admin_up": True, "carrier": True,
                  "addresses": ["10.1.0.2"], "health": "up", "rtt": 0.0123, "loss": 0.0, "last_probe": 999.5},
        "wwan0": {"class": "wwan", "metered": True, "rank": 2, "admin_up": True, "carrier": True,
                  "addresses": ["10.2.0.2"], "health": "down", "rtt": None, "loss": 1.0, "last_probe": 990.0,
                  "monthly_budget_bytes": 15_000_000},
    },
    "paths": [
        {"id": "wlan0:10.1.0.2>192.0.2.1", "path": {"uplink": "wlan0", "local": "10.1.0.2", "gateway": "192.0.2.1"},
         "role": "active", "health": "up", "srtt": 0.0123, "loss": 0.0, "timeout": 0.2, "last_probe": 999.5,
         "probe_bytes_month": 12000},
        {"id": "wwan0:10.2.0.2>192.0.2.1", "path": {"uplink": "wwan0", "local": "10.2.0.2", "gateway": "192.0.2.1"},
         "role": "standby", "health": "down", "srtt": None, "loss": 1.0, "timeout": 2.0, "last_probe": 990.0,
         "probe_bytes_month": 3400},
    ],
    "sas": [{"name": "home", "state": "ESTABLISHED", "local": "10.1.0.2", "local_port": 4500,
             "remote": "192.0.2.1", "remote_port": 4500, "uplink": "wlan0", "vips": ["10.99.0.1"]}],
    "chosen": {"uplink": "wlan0", "local": "10.1.0.2", "gateway": "192.0.2.1"},
    "why": "wlan0 is healthy and preferred",
    "override": None,
    "moves": [{"from": {"uplink": "wwan0"}, "to": {"uplink": "wlan0"}, "reason": "failback after hold-down",
               "manual": False, "outcome": "confirmed", "decided_at": 900.0, "route_set_at": 900.001,
               "ike_update_at": 900.11, "child_rekey_at": 900.111, "confirmed_at": 900.2, "took": 0.2}],
    "probe_counters": {"wlan0:10.1.0.2>192.0.2.1": {"tx_bytes": 3600, "rx_bytes": 3600}},
}


@pytest.fixture
def daemon():
    with FakeDaemon(view=json.loads(json.dumps(VIEW))) as d:
        yield d


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_status_text(daemon):
    result = run("status", "--socket", daemon.path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "chosen: wlan0 (10.1.0.2 -> 192.0.2.1)" in out and "why: wlan0 is healthy and preferred" in out
    wlan = next(line for line in out.splitlines() if line.startswith("wlan0"))
    assert "wlan" in wlan and "10.1.0.2" in wlan and "12.3 ms" in wlan and "0%" in wlan and "0.5 s ago" in wlan
    assert "wwan metered" in out
    assert "home" in out and "10.1.0.2:4500 -> 192.0.2.1:4500" in out and "10.99.0.1" in out
    assert "wwan0 -> wlan0: confirmed in 0.20 s" in out and "ike-update +110 ms" in out


def test_status_json_is_one_document_with_schema(daemon):
    result = run("status", "--json", "--socket", daemon.path)
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["status"]["chosen"]["uplink"] == "wlan0"
    assert result.stderr == ""


def test_status_not_ok_exits_1(daemon):
    daemon.view["sas"][0]["uplink"] = "wwan0"
    result = run("status", "--socket", daemon.path)
    assert result.exit_code == 1 and "sits on wwan0, which is down" in result.stderr
    daemon.view["sas"] = []
    assert run("status", "--socket", daemon.path).exit_code == 1


def test_paths(daemon):
    result = run("paths", "--socket", daemon.path)
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith("wwan0"))
    assert "standby" in line and "down" in line and "100%" in line and "3.4 kB / 15.0 MB" in line
    assert "7.2 kB" in result.stdout  # bytes on the wire from the probe adapter
    assert json.loads(run("paths", "--json", "--socket", daemon.path).stdout)["paths"][0]["role"] == "active"


def test_no_daemon_exits_69_without_traceback(tmp_path):
    path = str(tmp_path / "none.sock")
    result = run("status", "--socket", path)
    assert result.exit_code == 69
    assert result.stderr.strip() == (f"mobikectl: error: cannot reach the mobikectl daemon at {path}: "
                                     "is `mobikectl run` running?")
    assert "Traceback" not in result.output


def test_socket_from_env_and_lab(daemon, monkeypatch, tmp_path):
    assert run("status", env={"MOBIKECTL_SOCKET": daemon.path}).exit_code == 0
    monkeypatch.setenv("MOBIKECTL_LAB_ROOT", str(tmp_path))
    missing = run("status", "--lab", "demo")
    assert missing.exit_code == 69 and "lab 'demo' is not up" in missing.stderr
    (tmp_path / "demo" / "rw").mkdir(parents=True)
    assert socket_for(None, "demo") == str(tmp_path / "demo" / "rw" / "mobikectl.sock")
    result = run("status", "--lab", "demo", "--socket", "/x")
    assert result.exit_code == 2 and "not both" in result.stderr
    assert run("status", "--lab", "Bad-Name!").exit_code == 2


def test_refused_exits_77(daemon):
    daemon.peer = USER
    result = run("switch", "wwan0", "--socket", daemon.path)
    assert result.exit_code == 77 and "needs root" in result.stderr
    result = run("status", "--socket", daemon.path)
    assert result.exit_code == 77 and "permission denied" in result.stderr


def test_socket_permissions_exit_77(daemon):
    """The socket is 0660 root:group: anybody else is stopped at connect()."""
    from mobikectl.adapters import control_client
    from mobikectl.errors import PermissionDenied

    if os.geteuid() != 0:
        os.chmod(daemon.path, 0)
        assert run("status", "--socket", daemon.path).exit_code == 77
        return
    os.chmod(daemon.dir, 0o755)  # only the socket file itself (0660 root:root) stands in the way
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try to connect, report through the exit status
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            control_client.request(daemon.path, {"cmd": "status"})
        except PermissionDenied:
            code = 77
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 77


@pytest.mark.parametrize("args, request_", [
    (["wwan0"], {"cmd": "switch", "auto": False, "uplink": "wwan0", "for": None, "force": False}),
    (["wwan0", "--for", "90s"], {"cmd": "switch", "auto": False, "uplink": "wwan0", "for": 90.0, "force": False}),
    (["wwan0", "--for", "5m", "--force"], {"cmd": "switch", "auto": False, "uplink": "wwan0", "for": 300.0, "force": True}),
    (["--auto"], {"cmd": "switch", "auto": True}),
])
def test_switch_requests(daemon, args, request_):
    result = run("switch", *args, "--socket", daemon.path)
    assert result.exit_code == 0, result.output
    assert daemon.requests == [request_]
    assert result.stdout.strip() == "did switch"


@pytest.mark.parametrize("args, fragment", [
    ([], "give an UPLINK"),
    (["wwan0", "--auto"], "takes no UPLINK"),
    (["--auto", "--for", "5m"], "takes no UPLINK"),
    (["wwan0", "--for", "soon"], "expected a duration"),
    (["wwan0", "--for", "0s"], "expected a duration"),
])
def test_switch_usage_errors(daemon, args, fragment):
    result = run("switch", *args, "--socket", daemon.path)
    assert result.exit_code == 2 and fragment in result.stderr
    assert daemon.requests == []


def test_switch_refused_by_the_engine_exits_1():
    def refuse(request):
        return {"ok": False, "error": {"code": 1, "message": "wwan0 is down: use --force to switch anyway"}}

    with FakeDaemon(submit=refuse) as d:
        result = run("switch", "wwan0", "--socket", d.path)
    assert result.exit_code == 1 and "use --force" in result.stderr


def test_duration_parsing():
    assert [parse_duration(x) for x in ("90", "90s", "5m", "1h30m", "1.5h", "2d")] == [90, 90, 300, 5400, 5400, 172800]
    for bad in ("", "5x", "m", "-5s", "5m 3"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_reload_sends_an_absolute_path(daemon, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text("schema = 1\n")
    result = run("reload", "--policy", "p.toml", "--socket", daemon.path)
    assert result.exit_code == 0
    assert daemon.requests == [{"cmd": "reload", "policy": str(tmp_path / "p.toml")}]
    run("reload", "--socket", daemon.path)
    assert daemon.requests[-1] == {"cmd": "reload", "policy": None}


def test_reload_bad_policy_exits_65_with_every_problem():
    def bad(request):
        raise DataError("p.toml: 2 problems", ["p.toml: uplinks.wwan.fall: expected an integer >= 1, got 0",
                                               "p.toml: typo: unknown key"])

    with FakeDaemon(submit=bad) as d:
        result = run("reload", "--socket", d.path)
    assert result.exit_code == 65
    errors = [x for x in result.stderr.splitlines() if x.startswith("mobikectl:")]  # the fake daemon logs too
    assert errors == ["mobikectl: error: p.toml: uplinks.wwan.fall: expected an integer >= 1, got 0",
                                          "mobikectl: error: p.toml: typo: unknown key"]


def test_events_text_and_json(daemon):
    daemon.hub.publish({"kind": "move", "message": "wlan0 -> wwan0: wlan0 down", "time": "2026-01-01T10:00:00.000Z"})
    daemon.hub.publish({"kind": "probe", "message": "wlan0 up"})
    result = run("events", "--socket", daemon.path)
    assert result.stdout.splitlines()[0] == "2026-01-01T10:00:00.000Z #1 move: wlan0 -> wwan0: wlan0 down"
    lines = run("events", "--json", "--since", "1", "--socket", daemon.path).stdout.splitlines()
    assert [json.loads(x)["message"] for x in lines] == ["wlan0 up"]
    assert all(json.loads(x)["schema"] == 1 for x in lines)


def test_events_follow_prints_until_the_daemon_stops(daemon):
    def publish_then_stop():
        deadline = time.monotonic() + 3
        while daemon.hub.subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(3):
            daemon.hub.publish({"kind": "probe", "message": f"event {i}"})
        time.sleep(0.1)
        daemon.server.stop()

    t = threading.Thread(target=publish_then_stop)
    t.start()
    result = run("events", "--follow", "--json", "--socket", daemon.path)
    t.join()
    assert result.exit_code == 0
    assert [json.loads(x)["message"] for x in result.stdout.splitlines()] == ["event 0", "event 1", "event 2"]


def test_events_follow_daemon_vanishing_exits_69(tmp_path):
    """A daemon that dies (EOF without the end line) is not a clean end."""
    import socket

    path = str(tmp_path / "d.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def fake():
        conn, _ = listener.accept()
        conn.recv(1000)
        conn.sendall(b'{"schema":1,"ok":true,"follow":true}\n'
                     b'{"schema":1,"seq":1,"time":"t","kind":"k","message":"m","data":{}}\n')
        conn.close()

    t = threading.Thread(target=fake)
    t.start()
    result = run("events", "-f", "--socket", path)
    t.join()
    listener.close()
    assert result.stdout.strip() == "t #1 k: m"
    assert result.exit_code == 69 and "closed the event stream" in result.stderr


@pytest.mark.parametrize("reply, code", [
    (b"garbage\n", 65),
    (b'{"schema": 2, "ok": true}\n', 65),
    (b'{"schema": 1, "ok": false, "error": {"code": 70, "message": "boom"}}\n', 70),
    (b"", 69),
])
def test_bad_replies(tmp_path, reply, code):
    import socket

    path = str(tmp_path / "d.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def fake():
        conn, _ = listener.accept()
        conn.recv(1000)
        conn.sendall(reply)
        conn.close()

    t = threading.Thread(target=fake)
    t.start()
    result = run("status", "--socket", path)
    t.join()
    listener.close()
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
