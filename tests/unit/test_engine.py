"""Engine transcripts on a fake clock: given these facts at these times, these orders."""

from dataclasses import replace

import pytest

from engine_helpers import (ETH, GW, ROUTERS, WLAN, WLAN_IP, WWAN, WWAN_IP, Matching, Transcript,
                            addr, answer_all, default, kernel_routes, link, net, of, probes, sa, started,
                            steering_route)
from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.engine import Engine
from mobikectl.engine.ids import Path, UplinkClass
from mobikectl.policy.model import ClassSettings, Failback, Policy, ProbeTiming


def steers(t, since=0.0):
    return [(at, o) for at, o in t.log if isinstance(o, A.SteerTo) and at >= since]


def moves_to(t, path, since=0.0):
    return [at for at, o in steers(t, since) if o.path == path]


def charon_moves(t, path):
    """What charon does 108 ms after the route: ike-update (+ a CHILD_SA rekey with libipsec)."""
    old = t.engine.sas.on_gateway(GW)[0]
    t.run_until(t.now + 0.108, answer_all())
    t.feed(F.IkeUpdated("home", old.spi_i, old.spi_r, old.local_host, GW, path.local, GW))
    return t.feed(F.ChildRekeyed("home", old.spi_i, old.spi_r, "net", "1", "2"))


def wwan_class(**kw):
    """The policy's wwan class with these probe timings (and `monthly_budget_mb`)."""
    cell = Policy().classes[UplinkClass.WWAN]
    probe = replace(cell.probe, **{k: v for k, v in kw.items() if k != "monthly_budget_mb"})
    return replace(cell, probe=probe, monthly_budget_mb=kw.get("monthly_budget_mb", cell.monthly_budget_mb))


# --- detection ------------------------------------------------------------------------------
def test_blackhole_is_decided_within_the_detection_budget_worst_case():
    t = started()
    # the worst case: the path dies right after an answer arrived
    last = max(at for at, o in t.log if isinstance(o, A.SendProbe) and o.path == WLAN)
    fault = last + 0.005
    t.run_until(fault, answer_all())
    t.run_until(fault + 2.0, answer_all(dead=("wlan0",)))
    (at, steer), = steers(t, fault)
    assert steer.path == WWAN and steer.nexthop == ROUTERS["wwan0"]
    assert steer.reason == "wlan0 is down; wwan0 is the best healthy path"
    assert at - fault <= 0.8, at - fault
    # exactly what the deciding timer produced
    decided = [o for when, o in t.log if when == at]
    assert decided == [
        A.Note("probe", "wlan0:10.1.0.2>192.0.2.1: suspect -> down (confirming burst of 3 lost)"),
        A.Note("decision", "wlan0 is down; wwan0 is the best healthy path"),
        A.SteerTo(WWAN, ROUTERS["wwan0"], "wlan0 is down; wwan0 is the best healthy path"),
    ] + [o for o in decided if isinstance(o, A.SendProbe)]
    # suspicion came first, with a confirming burst of 3
    burst = [o for when, o in t.log if when >= fault and isinstance(o, A.SendProbe) and o.reason == "confirming burst"]
    assert len(burst) == 3
    # the move is confirmed by charon's ike-update; the CHILD_SA rekey is recorded
    done = charon_moves(t, WWAN)
    move = t.engine.view()["moves"][-1]
    assert move["outcome"] == "confirmed" and move["ike_update_at"] is not None
    assert move["child_rekey_at"] is not None and move["decided_at"] == at
    assert t.engine.view()["sas"][0]["uplink"] == "wwan0"


def test_suspicion_that_clears_moves_nothing():
    t = started()
    lost = []

    def two_lost(probe):
        if probe.path == WLAN and probe.reason == "active path" and len(lost) < 3:
            lost.append(probe.seq)
            return None
        return 0.005
    t.run_until(t.now + 5, two_lost)
    notes = [o.message for _, o in t.log if isinstance(o, A.Note) and o.kind == "probe"]
    assert any("up -> suspect" in m for m in notes) and any("suspect -> up" in m for m in notes)
    assert steers(t, 40.0) == []


def test_carrier_loss_moves_at_once():
    t = started()
    orders = t.feed(link("wlan0", carrier=False))
    assert orders[:3] == [
        A.Note("probe", "wlan0:10.1.0.2>192.0.2.1: up -> down (carrier lost)"),
        A.Note("decision", "wlan0 is down; wwan0 is the best healthy path"),
        A.SteerTo(WWAN, ROUTERS["wwan0"], "wlan0 is down; wwan0 is the best healthy path"),
    ]
    assert not any(isinstance(o, A.SendProbe) and o.path.uplink == "wlan0" for o in orders)


def test_link_down_moves_at_once_and_charon_moving_first_is_fine():
    t = started()
    orders = t.feed(link("wlan0", up=False, carrier=False))
    assert of(orders, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], Matching("wlan0 is down"))]
    charon_moves(t, WWAN)
    assert t.engine.view()["moves"][-1]["outcome"] == "confirmed"


def test_failback_only_after_the_hold_down():
    t = started()
    t.feed(link("wlan0", carrier=False))
    charon_moves(t, WWAN)
    back = t.now + 10
    t.run_until(back, answer_all())
    t.feed(link("wlan0"))
    t.run_until(back + 60, answer_all())
    up_at = next(at for at, o in t.log if isinstance(o, A.Note) and "wlan0" in o.message and "down -> up" in o.message)
    at = moves_to(t, WLAN, back)[0]
    assert 30.0 <= at - up_at < 30.2
    assert "failback" in steers(t, back)[0][1].reason


def test_flapping_uplink_moves_at_most_once_per_hold_down():
    t = started()
    start = t.now
    for i in range(24):  # carrier flaps every 5 s for 2 minutes
        t.run_until(start + 5 * i, answer_all())
        t.feed(link("wlan0", carrier=i % 2 == 1))
        if i == 0:
            charon_moves(t, WWAN)
    t.run_until(start + 125, answer_all())
    assert len(moves_to(t, WWAN, start)) == 1
    assert moves_to(t, WLAN, start) == []


def test_a_standby_suspicion_restarts_the_hold_down():
    """Lab: wlan0 (standby after a move) lost its probes for a moment, was suspect, answered
    the burst: the failback must wait a whole hold-down from then, not from when wlan0 first
    came up. A missed standby probe is checked again at once, so an outage far shorter than
    two standby periods still makes a suspicion."""
    t = started()
    t.feed(link("wlan0", carrier=False))
    charon_moves(t, WWAN)
    t.run_until(t.now + 10, answer_all())
    t.feed(link("wlan0"))
    back = t.now
    lost = []

    def standby_lost(probe):  # after 10 s, a 0.4 s outage from a standby probe on; the burst answered
        if probe.path == WLAN and probe.reason != "confirming burst" and t.now >= back + 10 \
                and (not lost or t.now < lost[0][0] + 0.4):
            lost.append((t.now, probe.reason))
            return None
        return 0.005
    t.run_until(back + 90, standby_lost)
    notes = [(at, o.message) for at, o in t.log if isinstance(o, A.Note) and o.kind == "probe"
             and o.message.startswith("wlan0") and at >= back]
    cleared = [at for at, m in notes if "suspect -> up" in m]
    assert [r for _, r in lost][:2] == ["standby path", "standby path missed a probe: checking again"]
    assert [m for _, m in notes if "-> down" in m] == [] and cleared, notes
    at = moves_to(t, WLAN, back)[0]
    assert cleared[-1] + 30.0 <= at < cleared[-1] + 30.2


def follow_steering(t):
    """charon follows every SteerTo that moves the SA: ike-update 108 ms later."""
    engine, where = t.engine, {"local": t.engine.sas.on_gateway(GW)[0].local_host}

    def watch(orders):
        for o in orders:
            if isinstance(o, A.SteerTo) and o.path.local != where["local"]:
                old, where["local"] = where["local"], o.path.local
                t.pending.append((t.now + 0.108, F.IkeUpdated("home", "aa", "bb", old, GW, o.path.local, GW)))
        return orders
    handle, handle_timer = engine.handle, engine.handle_timer
    engine.handle = lambda fact, now: watch(handle(fact, now))
    engine.handle_timer = lambda now: watch(handle_timer(now))


@pytest.mark.parametrize("late", [0.0, 0.3])
def test_flapping_standby_is_not_failed_back_to_within_the_hold_down(late):
    """Lab: wlan0 blackholed and cleared every 2 s for 20 s (1 s standby probes, 5 s hold-down
    and min dwell). Its suspicions cleared by the burst used to keep its up time: failed
    back to and left again 0.7 s later. In the lab the blackhole starts late (the command
    takes time): 1.7 s outages that may hold a single standby probe, which must be enough
    for a suspicion. Now: one move away, the failback after the flapping."""
    wifi = ClassSettings(UplinkClass.WLAN, probe=ProbeTiming(standby_interval=1.0))
    policy = Policy(failback=Failback(hold_down=5.0, min_dwell=5.0),
                    classes={**Policy().classes, UplinkClass.WLAN: wifi})
    t = started(policy)
    follow_steering(t)
    start = t.now

    def flapping(probe):  # blackholed during [late, 2), [4 + late, 6), ... [16 + late, 18) after start
        since = t.now - start
        if probe.path.uplink == "wlan0" and 0 <= since < 20 and int(since // 2) % 2 == 0 and since % 2 >= late:
            return None
        return 0.005
    t.run_until(start + 40, flapping)
    moves = [(round(m.decided_at - start, 2), m.target.uplink) for m in t.engine.moves]
    assert moves[0][1] == "wwan0" and moves[0][0] < 1.0 + late, moves
    assert all(b[0] - a[0] >= 5.0 for a, b in zip(moves, moves[1:])), moves
    assert [m for m in moves if m[0] < 20] == moves[:1], moves
    assert len(moves) == 2 and moves[1][1] == "wlan0" and 18 + 5 <= moves[1][0] < 25, moves


def test_unconfirmed_move_is_retried_then_replaced_by_a_new_sa():
    t = started()
    t.feed(link("wlan0", carrier=False))
    t0 = t.now
    out = t.run_until(t0 + 5.0, answer_all())
    assert [o for o in out if not isinstance(o, A.SendProbe)] == [
        A.Note("move", Matching("retry 1/1: the move to wwan0 was not confirmed")),
        A.SteerTo(WWAN, ROUTERS["wwan0"], Matching("retry 1/1")),
        A.Resync("confirm the move"),
    ]
    out = t.run_until(t0 + 10.0, answer_all())
    assert [o for o in out if not isinstance(o, A.SendProbe)] == [  # make before break: no Terminate yet
        A.Note("move", Matching("not confirmed after 2 attempts.*a new IKE_SA over wwan0")),
        A.Initiate("home", Matching("a new IKE_SA over wwan0")),
    ]
    out = t.feed(F.IkeUp(sa(local=WWAN_IP, spis=("cc", "dd"))))
    moved = out.index(A.Note("move", Matching("moved to wwan0")))
    assert of(out[moved:], A.Terminate) == [A.Terminate("home", "aa", "bb", Matching("replaced by the new IKE_SA home "
                                                                                  "cc_i dd_r"))]
    t.feed(F.IkeDown("home", "aa", "bb"))
    assert t.engine.view()["moves"][-1]["outcome"] == "confirmed"
    assert list(t.engine.sas.sas) == [("cc", "dd")]  # exactly one left


def test_a_move_is_confirmed_whichever_gateway_address_charon_picks():
    """Lab: on link down charon roamed by itself to the gateway's other address over wwan0.
    The engine looked for the SA on the address it steered only: retry, a 'fallback' over
    no SA, a failed move, and later routes to both addresses. Now: confirmed (the SA is
    known by its SPIs), steering follows it to that address, our route to the old one goes."""
    gw2 = "198.51.100.10"
    t = started()
    t.feed(steering_route(WLAN))
    t0 = t.now
    out = t.feed(link("wlan0", up=False, carrier=False))
    assert of(out, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], Matching("wlan0 is down"))]
    t.feed(steering_route(WWAN))
    t.run_until(t0 + 0.108, answer_all())
    out = t.feed(F.IkeUpdated("home", "aa", "bb", WLAN_IP, GW, WWAN_IP, gw2))
    assert A.Note("move", Matching("moved to wwan0:10.2.0.2>192.0.2.1 in 108 ms")) in out
    assert of(out, A.RemoveSteering, A.SteerTo) == [
        A.RemoveSteering(GW, Matching(f"from gateway address {GW} to {gw2}")),
        A.SteerTo(Path("wwan0", WWAN_IP, gw2), ROUTERS["wwan0"], Matching("keep the steering route on wwan0")),
    ]
    t.feed(steering_route(WWAN, present=False))
    t.feed(steering_route(Path("wwan0", WWAN_IP, gw2)))
    t.run_until(t0 + 20, answer_all())
    view = t.engine.view()
    assert [(m["outcome"], m["attempts"]) for m in view["moves"]] == [("confirmed", 1)]
    assert list(view["gateways"]) == [gw2] and view["chosen"] == Path("wwan0", WWAN_IP, gw2).to_json()
    assert of([o for at, o in t.log if at > t0 + 0.108], A.Initiate, A.Terminate, A.Resync) == []
    assert [o for _, o in steers(t, t0 + 0.2)] == []  # nothing steers the old address again
    # the failback steers the SA's address, and only that one
    t.feed(link("wlan0"))
    t.run_until(t0 + 52, answer_all())  # wlan0 up at t0 + 20.2, the 30 s hold-down
    (at, back), = steers(t, t0 + 20)
    assert back.path == Path("wlan0", WLAN_IP, gw2) and "failback" in back.reason
    t.run_until(at + 0.108, answer_all())
    t.feed(F.IkeUpdated("home", "aa", "bb", WWAN_IP, gw2, WLAN_IP, gw2))
    t.run_until(t0 + 70, answer_all())
    assert [m["outcome"] for m in t.engine.view()["moves"]] == ["confirmed", "confirmed"]
    assert len(steers(t, t0 + 20)) == 1


def test_a_rekeyed_sa_is_still_the_sa_being_moved():
    t = started()
    t.feed(link("wlan0", carrier=False))
    t.feed(F.IkeRekeyed("home", ("aa", "bb"), sa(spis=("cc", "dd"))))  # an IKE rekey races the move
    out = t.feed(F.IkeUpdated("home", "cc", "dd", WLAN_IP, GW, WWAN_IP, GW))
    assert A.Note("move", Matching("moved to wwan0")) in out
    assert not [o for o in out if isinstance(o, A.Note) and "by itself" in o.message]
    t.run_until(t.now + 15, answer_all())
    (move,) = t.engine.view()["moves"]
    assert move["outcome"] == "confirmed" and move["ike_update_at"] is not None


def test_charon_roaming_to_another_gateway_address_by_itself_is_followed():
    gw2 = "198.51.100.10"
    t = started()  # charon's ike-update is the first fact since the snapshot
    t0 = t.now
    out = t.feed(F.IkeUpdated("home", "aa", "bb", WLAN_IP, GW, WLAN_IP, gw2))
    assert of(out, A.RemoveSteering, A.SteerTo) == [
        A.RemoveSteering(GW, Matching(f"from gateway address {GW} to {gw2}")),
        A.SteerTo(Path("wlan0", WLAN_IP, gw2), ROUTERS["wlan0"], Matching("keep the steering route on wlan0")),
    ]
    t.run_until(t.now + 60, answer_all())  # the route's removal not seen yet: the old address stays unsteered
    assert list(t.engine.view()["gateways"]) == [gw2] and t.engine.view()["moves"] == []
    assert len(steers(t, t0)) == 1


def test_a_pending_move_whose_sa_charon_took_elsewhere_is_decided_again():
    gw2 = "198.51.100.10"
    t = started()
    t.feed(F.SwitchRequested("wwan0"))
    t0 = t.now
    out = t.feed(F.IkeUpdated("home", "aa", "bb", WLAN_IP, GW, WLAN_IP, gw2))  # not where we steered
    assert A.Note("move", Matching("move to wwan0:10.2.0.2>192.0.2.1 aborted: charon took the IKE_SA")) in out
    assert A.RemoveSteering(GW, Matching("not needed")) in out
    t.run_until(t0 + 1, answer_all())  # the paths to gw2 rise: the manual switch applies there
    assert [o.path for _, o in steers(t, t0 + 0.01)] == [Path("wwan0", WWAN_IP, gw2)]


def test_a_route_that_cannot_be_installed_counts_as_a_failed_attempt():
    t = started()
    steer = of(t.feed(link("wlan0", carrier=False)), A.SteerTo)[0]
    out = t.feed(F.ActionFailed(steer, "RTNETLINK answers: Network is unreachable"))
    assert of(out, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], Matching("retry 1/1"))]


# --- restarts and charon --------------------------------------------------------------------------
def test_restart_adopts_the_sa_and_our_route_without_a_move():
    e = Engine(Policy(), 1000.0)
    t = Transcript(e, 1000.0)
    snap = net("wlan0", "wwan0")
    t.feed(replace(snap, routes=snap.routes + (steering_route(WLAN),)))
    t.feed(F.SaSnapshot((sa(),)))
    t.run_until(1200, answer_all())
    assert steers(t) == [] and of([o for _, o in t.log], A.Initiate, A.Terminate) == []
    assert e.view()["gateways"][GW]["route"] == WLAN.to_json()


def test_restart_reconciles_a_route_that_points_elsewhere():
    t = Transcript(Engine(Policy(), 0.0))
    snap = net("wlan0", "wwan0")
    t.feed(replace(snap, routes=snap.routes + (steering_route(WWAN),)))
    out = t.feed(F.SaSnapshot((sa(),)))
    assert of(out, A.SteerTo) == [A.SteerTo(WLAN, ROUTERS["wlan0"], Matching("keep the steering route on wlan0"))]
    assert t.engine.view()["moves"] == []  # the SA stays where it is: not a move


def test_restart_counts_the_hold_down_from_the_start():
    t = Transcript(Engine(Policy(), 0.0))
    t.feed(net("wlan0", "wwan0"))
    t.feed(F.SaSnapshot((sa(local=WWAN_IP),)))  # the SA sits on the metered uplink
    t.run_until(29.0, answer_all())
    assert moves_to(t, WLAN) == []
    t.run_until(31.0, answer_all())
    assert len(moves_to(t, WLAN)) == 1


def test_no_moves_while_charon_is_away_then_reconcile():
    t = started()
    t.feed(F.CharonLost("socket closed"))
    assert of(t.feed(link("wlan0", carrier=False)), A.SteerTo) == []
    out = t.feed(F.CharonConnected("5.9.8"))
    assert A.Resync(Matching("reconcile")) in out and of(out, A.SteerTo) == []
    out = t.feed(F.SaSnapshot((sa(),)))
    assert of(out, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], Matching("wlan0 is down"))]


def test_an_incomplete_snapshot_forgets_nothing():
    t = started()
    t.feed(F.SaSnapshot((), complete=False))
    assert [s["name"] for s in t.engine.view()["sas"]] == ["home"]
    t.feed(F.SaSnapshot((), complete=True))
    assert t.engine.view()["sas"] == []


# --- traffic, routes, addresses ------------------------------------------------------------------
def test_busy_tunnel_needs_no_probes_on_the_active_path():
    t = started()
    t0 = t.now
    for i in range(200):  # 10 s of traffic, a counter read every 50 ms
        t.run_until(t0 + 0.05 * i, answer_all())
        t.feed(F.TunnelInbound(1000 + 10 * i))
    sent = [o for at, o in t.log if at > t0 + 0.2 and isinstance(o, A.SendProbe) and o.path == WLAN]
    assert sent == []
    t.run_until(t0 + 11, answer_all())  # traffic stops: probing resumes
    assert [o for at, o in t.log if at > t0 + 10 and isinstance(o, A.SendProbe) and o.path == WLAN]


def test_traffic_that_answered_for_the_active_path_does_not_stall_its_probes():
    # float rounding: (100.07 + 0.1) - 100.07 < 0.1, so "traffic within the interval" was
    # still true at the deadline it set, and the next probe time never advanced (a hang)
    t = started()
    t.run_until(100.0, answer_all())
    t.feed(F.TunnelInbound(1000))
    t.feed(F.TunnelInbound(1010), at=100.07)
    t.run_until(100.5, answer_all())
    sent = [at for at, o in t.log if at > 100.07 and isinstance(o, A.SendProbe) and o.path == WLAN]
    assert sent[0] == 100.07 + 0.1


def test_a_failback_waiting_for_the_min_dwell_happens_at_its_end():
    # float rounding: (100.01 + 30) - 100.01 < 30, so at the recheck time the min dwell was
    # not over yet and the same recheck time was set again (a hang)
    policy = Policy(failback=Failback(hold_down=1.0, min_dwell=30.0))
    t = started(policy)
    t.run_until(100.01, answer_all())
    t.feed(link("wlan0", carrier=False))
    charon_moves(t, WWAN)
    t.feed(link("wlan0"), at=101.0)
    t.run_until(131.0, answer_all())
    assert moves_to(t, WLAN, 100.01) == [100.01 + 30.0]


def test_unrelated_routes_move_nothing():
    t = started()
    t0 = t.now
    t.feed(F.RouteChanged("10.50.0.0/16", "wwan0", ROUTERS["wwan0"]))
    t.feed(F.RouteChanged("default", "wwan0", ROUTERS["wwan0"], src=WWAN_IP, metric=10))
    t.run_until(t0 + 5, answer_all())
    t.feed(F.RouteChanged("10.50.0.0/16", "wwan0", ROUTERS["wwan0"], present=False))
    t.run_until(t0 + 60, answer_all())
    assert steers(t, t0) == []


def test_renumbered_address_is_followed():
    t = started()
    new = Path("wlan0", "10.1.0.3", GW)
    t.feed(addr("wlan0", "10.1.0.3"))
    out = t.feed(addr("wlan0", WLAN_IP, deprecated=True))
    assert of(out, A.SteerTo) == [A.SteerTo(new, ROUTERS["wlan0"], "wlan0's address changed: 10.1.0.2 -> 10.1.0.3")]
    charon_moves(t, new)
    assert t.engine.view()["moves"][-1]["outcome"] == "confirmed"


def test_our_route_removed_by_someone_is_put_back():
    t = started()
    t.feed(steering_route(WLAN))
    out = t.feed(steering_route(WLAN, present=False))
    assert of(out, A.SteerTo) == [A.SteerTo(WLAN, ROUTERS["wlan0"], Matching("keep the steering route"))]


# --- the user and the policy --------------------------------------------------------------------
def test_manual_switch_and_its_expiry():
    t = started()
    t0 = t.now
    out = t.feed(F.SwitchRequested("wwan0", until=t0 + 60))
    assert out[0] == A.Note("switch", "manual switch to wwan0 for 60 s")
    assert of(out, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], "manual switch to wwan0")]
    assert t.engine.view()["override"]["uplink"] == "wwan0"
    charon_moves(t, WWAN)
    t.run_until(t0 + 59.9, answer_all())
    assert moves_to(t, WLAN, t0) == []
    out = t.run_until(t0 + 60.1, answer_all())
    assert A.Note("switch", "manual switch to wwan0 expired; back to automatic") in out
    assert of(out, A.SteerTo) == [A.SteerTo(WLAN, ROUTERS["wlan0"], Matching("failback"))]
    assert t.engine.view()["override"] is None


def test_switch_back_to_automatic():
    t = started()
    t.feed(F.SwitchRequested("wwan0"))
    out = t.feed(F.SwitchRequested(None))
    assert out[0] == A.Note("switch", "manual switch to wwan0 ended: back to automatic")


def test_switch_to_an_unhealthy_uplink_is_refused_unless_forced():
    t = started()
    t.feed(link("wwan0", carrier=False))
    out = t.feed(F.SwitchRequested("wwan0"))
    assert out == [A.Note("switch", "switch to wwan0 refused: wwan0 is down, not up")]
    assert out[0].data == {"uplink": "wwan0", "refused": True, "why": "wwan0 is down, not up", "forcible": True}
    assert t.engine.view()["override"] is None
    out = t.feed(F.SwitchRequested("eth9"))  # forcing would not help: not forcible
    assert out[0].data["refused"] is True and out[0].data["forcible"] is False
    out = t.feed(F.SwitchRequested("wwan0", force=True))
    assert out[0].data["refused"] is False
    assert of(out, A.SteerTo) == [A.SteerTo(WWAN, ROUTERS["wwan0"], "manual switch to wwan0")]


def test_a_forced_switch_to_a_down_uplink_stays_there_without_churn():
    """Lab: the move to the forced (DOWN) target was aborted at the next decision and the
    same target chosen again: an abort, a decision and a route per fact (~500 in 10 s)."""
    t = started(Policy(classes={**Policy().classes, UplinkClass.WWAN: wwan_class(standby_interval=1.0,
                                                                                 monthly_budget_mb=0.0)}))
    kernel_routes(t)
    t.run_until(60, answer_all(dead=("wwan0",)))
    assert t.engine.view()["uplinks"]["wwan0"]["health"] == "down"
    t.feed(F.SwitchRequested("wwan0", force=True))
    t.run_until(64, answer_all(dead=("wwan0",)))  # within the confirm timeout: no retry yet
    assert moves_to(t, WWAN, 60) == [60]
    notes = [o.message for at, o in t.log if at >= 60 and isinstance(o, A.Note) and o.kind in ("decision", "move")]
    assert notes == ["manual switch to wwan0"]
    assert t.engine.view()["moves"][-1]["outcome"] == "pending"


def test_a_move_records_when_the_route_was_on_its_target():
    """route_set_at: when netlink showed our route on the target, or the decision time when
    it was already there (it stayed null: no route fact comes for a route that is there)."""
    t = started(Policy(classes={**Policy().classes, UplinkClass.WWAN: wwan_class(standby_interval=1.0,
                                                                                 monthly_budget_mb=0.0)}))
    kernel_routes(t, delay=0.002)
    t.run_until(60, answer_all(dead=("wwan0",)))
    t.feed(F.SwitchRequested("wwan0", force=True))  # wwan0 is down: the move fails, the route stays
    t.run_until(115, answer_all(dead=("wwan0",)))
    first, again = t.engine.view()["moves"][-2:]
    assert (first["decided_at"], first["route_set_at"], first["outcome"]) == (60, 60.002, "failed")
    assert again["decided_at"] == again["route_set_at"] == 110.0


def test_metered_uplink_is_the_last_resort_whatever_its_rank():
    policy = Policy(prefer=("cell", "wifi", "dock"))
    t = started(policy)
    t.run_until(200, answer_all())
    assert steers(t, 1.0) == []
    assert t.engine.view()["why"] == "wlan0 is healthy and preferred"


def test_ethernet_is_preferred_after_its_hold_down():
    t = started(names=("eth0", "wlan0", "wwan0"), warm=0.0)
    t.run_until(100, answer_all())
    at = moves_to(t, ETH)[0]
    assert 30.0 <= at < 31.0


def test_policy_reload_applies_new_timings():
    t = started()
    slow = Policy(failback=Failback(hold_down=120.0, min_dwell=120.0), source="slow.toml")
    out = t.feed(F.PolicyLoaded(slow))
    assert out[0] == A.Note("policy", "policy slow.toml in force")
    assert t.engine.view()["policy"] == "slow.toml"


def test_a_reload_to_no_budget_drops_the_budget():
    t = started()
    assert t.engine.view()["uplinks"]["wwan0"]["monthly_budget_bytes"] == 15e6
    t.feed(F.PolicyLoaded(Policy(classes={**Policy().classes, UplinkClass.WWAN: wwan_class(monthly_budget_mb=0.0)})))
    assert t.engine.view()["uplinks"]["wwan0"]["monthly_budget_bytes"] is None
    t0 = t.now
    t.run_until(t0 + 65, answer_all())  # standby probes every 30 s, none held back for tokens
    sent = [at for at, o in t.log if at > t0 and isinstance(o, A.SendProbe) and o.path == WWAN]
    assert len(sent) == 2 and sent[1] - sent[0] == 30.0, sent


def test_a_reload_replans_the_probes_already_planned():
    t = started(Policy(classes={**Policy().classes, UplinkClass.WWAN: wwan_class(monthly_budget_mb=0.0)}))
    planned = t.engine.paths[("wwan0", GW)].next_at
    t0 = t.now
    assert planned > t0 + 10  # the next 30 s standby probe
    t.feed(F.PolicyLoaded(Policy(classes={**Policy().classes,
                                          UplinkClass.WWAN: wwan_class(standby_interval=1.0, monthly_budget_mb=0.0)})))
    t.run_until(t0 + 3.5, answer_all())
    sent = [at for at, o in t.log if at > t0 and isinstance(o, A.SendProbe) and o.path == WWAN]
    assert sent == [t0 + 1.0, t0 + 2.0, t0 + 3.0]


def test_probe_bytes_are_what_the_adapter_sends():
    """An IPv4 echo probe is 36 B each way (IP 20, ICMP 8, the adapter's 8-byte token): the
    engine counted 84 (a 56-byte payload), so an idle metered standby at 30 s looked like
    14.5 MB a month instead of 6.2."""
    def wwan():
        return next(p for p in t.engine.view()["paths"] if p["path"]["uplink"] == "wwan0")
    t = started(Policy(classes={**Policy().classes, UplinkClass.WWAN: wwan_class(monthly_budget_mb=0.0)}))
    before = wwan()
    t.run_until(t.now + 60, answer_all())  # two standby probes, answered
    after = wwan()
    assert after["probes_sent"] - before["probes_sent"] == 2 and after["in_flight"] == 0
    assert after["probe_bytes_sent"] - before["probe_bytes_sent"] == 2 * 36
    assert after["probe_bytes_received"] - before["probe_bytes_received"] == 2 * 36


def test_view_is_json_and_tells_the_story():
    import json

    t = started()
    t.feed(link("wlan0", carrier=False))
    charon_moves(t, WWAN)
    doc = json.loads(json.dumps(t.engine.view()))
    assert doc["uplinks"]["wlan0"]["health"] == "down" and doc["uplinks"]["wwan0"]["metered"]
    assert doc["chosen"] == WWAN.to_json() and doc["why"] == "wwan0 is healthy and preferred"
    assert "wlan0 is down" in doc["moves"][-1]["reason"] and doc["moves"][-1]["took"] == 0.108
    assert doc["sas"][0]["vips"] == ["10.99.0.1"]
    assert doc["uplinks"]["wwan0"]["probe_bytes_sent"] > 0
