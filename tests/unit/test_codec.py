"""The JSON form of every fact and order, recordings, and replay."""

import io
import json

import pytest

from engine_helpers import GW, WLAN, WWAN, link, net, sa, steering_route
from mobikectl.engine import actions as A
from mobikectl.engine import codec
from mobikectl.engine import inputs as F
from mobikectl.engine.ids import ProbeKind
from mobikectl.policy.model import Policy

SAMPLES = [
    link("wlan0", carrier=False), F.AddressChanged("wlan0", "fe80::1", 64, deprecated=True),
    steering_route(WLAN), net("wlan0", "wwan0"),
    F.ProbeReplied(WLAN, ProbeKind.ECHO, 7, 0.0051), F.ProbeLost(WWAN, ProbeKind.IKE, 3, "ENETUNREACH"),
    F.TunnelInbound(12345),
    F.SaSnapshot((sa(),), complete=False, conns=("home",)),
    F.SaSnapshot((F.SaInfo("home", "1", "ESTABLISHED", "10.1.0.2", 4500, GW, 4500, "a", "b",
                            children=(F.ChildInfo("net", "2", "INSTALLED", "c1", "c2"),), busy=("IKE_MOBIKE",)),)),
    F.IkeUp(sa()), F.IkeDown("home", "a", "b"),
    F.IkeUpdated("home", "a", "b", "10.1.0.2", GW, "10.2.0.2", GW, 4500, 4500),
    F.IkeRekeyed("home", ("a", "b"), sa(spis=("c", "d"))),
    F.ChildRekeyed("home", "a", "b", "net", "1", "2"),
    F.CharonConnected("5.9.8"), F.CharonLost("socket closed"),
    F.ActionFailed(A.SteerTo(WWAN, "10.2.0.1", "x"), "RTNETLINK answers: No such device"),
    F.SwitchRequested("wwan0", until=12.5, force=True), F.SwitchRequested(None),
    F.PolicyLoaded(Policy(prefer=("wifi", "dock", "cell"), source="p.toml")),
    A.SendProbe(WLAN, ProbeKind.DATA, 1, 0.15, "active path", src="10.99.0.1", dst="10.0.0.1"),
    A.SteerTo(WLAN, None, "r"), A.RemoveSteering(GW, "stop"), A.Initiate("home", "fallback"),
    A.Terminate("home", "a", "b", "replaced"), A.Resync("why"),
    A.Note("decision", "wlan0 is down", {"gateway": GW}),
]


def test_every_fact_and_order_type_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(F.FACTS) | set(A.ORDERS)


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_round_trip(obj):
    doc = json.loads(json.dumps(codec.to_json(obj)))
    assert doc["type"] == type(obj).__name__
    back = codec.from_json(doc)
    assert back == obj
    if isinstance(obj, F.PolicyLoaded):
        assert back.policy == obj.policy
    if isinstance(obj, A.Note):
        assert back.data == obj.data


def test_paths_enums_and_tuples_are_plain_json():
    doc = codec.to_json(F.ProbeReplied(WLAN, ProbeKind.ECHO, 7, 0.005))
    assert doc == {"type": "ProbeReplied", "path": {"uplink": "wlan0", "local": "10.1.0.2", "gateway": GW},
                   "kind": "echo", "seq": 7, "rtt": 0.005}
    assert codec.to_json(F.IkeRekeyed("h", ("a", "b"), sa()))["old_spis"] == ["a", "b"]


@pytest.mark.parametrize("doc,message", [
    ({"type": "ProbeReplied", "path": WLAN.to_json(), "kind": "echo", "seq": "7", "rtt": 0.1},
     'ProbeReplied.seq: expected an integer, got "7"'),
    ({"type": "ProbeReplied", "path": WLAN.to_json(), "kind": "ping", "seq": 7, "rtt": 0.1},
     "ProbeReplied.kind: expected one of"),
    ({"type": "ProbeReplied", "path": {"uplink": "wlan0"}, "kind": "echo", "seq": 7, "rtt": 0.1},
     "ProbeReplied.path.local: missing"),
    ({"type": "IkeDown", "name": "x", "spi_i": "a", "spi_r": "b", "colour": 1}, "IkeDown.colour: unknown field"),
    ({"type": "Teleported"}, 'type: expected one of the facts or orders, got "Teleported"'),
    ([1, 2], "expected an object"),
])
def test_errors_name_the_field(doc, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        codec.from_json(doc)


def test_recording_lines_and_replay():
    buf = io.StringIO()
    codec.write_recording(buf, 0.0, net("wlan0", "wwan0"))
    codec.write_recording(buf, 0.0, F.SaSnapshot((sa(),)))
    codec.write_recording(buf, 40.0, link("wlan0", carrier=False))
    lines = buf.getvalue().splitlines()
    assert json.loads(lines[0])["schema"] == 1 and json.loads(lines[2])["now"] == 40.0
    orders = codec.replay(Policy(), lines)
    steers = [(now, o) for now, o in orders if isinstance(o, A.SteerTo)]
    assert steers[0][1].path == WLAN  # the route is put where the SA is
    # timers ran between the facts: probes went out and timed out (nothing answers in a replay),
    # so at 40 s no path is healthy and the engine stays instead of thrashing
    assert any(isinstance(o, A.SendProbe) and 0 < now < 40 for now, o in orders)
    assert (2.1, A.Note("decision", "wlan0 is down but no other path is healthy: staying")) in orders
    assert codec.replay(Policy(), lines) == orders  # deterministic


def test_a_recorded_run_replays_to_the_same_decisions():
    from engine_helpers import Transcript, answer_all
    from mobikectl.engine.engine import Engine

    t = Transcript(Engine(Policy(), 0.0))
    buf = io.StringIO()
    handle = t.engine.handle
    t.engine.handle = lambda fact, now: (codec.write_recording(buf, now, fact), handle(fact, now))[1]
    t.feed(net("wlan0", "wwan0"))
    t.feed(F.SaSnapshot((sa(),)))
    t.run_until(40.0, answer_all())
    t.feed(link("wlan0", carrier=False))
    t.run_until(45.0, answer_all())
    live = [(now, o) for now, o in t.log if isinstance(o, (A.SteerTo, A.Initiate))]
    replayed = [(now, o) for now, o in codec.replay(Policy(), buf.getvalue().splitlines())
                if isinstance(o, (A.SteerTo, A.Initiate))]
    assert live[1] == (40.0, A.SteerTo(WWAN, "10.2.0.1", "wlan0 is down; wwan0 is the best healthy path"))
    assert replayed[:2] == live[:2]


def test_replay_of_tunnel_traffic_ends():
    # the README's `policy simulate` of a lab recording hung on this (engine._send_due)
    buf = io.StringIO()
    for now, fact in ((0.0, net("wlan0", "wwan0")), (0.0, F.SaSnapshot((sa(),))), (100.0, F.TunnelInbound(1000)),
                      (100.07, F.TunnelInbound(1010))):
        codec.write_recording(buf, now, fact)
    orders = codec.replay(Policy(), buf.getvalue().splitlines(), until=101.0)
    assert any(isinstance(o, A.SendProbe) and o.path == WLAN and now == 100.07 + 0.1 for now, o in orders)


def test_replay_fails_fast_on_a_deadline_that_does_not_advance():
    class Stuck:  # an engine with a timer bug: its deadline stays where it is
        rounds = 0

        def next_deadline(self):
            return 5.0

        def handle_timer(self, now):
            self.rounds += 1
            assert self.rounds <= 100_000, "replay spun instead of failing"
            return []
    with pytest.raises(RuntimeError, match=r"deadline stays at 5\.0 after 10000 timer rounds"):
        codec._run_timers(Stuck(), 10.0, [])


def test_bad_recording_lines_say_which_line():
    good = codec.record_line(1.0, F.TunnelInbound(1))
    with pytest.raises(ValueError, match="line 2: schema: expected 1"):
        list(codec.read_recording([good, json.dumps({"schema": 2, "now": 2, "fact": {}})]))
    with pytest.raises(ValueError, match="line 2: now: 0.5 is earlier"):
        list(codec.read_recording([good, codec.record_line(0.5, F.TunnelInbound(2))]))
    with pytest.raises(ValueError, match="line 1: fact: Resync is an order"):
        list(codec.read_recording([codec.record_line(0.0, A.Resync("x"))]))
