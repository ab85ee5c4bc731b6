"""The control socket at its seam: the real server with fake get_view/submit, the real
client, the event hub. No root needed (credentials are injected)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest

from mobikectl.adapters import control_client as cc
from mobikectl.adapters.control import ControlServer
from mobikectl.adapters.control_proto import Peer, parse_request, ControlError
from mobikectl.adapters.event_hub import EventHub, HubClosed, Overrun
from mobikectl.errors import DataError, NotOk, PermissionDenied, Unavailable

ROOT = Peer(1, 0, 0, frozenset({0}))
USER = Peer(2, 1000, 1000, frozenset({1000}))


class FakeDaemon:
    """Name: FakeDaemon. The real ControlServer at a short temporary path, with a canned
    view, a recording submit and an EventHub."""

    def __init__(self, *, peer: Peer = ROOT, view: dict | None = None, submit=None, read_group=None):
        self.dir = tempfile.mkdtemp(prefix="mk-ctl-", dir="/tmp")
        self.path = os.path.join(self.dir, "run", "mobikectl.sock")
        self.view = view if view is not None else {"now": 10.0, "uplinks": {}, "sas": [], "paths": []}
        self.requests: list[dict] = []
        self.hub = EventHub(keep=5, max_pending=3)
        self.peer = peer
        self.server = ControlServer(path=self.path, read_group=read_group, get_view=lambda: self.view,
                                    submit=submit or self._submit, hub=self.hub,
                                    credentials=lambda conn: self.peer)

    def _submit(self, request: dict) -> dict:
        self.requests.append(request)
        return {"ok": True, "message": f"did {request['cmd']}"}

    def raw(self, line: bytes) -> list[dict]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(self.path)
            s.sendall(line)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return [json.loads(x) for x in data.splitlines()]

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_socket_file_mode_and_parent_dir():
    with FakeDaemon() as d:
        assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(os.path.dirname(d.path)).st_mode) == 0o755
    assert not os.path.exists(d.path)  # removed on stop


def test_stale_socket_is_replaced_and_a_live_one_is_not():
    with FakeDaemon() as d:
        second = ControlServer(path=d.path, read_group=None, get_view=dict, submit=dict, hub=EventHub())
        with pytest.raises(Unavailable, match="another mobikectl daemon"):
            second.start()
        assert cc.request(d.path, {"cmd": "state"})["ok"]  # the first still serves
    stale = socket.socket(socket.AF_UNIX)
    os.makedirs(os.path.dirname(d.path), exist_ok=True)
    stale.bind(d.path)
    stale.close()  # a socket file nobody listens on
    with FakeDaemon() as d2:
        d2.server.stop()
        d2.server = ControlServer(path=d.path, read_group=None, get_view=lambda: {"x": 1}, submit=dict, hub=EventHub())
        d2.server.start()
        assert cc.request(d.path, {"cmd": "state"})["state"] == {"x": 1}
        d2.server.stop()
    shutil.rmtree(d.dir, ignore_errors=True)


def test_reads_reply_with_the_view():
    with FakeDaemon() as d:
        assert cc.request(d.path, {"cmd": "status"}) == {"schema": 1, "ok": True, "status": d.view}
        assert cc.request(d.path, {"cmd": "state"})["state"] == d.view
        reply = cc.request(d.path, {"cmd": "paths"})
        assert reply["paths"] == [] and reply["now"] == 10.0


@pytest.mark.parametrize("line, fragment", [
    (b"not json\n", "not JSON"),
    (b"[1, 2]\n", "expected a JSON object"),
    (b'{"cmd": "explode"}\n', "cmd: expected one of"),
    (b'{"cmd": "status", "verbose": true}\n', "unknown key 'verbose'"),
    (b'{"cmd": "events", "since": -1}\n', "events.since"),
    (b'{"cmd": "events", "follow": "yes"}\n', "events.follow"),
    (b'{"cmd": "switch", "uplink": 3}\n', "switch.uplink"),
    (b'{"cmd": "switch", "uplink": "wwan0", "for": "5m"}\n', "switch.for"),
    (b'{"cmd": "switch", "auto": true, "uplink": "wwan0"}\n', "switch: auto"),
    (b'{"cmd": "reload", "policy": 5}\n', "reload.policy"),
])
def test_malformed_requests_get_65_and_the_connection_goes_on(line, fragment):
    with FakeDaemon() as d:
        first, second = d.raw(line + b'{"cmd": "state"}\n')
        assert first["schema"] == 1 and first["ok"] is False
        assert first["error"]["code"] == 65 and fragment in first["error"]["message"]
        assert second["ok"] is True  # same connection, next request answered
        assert d.requests == []


def test_parse_request_normalises():
    assert parse_request('{"cmd": "switch", "uplink": "wwan0", "for": 90}') == {
        "cmd": "switch", "auto": False, "uplink": "wwan0", "for": 90.0, "force": False}
    assert parse_request('{"cmd": "switch", "auto": true}') == {"cmd": "switch", "auto": True}
    assert parse_request('{"cmd": "events"}') == {"cmd": "events", "follow": False, "since": None}
    with pytest.raises(ControlError):
        parse_request('{"cmd": "switch", "uplink": "w", "for": Infinity}')


def test_changes_go_to_submit():
    with FakeDaemon() as d:
        reply = cc.request(d.path, {"cmd": "switch", "uplink": "wwan0", "for": 60, "force": True})
        assert reply == {"schema": 1, "ok": True, "message": "did switch"}
        cc.request(d.path, {"cmd": "reload", "policy": None})
        assert d.requests == [
            {"cmd": "switch", "auto": False, "uplink": "wwan0", "for": 60.0, "force": True},
            {"cmd": "reload", "policy": None}]


def test_submit_errors_keep_their_code():
    def refuse(request):
        if request["cmd"] == "reload":
            raise DataError("bad.toml: 2 problems", ["bad.toml: a: wrong", "bad.toml: b: wrong"])
        return {"ok": False, "error": {"code": 1, "message": "wwan0 is down: use --force"}}

    with FakeDaemon(submit=refuse) as d:
        with pytest.raises(NotOk, match="use --force"):
            cc.request(d.path, {"cmd": "switch", "uplink": "wwan0"})
        with pytest.raises(DataError) as err:
            cc.request(d.path, {"cmd": "reload", "policy": "/x/bad.toml"})
        assert err.value.problems == ["bad.toml: a: wrong", "bad.toml: b: wrong"]


def test_a_crashing_submit_is_70_and_the_server_lives():
    with FakeDaemon(submit=lambda r: 1 / 0) as d:
        (reply,) = d.raw(b'{"cmd": "reload"}\n')
        assert reply["error"]["code"] == 70 and "ZeroDivisionError" in reply["error"]["message"]
        assert cc.request(d.path, {"cmd": "status"})["ok"]


def test_non_root_may_not_change_anything():
    with FakeDaemon(peer=USER, read_group="root") as d:
        (reply,) = d.raw(b'{"cmd": "switch", "auto": true}\n')
        assert reply["error"]["code"] == 77 and "needs root" in reply["error"]["message"]
        with pytest.raises(PermissionDenied, match="group 'root'"):
            cc.request(d.path, {"cmd": "status"})
        assert d.requests == []


def test_group_members_may_read():
    member = Peer(3, 1000, 1000, frozenset({1000, 0}))  # gid 0 is the group "root"
    with FakeDaemon(peer=member, read_group="root") as d:
        assert cc.request(d.path, {"cmd": "status"})["ok"]
        with pytest.raises(PermissionDenied):
            cc.request(d.path, {"cmd": "reload"})


def test_no_daemon_is_unavailable():
    with pytest.raises(Unavailable, match="is `mobikectl run` running"):
        cc.request("/tmp/mk-no-such-dir/mobikectl.sock", {"cmd": "status"})


# --- events -----------------------------------------------------------------------------------

def test_events_backlog_and_since():
    with FakeDaemon() as d:
        for i in range(7):
            d.hub.publish({"kind": "probe", "message": f"m{i}"})
        kept = list(cc.events(d.path))
        assert [e["seq"] for e in kept] == [3, 4, 5, 6, 7]  # the hub keeps 5
        assert all(e["schema"] == 1 and e["time"].endswith("Z") for e in kept)
        assert [e["message"] for e in cc.events(d.path, since=5)] == ["m5", "m6"]


def test_events_follow_until_the_daemon_stops():
    with FakeDaemon() as d:
        d.hub.publish({"kind": "move", "message": "old"})
        got: list = []
        t = threading.Thread(target=lambda: got.extend(cc.events(d.path, follow=True)))
        t.start()
        assert _wait(lambda: d.hub.subscribers == 1)
        d.hub.publish({"kind": "move", "message": "new", "data": {"to": "wwan0"}})
        assert _wait(lambda: len(got) == 1)
    t.join(3)
    assert [e["message"] for e in got] == ["new"] and got[0]["data"] == {"to": "wwan0"}


def test_hub_drops_a_slow_subscriber_without_blocking():
    hub = EventHub(keep=10, max_pending=3)
    slow = hub.subscribe()
    for i in range(5):
        hub.publish({"kind": "k", "message": str(i)})  # never blocks
    with pytest.raises(Overrun) as err:
        slow.get(timeout=0)
    assert err.value.last_seq == 0
    fresh = hub.subscribe(since=3)
    assert [fresh.get(0)["seq"], fresh.get(0)["seq"]] == [4, 5]
    hub.close()
    with pytest.raises(HubClosed):
        fresh.get(0)


def test_follow_client_gone_is_noticed():
    with FakeDaemon() as d:
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.path)
        s.sendall(b'{"cmd": "events", "follow": true}\n')
        assert _wait(lambda: d.hub.subscribers == 1)
        s.close()
        assert _wait(lambda: d.hub.subscribers == 0, timeout=3)


def _wait(check, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()
