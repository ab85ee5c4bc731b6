"""The tunnel comes back by itself (K1, K9): when the gateway deletes the IKE_SA, the
controller initiates it again at once, and the gateway ends with exactly one IKE_SA.

Before, nothing initiated a connection whose SA was gone: after the gateway deleted it (or
a fallback's new SA never came and the old one had already been terminated), the tunnel
stayed down until someone ran `swanctl --initiate`.
"""

from __future__ import annotations

import time

import pytest

from controller import WLAN, baseline, rw_sas, spis
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns

DEADLINE = 15.0  # s from the gateway's terminate to traffic through a new SA (the lab: ~0.1 s)


def test_the_gateway_deletes_the_sa_and_the_controller_initiates_it_again(controller):
    ctl, lab = controller, controller.lab
    before = baseline(lab)
    assert before, "the test must start with the SA on wlan0"
    seq = ctl.last_seq()

    t0 = time.monotonic()
    done = lab.exec(t.GW, ["swanctl", "--terminate", "--ike", t.CONN, "--timeout", "5",
                           "--uri", f"unix://{lab.vici_path(t.GW)}"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr

    def back():
        sas = rw_sas(lab)
        if len(sas) != 1 or spis(sas[0]) == spis(before) or sas[0]["state"] != "ESTABLISHED":
            return None
        return sas[0] if lab.tunnel_ok(count=1) else None

    after = ctl.wait(back, DEADLINE, "a new IKE_SA carrying traffic after the gateway deleted the old one")
    took = time.monotonic() - t0
    print(f"\ngateway terminated the SA: traffic through a new one after {took:.2f} s (incl. the terminate)")

    assert after["local_host"] == WLAN.rw_addr, "the new SA must use the best healthy path (wlan0)"
    assert after["local_vips"] == before["local_vips"], "charon gave another virtual IP"
    gw_sas = lab.list_sas(t.GW)
    assert [spis(sa) for sa in gw_sas] == [spis(after)], f"the gateway must hold exactly the new IKE_SA: {gw_sas}"

    events = ctl.events(since=seq)
    initiated = [e for e in events if e["kind"] == "charon" and "initiat" in e["message"]]
    assert not [e for e in events if "initiate home failed" in e["message"]], initiated
    st = ctl.wait(lambda: (s := ctl.status()) and s["sas"] and tuple(s["sas"][0]["spis"]) == spis(after) and s,
                  5, "status showing the new SA")
    assert len(st["sas"]) == 1 and st["sas"][0]["uplink"] == WLAN.name

    # it stays that way: no second initiate, no second SA
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert [spis(sa) for sa in rw_sas(lab)] == [spis(after)], rw_sas(lab)
        time.sleep(0.2)
    assert [spis(sa) for sa in lab.list_sas(t.GW)] == [spis(after)]
