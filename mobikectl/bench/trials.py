"""One benchmark trial per fault, for charon + mobikectl or for charon alone, and the way
back to the starting state (fault cleared, the SA on wlan0) between trials.

A fault trial: the 100 Hz gap meter runs from the virtual IP through the tunnel; it is
marked right before the fault is applied to wlan0; the trial waits (polling, deadline
30 s) for the tunnel to carry traffic again, observes one more second, and reads the
longest silence after the mark. No traffic within 30 s: not recovered (gap None).

A failback trial (controller): the fault is cleared while a 20 Hz ping counts lost
sequence numbers; the trial waits for the controller's failback to wlan0 at the policy's
hold-down and reports the pings lost and the move's time. charon alone never fails back:
its trial watches for `ALONE_FAILBACK_WATCH` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from mobikectl.bench import timeline
from mobikectl.bench.controller import Controller, confirmed_move_to, sa_uplink
from mobikectl.bench.seqping import SeqPing
from mobikectl.errors import MobikectlError, Unavailable
from mobikectl.lab import topology as t
from mobikectl.lab.pinger import Pinger

ACTIVE, STANDBY = "wlan0", "wwan0"
DEADLINE = 30.0  # not recovered after this
ALONE_FAILBACK_WATCH = 35.0  # charon alone: the default hold-down and then some
Progress = Callable[[str], None]


@dataclass
class Trial:
    setup: str  # "controller" or "alone"
    fault: str
    index: int
    gap_s: float | None = None  # None: not recovered within DEADLINE
    lost: int | None = None  # failback: pings lost at 20 Hz
    sent: int | None = None
    move_s: float | None = None  # failback: decision -> confirmation
    failed_back: bool | None = None
    phases: dict = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict:
        doc = {"setup": self.setup, "fault": self.fault, "trial": self.index, "gap_s": self.gap_s}
        if self.fault == "failback":
            doc.update(lost=self.lost, sent=self.sent, move_s=self.move_s, failed_back=self.failed_back)
        if self.phases:
            doc["phases"] = self.phases
        if self.note:
            doc["note"] = self.note
        return doc


def pause(seconds: float) -> None:
    """An observation window (not a wait for a condition)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)


def _gap(report: dict) -> float | None:
    if not report.get("recovered") or report.get("max_gap_open") or report.get("max_gap_ms") is None:
        return None
    gap = report["max_gap_ms"] / 1000
    return gap if gap <= DEADLINE else None


def _addr(uplink: str) -> str:
    return t.UPLINKS[uplink].rw_addr


def sa_local(lab) -> str | None:
    try:
        sas = lab.list_sas(t.RW)
    except MobikectlError:
        return None
    return sas[0]["local_host"] if sas else None


# --- charon + mobikectl ------------------------------------------------------------------------
def controller_fault(lab, ctl: Controller, fault: str, index: int) -> Trial:
    pinger = Pinger(lab, src=lab.vip(), hz=100, duration=DEADLINE + 20).start()
    try:
        pause(0.5)
        seq = ctl.last_seq()
        t0 = pinger.mark()
        lab.impair(ACTIVE, fault)
        move = None
        try:
            view = ctl.wait(lambda v: confirmed_move_to(v, STANDBY, t0) is not None, DEADLINE,
                            f"a move to {STANDBY}")
            move = confirmed_move_to(view, STANDBY, t0)
            lab.wait_tunnel(t0 + DEADLINE)
        except Unavailable:
            pause(max(0.0, t0 + DEADLINE - time.monotonic()))
        pause(1.0)
        report = pinger.stop()
    finally:
        pinger.kill()
    offset = time.time() - time.monotonic()
    entries = timeline.build(ctl.events(since=seq), offset, t0, move, report, (ACTIVE,))
    phases = {k: None if v is None else round(v, 4) for k, v in timeline.phases(entries).items()}
    return Trial("controller", fault, index, gap_s=_gap(report), phases=phases,
                 note="" if move else "no confirmed move")


def controller_restore(lab, ctl: Controller, policy: str, *, measure: bool, fast_policy: str | None,
                       index: int = 0, timeout: float = 120.0, progress: Progress | None = None) -> Trial | None:
    """Clear the fault and wait for the failback to wlan0 with every path up. `measure`:
    at the policy in force, counting lost pings (a failback trial). Otherwise, with
    `fast_policy`, the daemon is reloaded with a short hold-down for the wait only."""
    sp = SeqPing(lab, lab.vip(), hz=20).start() if measure else None
    try:
        if not measure and fast_policy:
            ctl.reload(fast_policy)
        t_clear = time.monotonic()
        lab.clear()
        view = ctl.wait(lambda v: sa_uplink(v) == ACTIVE and all(p["health"] == "up" for p in v["paths"]),
                        timeout, f"the failback to {ACTIVE} with every path up")
        if not measure and fast_policy:
            ctl.reload(policy)
        if not lab.wait_tunnel(time.monotonic() + 10):  # seen once or twice: repair, say so, go on
            note = "tunnel dead 10 s after the failback: rw's charon restarted"
            if progress:
                progress(f"  {note}")
            lab.restart_charon(t.RW)
            ctl.wait(lambda v: sa_uplink(v) == ACTIVE and all(p["health"] == "up" for p in v["paths"]),
                     timeout, "the controller to follow the new SA on wlan0")
            if not lab.wait_tunnel(time.monotonic() + 10):
                raise Unavailable("the tunnel carries no traffic after the failback, even after a charon restart")
        else:
            note = ""
        if sp is None:
            return None
        pause(1.0)
        r = sp.stop()
    finally:
        if sp is not None:
            sp.kill()
    move = confirmed_move_to(view, ACTIVE, t_clear)
    took = move.get("took") if move else None
    since_clear = None if not move or move.get("confirmed_at") is None else round(move["confirmed_at"] - t_clear, 3)
    return Trial("controller", "failback", index, lost=r["lost"], sent=r["sent"], move_s=took,
                 failed_back=move is not None, phases={"failback_after_clear_s": since_clear}, note=note)


# --- charon alone -------------------------------------------------------------------------------
def alone_fault(lab, fault: str, index: int) -> Trial:
    pinger = Pinger(lab, src=lab.vip(), hz=100, duration=DEADLINE + 20).start()
    try:
        pause(0.5)
        t0 = pinger.mark()
        lab.impair(ACTIVE, fault)
        back = lab.wait_tunnel(t0 + DEADLINE)
        pause(1.0 if back else 0.0)
        report = pinger.stop()
    finally:
        pinger.kill()
    local = sa_local(lab)
    where = next((u for u in (ACTIVE, STANDBY) if _addr(u) == local), local or "no SA")
    return Trial("alone", fault, index, gap_s=_gap(report), note=f"SA on {where} after the trial")


def alone_failback(lab, index: int, progress: Progress) -> Trial:
    """Move charon to wwan0 (wlan0 down), clear, and watch whether it ever goes back."""
    lab.impair(ACTIVE, "down")
    _wait_sa_on(lab, STANDBY, 10.0)
    sp = SeqPing(lab, lab.vip(), hz=20).start()
    try:
        lab.clear()
        progress(f"watching {ALONE_FAILBACK_WATCH:.0f} s for charon alone to fail back to {ACTIVE}")
        back = _wait_sa_on(lab, ACTIVE, ALONE_FAILBACK_WATCH)
        r = sp.stop()
    finally:
        sp.kill()
    return Trial("alone", "failback", index, lost=r["lost"], sent=r["sent"], failed_back=back,
                 note="" if back else f"still on {STANDBY} {ALONE_FAILBACK_WATCH:.0f} s after the clear")


def _wait_sa_on(lab, uplink: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if sa_local(lab) == _addr(uplink):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def alone_restore(lab, progress: Progress) -> str:
    """Fault cleared, the SA on wlan0 carrying traffic. charon alone stays where it is, so:
    take wwan0 down (charon moves back by itself, MOBIKE), bring it up again; if that
    does not give a working tunnel on wlan0, restart rw's charon (a fresh SA over wlan0)."""
    lab.clear()
    how = "cleared"
    if sa_local(lab) != _addr(ACTIVE):
        lab.impair(STANDBY, "down")
        _wait_sa_on(lab, ACTIVE, 10.0)
        lab.clear(STANDBY)
        how = "wwan0 down and up: charon moved back"
    if sa_local(lab) != _addr(ACTIVE) or not lab.wait_tunnel(time.monotonic() + 5):
        progress("the SA is not back on wlan0 with traffic: restarting rw's charon")
        lab.restart_charon(t.RW)
        how = "charon restarted"
    if sa_local(lab) != _addr(ACTIVE) or not lab.wait_tunnel(time.monotonic() + 10):
        raise Unavailable("charon alone: could not get the SA back on wlan0 between trials")
    return how
