"""The controller in the lab, as a user runs it: real kernel, real charon on both ends.

`mobikectl run` in rw (tests/netns/controller.py starts it through `mobikectl lab exec`),
faults through `mobikectl lab impair`, the daemon's view through `mobikectl status/events
--json`, charon's own view through list-sas on both ends. The lab is `mobike_lab` (wlan0
preferred, wwan0 metered), the policy policies/default.toml with a 5 s hold-down and min
dwell. Every test starts and ends with the one SA on wlan0 carrying traffic.

Deadlines are generous (the benchmark measures the real figures); nothing sleeps blindly:
"no move during N s" is an observation window that fails at the first move it sees.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Callable

import pytest

from controller import (
    HOLD_DOWN, MOBIKECTL, TEST_ROUTE, WLAN, WWAN, baseline, cli, cli_env, settled_sa, spis,
    steering_routes,
)
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns

FAILOVER_BUDGET = 10.0  # s from the fault to traffic through wwan0 (the target is ~1 s)
FAILBACK_SLACK = 8.0    # s beyond the hold-down: wlan0 seen up again (1 s standby probe, 3 answers) + the move


def impair(lab, uplink: str, kind: str, *arg: str) -> None:
    cli("lab", "impair", "--name", lab.name, uplink, kind, *arg)


def clear(lab, uplink: str | None = None) -> None:
    cli("lab", "clear", "--name", lab.name, *([uplink] if uplink else []))


def route_to(uplink) -> str:
    return f"{t.GW_ADDR} via {uplink.router_addr} dev {uplink.name} src {uplink.rw_addr}"


def moves_since(status: dict, since: float) -> list[dict]:
    return [m for m in status["moves"] if m["decided_at"] >= since]


def move_events(events: list[dict]) -> list[dict]:
    """Events that are a move or a decision to move (a decision to stay has data.stay)."""
    return [e for e in events if e["kind"] == "move" or (e["kind"] == "decision" and "to" in e["data"])]


def fail_over(ctl, kind: str, *, confirmed: bool = True) -> tuple[dict, dict]:
    """Impair wlan0 with `kind`; traffic must be back through wwan0 on the same IKE_SA.
    Returns (the SA before, the daemon's status after)."""
    lab = ctl.lab
    before = baseline(lab)
    assert before, "the test must start with the SA on wlan0"
    n_moves = len(ctl.status()["moves"])

    t0 = time.monotonic()
    impair(lab, "wlan0", kind)
    ctl.wait(lambda: settled_sa(lab, local=WWAN.rw_addr) and lab.tunnel_ok(count=1), FAILOVER_BUDGET,
             f"traffic from the virtual IP through wwan0 after wlan0 {kind}")
    print(f"\nwlan0 {kind}: traffic through wwan0 after {time.monotonic() - t0:.2f} s (incl. the impair command)")

    after = settled_sa(lab, local=WWAN.rw_addr)
    assert spis(after) == spis(before), "a new IKE_SA: the move must be MOBIKE on the same SA"
    assert after["local_vips"] == before["local_vips"]
    assert [spis(sa) for sa in lab.list_sas(t.GW)] == [spis(before)], "the gateway must hold one IKE_SA, the same"
    assert route_to(WWAN) in steering_routes(lab)

    def shown():
        st = ctl.status()
        if not st or not st["sas"] or st["sas"][0]["uplink"] != WWAN.name or len(st["moves"]) <= n_moves:
            return None
        if confirmed and st["moves"][-1]["outcome"] != "confirmed":
            return None
        return st

    st = ctl.wait(shown, 10, f"status showing the SA on wwan0 and the move{' confirmed' if confirmed else ''}")
    (sa,) = st["sas"]
    assert tuple(sa["spis"]) == spis(before) and sa["vips"] == before["local_vips"]
    move = st["moves"][n_moves]
    assert (move["from"]["uplink"], move["to"]["uplink"]) == (WLAN.name, WWAN.name), move
    assert WLAN.name in move["reason"], move  # the reason names what went wrong
    assert st["chosen"]["uplink"] == WWAN.name
    return before, st


def wait_failback(ctl, cleared_at: float, before: dict) -> dict:
    """After wlan0 is cleared at `cleared_at` (monotonic, shared with the daemon): back on
    wlan0 not before the hold-down, and within the hold-down and a few seconds."""
    lab = ctl.lab
    deadline = HOLD_DOWN + FAILBACK_SLACK
    ctl.wait(lambda: settled_sa(lab, local=WLAN.rw_addr), deadline, "the failback to wlan0")
    back_at = time.monotonic()
    assert back_at - cleared_at >= HOLD_DOWN, \
        f"failback {back_at - cleared_at:.2f} s after wlan0 recovered: before the hold-down ({HOLD_DOWN:g} s)"
    assert ctl.wait(lambda: lab.tunnel_ok(count=1), 5, "traffic after the failback")
    after = settled_sa(lab, local=WLAN.rw_addr)
    assert spis(after) == spis(before), "the failback must be a MOBIKE move of the same SA"

    st = ctl.wait(lambda: (s := ctl.status()) and s["moves"] and s["moves"][-1]["to"]["uplink"] == WLAN.name
                  and s["moves"][-1]["outcome"] == "confirmed" and s, 5, "status showing the confirmed failback")
    fb = st["moves"][-1]
    assert "failback" in fb["reason"], fb
    assert fb["decided_at"] - cleared_at >= HOLD_DOWN
    wlan_path = next(p for p in st["paths"] if p["path"]["uplink"] == WLAN.name and p["path"]["gateway"] == t.GW_ADDR)
    assert fb["decided_at"] - wlan_path["up_since"] >= HOLD_DOWN - 0.01, (fb, wlan_path)
    print(f"\nfailback {back_at - cleared_at:.2f} s after wlan0 recovered (hold-down {HOLD_DOWN:g} s)")
    return st


def observe_no_move(ctl, seconds: float, sa: dict, during: Callable[[], None] = lambda: None) -> None:
    """For `seconds`, poll status (and run `during` between polls): fail at the first move
    or the first change of the SA."""
    lab = ctl.lab
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        during()
        st = ctl.status()
        assert st is not None, f"the daemon stopped answering\n{ctl.describe()}"
        assert not st["moves"], f"moved: {st['moves']}"
        assert [(tuple(s["spis"]), s["uplink"]) for s in st["sas"]] == [(spis(sa), WLAN.name)], st["sas"]
    now = settled_sa(lab, local=WLAN.rw_addr)
    assert now and spis(now) == spis(sa), f"charon's SA changed: {now}"


# --- failover ----------------------------------------------------------------------------

def test_blackhole_moves_the_sa_to_wwan0_with_mobike(controller):
    """K5: the Wi-Fi router drops everything while the link stays up (charon alone never
    notices): traffic is back through wwan0, same IKE_SA and virtual IP, and status says why."""
    before, st = fail_over(controller, "blackhole")
    assert st["uplinks"]["wlan0"]["health"] == "down" and st["uplinks"]["wlan0"]["carrier"] is True
    moved = [e for e in move_events(controller.events()) if e["kind"] == "move"]
    assert moved and moved[-1]["data"]["to"]["uplink"] == WWAN.name, moved


def test_carrier_loss_moves_the_sa_to_wwan0_with_mobike(controller):
    """K1: wlan0 stays admin-up but loses carrier."""
    before, st = fail_over(controller, "carrier")
    assert st["uplinks"]["wlan0"]["carrier"] is False and st["uplinks"]["wlan0"]["health"] == "down"


def test_link_down_brings_traffic_back_on_wwan0_same_sa(controller):
    """K1: wlan0 admin-down (charon sees it too and may move by itself): traffic is back
    through wwan0 on the same IKE_SA, and the daemon shows the SA on wwan0 and its decision."""
    fail_over(controller, "down", confirmed=False)


def test_link_down_move_is_confirmed_whatever_gateway_address_charon_picks(controller):
    """After wlan0 goes down, the controller's account of the move ends 'confirmed' (no retry,
    no fallback, no failed move), whichever of the gateway's addresses charon moved to."""
    lab = controller.lab
    before = baseline(lab)
    seq = controller.last_seq()
    t0 = time.monotonic()
    impair(lab, "wlan0", "down")
    controller.wait(lambda: settled_sa(lab, local=WWAN.rw_addr) and lab.tunnel_ok(count=1), FAILOVER_BUDGET,
                    "traffic through wwan0")
    # an observation window past the move's confirm timeout (5 s) and its retry
    end = t0 + 12.0
    while time.monotonic() < end:
        st = controller.status()
        wrong = [m for m in st["moves"] if m["outcome"] not in ("confirmed", "pending")]
        assert not wrong, f"remote now {settled_sa(lab)['remote_host']}: {[m['history'] for m in wrong]}"
    assert spis(settled_sa(lab, local=WWAN.rw_addr)) == spis(before)
    assert st["moves"] and all(m["outcome"] == "confirmed" for m in st["moves"]), \
        [(m["to"], m["outcome"], m["history"]) for m in st["moves"]]
    assert not [e for e in controller.events(since=seq) if e["kind"] == "move" and "fallback" in e["message"]]


# --- failback and flapping ---------------------------------------------------------------

def test_recovery_fails_back_to_wlan0_after_the_hold_down(controller):
    """K2: established on wlan0, wlan0 blackholed (moved to wwan0), cleared: back on wlan0
    after the hold-down, not before, with the same SA."""
    before, _ = fail_over(controller, "blackhole")
    clear(controller.lab, "wlan0")
    cleared_at = time.monotonic()
    wait_failback(controller, cleared_at, before)
    assert route_to(WLAN) in steering_routes(controller.lab)


def test_flapping_wlan0_moves_at_most_once_per_hold_down(controller):
    """K2: wlan0 blackholed and cleared every 2 s for 20 s (it is never up for the 5 s
    hold-down): at most one move per hold-down, whatever the direction; at least the first
    move away; after the flapping, the failback after the hold-down."""
    ctl, lab = controller, controller.lab
    before = baseline(lab)
    seq = ctl.last_seq()
    start = time.monotonic()
    impaired = False
    cleared_at = start  # when wlan0 was last cleared (taken just before the command: a lower bound)
    for k in range(10):  # the test drives the fault on a 2 s schedule
        tick = start + 2.0 * k
        time.sleep(max(0.0, tick - time.monotonic()))
        ctl.assert_running()
        if impaired:
            cleared_at = time.monotonic()
            clear(lab, "wlan0")
        else:
            impair(lab, "wlan0", "blackhole")
        impaired = not impaired
    time.sleep(max(0.0, start + 20.0 - time.monotonic()))
    if impaired:
        cleared_at = time.monotonic()
        clear(lab, "wlan0")

    st = ctl.status()
    flapping = moves_since(st, start)
    summary = [(round(m["decided_at"] - start, 2), m["to"]["uplink"], m["outcome"], m["reason"]) for m in flapping]
    print(f"\nmoves while flapping (s after the first blackhole, to, outcome, why): {summary}")
    assert flapping, f"no move at all while wlan0 was blackholed\n{ctl.describe()}"
    assert flapping[0]["to"]["uplink"] == WWAN.name
    confirmed = [e for e in ctl.events(since=seq) if e["kind"] == "move" and "took_ms" in e["data"]]
    assert len(confirmed) == len([m for m in flapping if m["outcome"] == "confirmed"]), summary
    for a, b in zip(flapping, flapping[1:]):
        assert b["decided_at"] - a["decided_at"] >= HOLD_DOWN, \
            f"two moves {b['decided_at'] - a['decided_at']:.2f} s apart (hold-down {HOLD_DOWN:g} s): {summary}"

    st = wait_failback(ctl, cleared_at, before)
    assert st["moves"][-1]["decided_at"] - flapping[-1]["decided_at"] >= HOLD_DOWN


# --- things that must not move the SA -------------------------------------------------------

def test_unrelated_route_churn_moves_nothing(controller, tmp_path):
    """K8: a route the controller does not care about, added and removed every second for
    10 s: the daemon sees every change (recorded facts), and nothing moves."""
    ctl, lab = controller, controller.lab
    recording = tmp_path / "facts.jsonl"
    ctl.stop()
    ctl.start("--record", str(recording))
    sa = baseline(lab)
    seq = ctl.last_seq()
    ours = steering_routes(lab)
    assert ours == [route_to(WLAN)]

    state = {"next": time.monotonic(), "present": False, "changes": 0}

    def churn():
        if time.monotonic() < state["next"]:
            return
        verb = "del" if state["present"] else "add"
        argv = ["ip", "route", verb, TEST_ROUTE] + ([] if state["present"] else ["via", WLAN.router_addr, "dev", "wlan0"])
        done = lab.exec(t.RW, argv, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        state["present"] = not state["present"]
        state["changes"] += 1
        state["next"] += 1.0

    observe_no_move(ctl, 10.0, sa, during=churn)
    if state["present"]:
        lab.exec(t.RW, ["ip", "route", "del", TEST_ROUTE], check=True, timeout=10)

    assert not move_events(ctl.events(since=seq)), [e["message"] for e in move_events(ctl.events(since=seq))]
    assert steering_routes(lab) == ours
    seen = [json.loads(line)["fact"] for line in recording.read_text().splitlines() if TEST_ROUTE in line]
    seen = [f for f in seen if f["type"] == "RouteChanged" and f["dst"] == TEST_ROUTE]
    assert len(seen) >= state["changes"] - 1 >= 8, \
        f"the daemon saw {len(seen)} of {state['changes']} route changes: the test proves nothing"


def test_controller_restart_moves_nothing_and_adopts_its_route(controller):
    """A restarted controller finds the SA where the policy wants it: no move, the steering
    route left on stop is still there and is the new daemon's."""
    ctl, lab = controller, controller.lab
    sa = baseline(lab)
    first = ctl.status()
    ours = steering_routes(lab)
    assert ours == [route_to(WLAN)]

    assert ctl.stop() == 0, f"SIGTERM must end the daemon cleanly\n{ctl.log_tail()}"
    assert steering_routes(lab) == ours, "the steering route must stay on stop (--on-exit keep)"
    assert spis(settled_sa(lab, local=WLAN.rw_addr)) == spis(sa)

    st = ctl.start().status()
    assert st["daemon"]["pid"] != first["daemon"]["pid"]
    observe_no_move(ctl, HOLD_DOWN + 2.0, sa)
    assert not move_events(ctl.events()), [e["message"] for e in move_events(ctl.events())]
    assert steering_routes(lab) == ours
    gw = ctl.status()["gateways"][t.GW_ADDR]
    assert gw["route"]["uplink"] == WLAN.name and gw["route_seen"] is True, gw


def test_controller_restart_while_failed_over_stays_on_wwan0(controller):
    """Restarted while wlan0 is still blackholed: the SA stays on wwan0 (where the policy
    wants it); after wlan0 recovers, the usual failback after the hold-down."""
    ctl, lab = controller, controller.lab
    before, _ = fail_over(ctl, "blackhole")
    ours = steering_routes(lab)
    assert route_to(WWAN) in ours
    assert ctl.stop() == 0
    ctl.start(ready=False)
    ctl.wait_ready(all_up=False)
    end = time.monotonic() + HOLD_DOWN
    while time.monotonic() < end:
        st = ctl.status()
        assert not st["moves"], f"moved after a restart: {st['moves']}"
        assert [(tuple(s["spis"]), s["uplink"]) for s in st["sas"]] == [(spis(before), WWAN.name)], st["sas"]
    assert st["uplinks"]["wlan0"]["health"] == "down", st["uplinks"]["wlan0"]
    assert route_to(WWAN) in steering_routes(lab)
    assert settled_sa(lab, local=WWAN.rw_addr)

    clear(lab, "wlan0")
    wait_failback(ctl, time.monotonic(), before)


# --- charon restarted ----------------------------------------------------------------------

def test_charon_restart_controller_reconnects_and_keeps_steering(controller):
    """charon restarted (configs reloaded, the tunnel initiated again): the daemon reconnects,
    shows the new SA, and a blackhole of wlan0 afterwards still moves it to wwan0."""
    ctl, lab = controller, controller.lab
    old = baseline(lab)
    seq = ctl.last_seq()
    cli("lab", "restart-charon", "--name", lab.name, "rw")

    def reconnected():
        st = ctl.status()
        if not st or not st["charon"]["connected"] or len(st["sas"]) != 1:
            return None
        sa = st["sas"][0]
        if sa["state"] != "ESTABLISHED" or tuple(sa["spis"]) == spis(old) or sa["uplink"] != WLAN.name:
            return None
        return st

    st = ctl.wait(reconnected, 20, "status showing charon connected again and the new SA")
    new = ctl.wait(lambda: baseline(lab), 10, "the new SA on wlan0 carrying traffic")
    assert tuple(st["sas"][0]["spis"]) == spis(new)
    messages = [e["message"] for e in ctl.events(since=seq) if e["kind"] == "charon"]
    assert any(re.search(r"charon lost", m) for m in messages), messages
    assert any(re.search(r"connected", m) for m in messages), messages

    ctl.wait(lambda: (s := ctl.status()) and all(u["health"] == "up" for u in s["uplinks"].values()),
             10, "both uplinks healthy after the restart")
    fail_over(ctl, "blackhole")


# --- bad input, as a user meets it -----------------------------------------------------------

def run_in_rw(lab, tmp_path, *args: str):
    return cli("lab", "exec", "--name", lab.name, t.RW, "--", "mobikectl", "run",
               "--socket", str(tmp_path / "never.sock"), *args, check=False, timeout=30)


def one_line_error(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, f"expected one line, got:\n{done.stderr}"
    assert lines[0].startswith("mobikectl: error: "), lines[0]
    return lines[0]


def test_run_with_a_broken_policy_exits_65_naming_file_and_key(mobike_lab, ctl_policy, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(ctl_policy.read_text().replace("fall = 2", "fall = 0", 1))
    done = run_in_rw(mobike_lab, tmp_path, "--policy", str(bad))
    line = one_line_error(done)
    assert done.returncode == 65, done.stderr
    assert str(bad) in line and "classes.ethernet.probe.fall" in line, line


def test_run_without_charon_exits_69_saying_what_to_do(mobike_lab, tmp_path):
    done = run_in_rw(mobike_lab, tmp_path, "--vici", "/nonexistent", "--charon-wait", "0")
    line = one_line_error(done)
    assert done.returncode == 69, done.stderr
    assert "/nonexistent" in line and "--vici" in line, line


def test_a_second_daemon_on_the_same_charon_exits_69(controller, tmp_path):
    done = run_in_rw(controller.lab, tmp_path, "--charon-wait", "0")
    line = one_line_error(done)
    assert done.returncode == 69, done.stderr
    assert "already manages charon" in line, line
    controller.assert_running()


def test_run_as_a_non_root_user_exits_77(lab_env, non_root_runs, tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv missing (apt-get install util-linux)")
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", MOBIKECTL, "run",
         "--socket", str(tmp_path / "never.sock")],
        capture_output=True, text=True, env=cli_env(), timeout=30)
    line = one_line_error(done)
    assert done.returncode == 77, done.stderr
    assert "root" in line, line
