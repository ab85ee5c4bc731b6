"""Carrier loss is proof an uplink is down (issue 3): the controller moves the SA on the
netlink fact itself, in every trial, also when the kernel announces the loss late.

The kernel sends the RTM_NEWLINK of a carrier change from its linkwatch work, which runs
the events of most devices (a NIC, a veth whose ifindex equals its peer's, as rw's wlan0
in the lab) at most once a second, machine-wide: a carrier loss soon after any other link
event on the machine was announced up to 1 s late, and 2 of 10 benchmark trials were
caught by the probes instead (gaps 0.73 s and 1.03 s). So every trial here comes 0.1 s
after another link event (a veth pair of the test's own in core set up and down), which
makes the kernel's notification late in most trials; the netlink adapter's link poll must
see the carrier loss anyway.

`mobikectl lab impair wlan0 carrier` takes the router's end of the veth down: rw's wlan0
stays admin-up with NO-CARRIER. Each trial: charon's SA on wwan0 within 0.5 s of the
impair command's return, the daemon's reason "carrier lost" (not the probes), then the
failback to wlan0 after the fault is cleared.
"""

from __future__ import annotations

import time

import pytest

from controller import HOLD_DOWN, WLAN, WWAN, baseline, cli, rw_sas, spis
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns

TRIALS = 10
FAILBACK_SLACK = 8.0  # s beyond the hold-down for the failback between trials
BUDGET = 0.5  # s from the impair command's return to charon's SA on wwan0 (target: ~0.12 s)
PRIME = ("mkprime0", "mkprime1")  # a veth pair in core: "another link event on the machine"


def sa_local(lab) -> str | None:
    sas = rw_sas(lab)
    return sas[0]["local_host"] if len(sas) == 1 else None


def link_event_elsewhere(lab) -> None:
    lab.exec(t.CORE, ["ip", "link", "set", PRIME[0], "up"], check=True, capture_output=True, timeout=10)
    lab.exec(t.CORE, ["ip", "link", "set", PRIME[0], "down"], check=True, capture_output=True, timeout=10)


def test_carrier_loss_moves_the_sa_at_once_in_every_trial(controller):
    ctl, lab = controller, controller.lab
    lab.exec(t.CORE, ["ip", "link", "add", PRIME[0], "type", "veth", "peer", "name", PRIME[1]],
             check=True, capture_output=True, timeout=10)
    results = []
    try:
        for trial in range(1, TRIALS + 1):
            before = ctl.wait(lambda: baseline(lab), HOLD_DOWN + FAILBACK_SLACK, f"trial {trial}: the SA on wlan0")
            ctl.wait(lambda: (st := ctl.status()) and all(u["health"] == "up" for u in st["uplinks"].values()),
                     HOLD_DOWN + FAILBACK_SLACK, f"trial {trial}: every path up")
            seq = ctl.last_seq()
            link_event_elsewhere(lab)
            time.sleep(0.1)
            cli("lab", "impair", "--name", lab.name, "wlan0", "carrier")
            returned = time.monotonic()
            moved = None
            while time.monotonic() < returned + 3.0:
                if sa_local(lab) == WWAN.rw_addr:
                    moved = time.monotonic() - returned
                    break
                time.sleep(0.005)
            events = ctl.events(since=seq)
            wlan_down = [e for e in events if e["kind"] == "probe" and e["data"].get("uplink") == WLAN.name
                         and e["data"].get("to") == "down"]
            results.append((trial, moved, [e["message"] for e in wlan_down]))
            print(f"\ntrial {trial}: SA on wwan0 {'never' if moved is None else f'{moved:.3f} s'} after the impair "
                  f"returned; {[e['message'] for e in wlan_down]}")
            assert moved is not None and moved <= BUDGET, \
                f"trial {trial}: the SA was not on wwan0 within {BUDGET} s ({moved}); {results}\n{ctl.describe()}"
            assert wlan_down and "carrier lost" in wlan_down[0]["message"], \
                f"trial {trial}: wlan0 was not taken down by the carrier loss: {wlan_down}"
            after = ctl.wait(lambda: (sas := rw_sas(lab)) and len(sas) == 1 and sas[0]["state"] == "ESTABLISHED"
                             and sas[0], 5, "the SA settled on wwan0")
            assert spis(after) == spis(before), "a new IKE_SA: the move must be MOBIKE on the same SA"
            cli("lab", "clear", "--name", lab.name, "wlan0")
    finally:
        lab.exec(t.CORE, ["ip", "link", "del", PRIME[0]], capture_output=True, timeout=10)
    worst = max(m for _, m, _ in results)
    print(f"\ncarrier trials: {len(results)}/{TRIALS} on wwan0 within {BUDGET} s; worst {worst:.3f} s")
