"""Transcripts: keeping the tunnel up (engine/recovery.py). A fallback is make before break
(the old IKE_SA goes only once a new one is up); a connection with no IKE_SA at all is
initiated again at once, then with backoff, never two Initiates in flight (K1, K9)."""

from engine_helpers import (ROUTERS, WLAN, WWAN, WWAN_IP, Matching, answer_all, kernel_routes, link, of, sa,
                            started, steering_route)

from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.engine.recovery import BACKOFF_MAX, RECONNECT_GRACE, backoff


def initiates(t, since=0.0):
    return [at for at, o in t.log if isinstance(o, A.Initiate) and at >= since]


def terminates(t, since=0.0):
    return [(at, o) for at, o in t.log if isinstance(o, A.Terminate) and at >= since]


def fall_back(t):
    """wlan0 loses carrier; charon never confirms the move: retry at +5 s, fallback at +10 s."""
    t.feed(link("wlan0", carrier=False))
    t0 = t.now
    t.run_until(t0 + 10.0, answer_all())
    assert initiates(t) == [t0 + 10.0]
    return t0


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, BACKOFF_MAX, BACKOFF_MAX]


def test_a_fallback_whose_initiate_fails_keeps_the_old_sa_and_is_tried_again_later():
    """Before: Initiate and Terminate together, so when the new SA did not come (its uplink
    dead too) the old one was gone as well and nothing initiated again: no tunnel for good."""
    t = started()
    t0 = fall_back(t)
    assert terminates(t) == []  # make before break
    out = t.feed(F.ActionFailed(A.Initiate("home", "fallback"), "timeout"))
    assert A.Note("move", Matching("move to wwan0.* failed: initiate failed: timeout")) in out
    assert of(out, A.Initiate, A.Terminate) == []
    assert ("aa", "bb") in t.engine.sas.sas and ("aa", "bb") not in t.engine.sas.retiring  # it counts again
    t.run_until(t0 + 60, answer_all())
    # after min_dwell (30 s) the SA, still on the dead wlan0, is moved again: steer, retry, fallback
    again = initiates(t, t0 + 10.5)
    assert len(again) == 1 and t0 + 10 + 30 <= again[0] <= t0 + 10 + 30 + 10.5, initiates(t)
    assert terminates(t) == []
    # this time the new SA comes: the old one is terminated, one is left
    out = t.feed(F.IkeUp(sa(local=WWAN_IP, spis=("cc", "dd"))))
    assert of(out, A.Terminate) == [A.Terminate("home", "aa", "bb", Matching("replaced by the new IKE_SA"))]
    t.feed(F.IkeDown("home", "aa", "bb"))
    assert list(t.engine.sas.sas) == [("cc", "dd")]
    t.run_until(t.now + 120, answer_all())
    assert len(initiates(t)) == 2 and len(terminates(t)) == 1


def test_a_new_sa_that_comes_after_the_move_failed_still_replaces_the_old_one():
    """The Initiate outlived the move's deadline (2 x confirm_timeout): when its SA comes up,
    the old one is terminated all the same; exactly one IKE_SA is left."""
    t = started()
    t0 = fall_back(t)
    t.run_until(t0 + 21, answer_all())
    assert t.engine.view()["moves"][-1]["outcome"] == "failed"
    assert initiates(t) == [t0 + 10.0]  # still in flight: no second one
    out = t.feed(F.IkeUp(sa(local=WWAN_IP, spis=("cc", "dd"))))
    assert of(out, A.Terminate) == [A.Terminate("home", "aa", "bb", Matching("replaced by the new IKE_SA"))]
    t.feed(F.IkeDown("home", "aa", "bb"))
    t.run_until(t.now + 60, answer_all())
    assert list(t.engine.sas.sas) == [("cc", "dd")] and len(initiates(t)) == 1


def test_no_fallback_initiate_while_the_sa_is_being_rekeyed():
    """K9: never a second initiate while a rekey is outstanding (charon would make a
    second IKE_SA beside the rekeyed one)."""
    t = started()
    t.feed(F.SaSnapshot((sa(state="REKEYING"),)))
    t.feed(link("wlan0", carrier=False))
    t0 = t.now
    out = t.run_until(t0 + 10.0, answer_all())
    assert initiates(t) == []
    assert A.Note("charon", Matching("not initiating home: an IKE_SA of it is being set up or rekeyed")) in out


def test_the_gateway_deletes_the_sa_initiate_at_once_then_with_backoff_one_at_a_time():
    t = started()
    t.feed(F.IkeDown("home", "aa", "bb"), at=40.0)
    assert initiates(t) == [40.0]
    (order,) = of([o for at, o in t.log if at == 40.0], A.Initiate)
    assert order == A.Initiate("home", Matching("home has no IKE_SA: initiating it again"))
    t.run_until(50, answer_all())
    assert initiates(t) == [40.0]  # in flight: no second one, however long it takes
    failed_at = []
    for _ in range(4):
        failed_at.append(t.now)
        t.feed(F.ActionFailed(A.Initiate("home", "x"), "timeout"))
        t.run_until(t.now + 40, answer_all())
    assert initiates(t) == [40.0] + [at + backoff(n) for n, at in enumerate(failed_at, 1)]
    assert [initiates(t)[i + 1] - failed_at[i] for i in range(4)] == [1.0, 2.0, 4.0, 8.0]
    n = len(initiates(t))
    t.feed(F.IkeUp(sa(spis=("cc", "dd"))))
    t.run_until(t.now + 300, answer_all())
    assert len(initiates(t)) == n and terminates(t) == []
    # the next loss starts the backoff over: at once again
    lost = t.now
    t.feed(F.IkeDown("home", "cc", "dd"))
    assert initiates(t, lost) == [lost]


def test_with_no_sa_the_route_is_steered_to_a_healthy_path_before_initiating_again():
    """The SA is gone and wlan0 dies silently: the route moves to wwan0 (no SA to move) and
    the next Initiate goes out after it, so the new SA uses wwan0."""
    t = started()
    kernel_routes(t)
    t.feed(steering_route(WLAN))  # netlink shows our route: the gateway stays known without an SA
    t.feed(F.IkeDown("home", "aa", "bb"), at=40.0)
    t.run_until(41.0, answer_all(dead=("wlan0",)))  # wlan0 DOWN by the probes (at +0.5 s)
    steer = [(at, o) for at, o in t.log if isinstance(o, A.SteerTo) and at > 40.0]
    assert steer and steer[0][1].path == WWAN and steer[0][1].nexthop == ROUTERS["wwan0"], steer
    t.feed(F.ActionFailed(A.Initiate("home", "x"), "timeout"))
    t.run_until(t.now + 5, answer_all(dead=("wlan0",)))
    assert initiates(t) == [40.0, initiates(t)[1]] and initiates(t)[1] > steer[0][0]
    out = t.feed(F.IkeUp(sa(local=WWAN_IP, spis=("cc", "dd"))))
    assert of(out, A.Initiate, A.Terminate) == []


def test_after_charon_reconnects_the_engine_waits_before_initiating():
    """A charon that just started may bring its SAs up itself: the engine waits
    RECONNECT_GRACE, and initiates only if none came."""
    t = started()
    t.feed(F.CharonLost("socket closed"), at=40.0)
    t.feed(F.CharonConnected("5.9.8"), at=41.0)
    t.feed(F.SaSnapshot((), conns=("home",)))
    assert initiates(t) == []
    t.run_until(41.0 + RECONNECT_GRACE, answer_all())
    assert initiates(t) == [41.0 + RECONNECT_GRACE]
    # the same, but charon's own SA comes within the grace: no Initiate
    t = started()
    t.feed(F.CharonLost("socket closed"), at=40.0)
    t.feed(F.CharonConnected("5.9.8"), at=41.0)
    t.feed(F.SaSnapshot((), conns=("home",)))
    t.feed(F.IkeUp(sa(spis=("cc", "dd"))), at=41.5)
    t.run_until(60, answer_all())
    assert initiates(t) == []


def test_a_connection_never_seen_is_not_initiated():
    """Only connections the engine has seen an IKE_SA of (or the policy names and charon
    has loaded) are kept up."""
    t = started()
    t.feed(F.SaSnapshot((), conns=("home", "other")))
    t.run_until(60, answer_all())
    assert initiates(t) == [40.0]  # home: seen before; "other": never


def test_a_charon_lost_ends_the_initiate_in_flight():
    t = started()
    t.feed(F.IkeDown("home", "aa", "bb"), at=40.0)
    t.feed(F.CharonLost("socket closed"), at=41.0)
    t.run_until(50, answer_all())
    assert initiates(t) == [40.0]
    t.feed(F.CharonConnected("5.9.8"), at=50.0)
    t.feed(F.SaSnapshot((), conns=("home",)))
    t.run_until(60, answer_all())
    assert initiates(t) == [40.0, 50.0 + RECONNECT_GRACE]


def test_the_grace_is_only_for_an_sa_missing_when_charon_connects():
    """The daemon (not charon) just started: the SA is there; the gateway deletes it 0.5 s
    later: initiated at once (the lab test saw a 1.2 s wait when the grace counted from the
    connection)."""
    t = started()
    t.feed(F.CharonConnected("5.9.8"), at=40.0)
    t.feed(F.SaSnapshot((sa(),), conns=("home",)))
    t.feed(F.IkeDown("home", "aa", "bb"), at=40.5)
    assert initiates(t) == [40.5]
