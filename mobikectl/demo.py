"""`mobikectl demo`: the README's main job, on the lab, with a readable timeline.

The controller's demo: lab up (wlan0 + wwan0), the controller up inside the laptop
(policies/lab.toml: the defaults with a 10 s failback hold-down), its status, a 100 Hz ping
through the tunnel, a silent blackhole of wlan0 (charon alone never recovers from it),
the move to wwan0 as a timeline from the daemon's events, the gap in tunnel traffic, the
fault cleared, the failback to wlan0 after the hold-down with the pings it lost (20 Hz),
the controller stopped, the lab down (also on Ctrl-C or SIGTERM).

`mobikectl demo --charon-alone` keeps the first demo: what charon does by itself when
wlan0 goes down (its own MOBIKE move, stock profile, no controller).

The demo is a list of step functions over one context, so steps can be swapped.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import click

from mobikectl.errors import NotOk
from mobikectl.lab import topology as t

UPLINKS = ("wlan0", "wwan0")


class Timeline:
    """Prints steps with the elapsed time since the demo started."""

    def __init__(self, out=None) -> None:
        self.t0 = time.monotonic()
        self.out = out or sys.stdout

    def at(self, when: float | None = None) -> float:
        return (when if when is not None else time.monotonic()) - self.t0

    def step(self, text: str, when: float | None = None) -> None:
        self._print(f"[{self.at(when):7.3f}s] {text}")

    def note(self, text: str) -> None:
        self._print(f"{'':11}{text}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


@dataclass
class Demo:
    lab: object
    tl: Timeline
    fault_uplink: str = "wlan0"
    standby_uplink: str = "wwan0"
    profile: str = "controller"
    policy: str | None = None
    pinger: object = None
    listener: object = None
    controller: object = None
    seqping: object = None
    before: dict = field(default_factory=dict)
    fault_at: float = 0.0
    clear_at: float = 0.0
    seq: int = 0
    moved: dict | None = None
    report: dict | None = None
    result: dict = field(default_factory=dict)
    ok: bool = True


Step = Callable[[Demo], None]


def uplink_of(address: str | None) -> str:
    for u in t.UPLINKS.values():
        if u.rw_addr == address or u.rw_addr6 == address:
            return u.name + (f", behind {u.nat.upper()}" if u.nat else "")
    return "?"


def _pause(seconds: float) -> None:  # an observation window, not a wait for a condition
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)


# --- shared steps ----------------------------------------------------------------------------
def lab_up(d: Demo) -> None:
    d.tl.step(f"lab up: laptop rw with uplinks {', '.join(UPLINKS)}; gateway {t.GW_ADDR}; "
              f"protected host {t.SRV_ADDR}; rw's charon profile {d.profile}")
    parts: list[str] = []
    d.lab.up(uplinks=list(UPLINKS), profile=d.profile, progress=lambda s, secs: parts.append(f"{s} {secs:.2f}s"))
    d.tl.note(", ".join(parts) or "already up")


def start_traffic(d: Demo) -> None:
    from mobikectl.lab.pinger import Pinger

    vip = d.lab.vip()
    d.pinger = Pinger(d.lab, src=vip, hz=100, duration=120).start()
    d.tl.step(f"traffic: ping {vip} -> {t.SRV_ADDR} at 100 Hz through the tunnel (gap meter running)")
    _pause(1.0)


def measure_gap(d: Demo) -> None:
    ok = d.lab.wait_tunnel(time.monotonic() + 10)
    _pause(1.0)
    d.report = r = d.pinger.stop()
    d.pinger = None
    gap = r["max_gap_ms"]
    d.tl.step(f"tunnel gap: {gap:.0f} ms (the longest silence between replies after the fault; "
              f"{r['received']}/{r['sent']} replies in {r['duration_s']:.1f} s)")
    flowing = ok and r["recovered"]
    d.tl.note(f"traffic {'flows' if flowing else 'does NOT flow'} after the move: "
              f"{r['replies_after_mark']} replies since the fault")
    d.result["failover"] = {**d.result.get("failover", {}), "gap_ms": gap, "recovered": flowing}
    d.ok = d.ok and flowing


# --- the controller's demo ---------------------------------------------------------------
def controller_up(d: Demo) -> None:
    from mobikectl.bench.controller import Controller

    d.controller = Controller(d.lab, d.policy)
    d.tl.step(f"controller up: mobikectl run inside rw, policy {d.policy or '(defaults)'}")
    view = d.controller.start()
    d.tl.note(f"pid {view['daemon']['pid']}, control socket {d.controller.socket}")


def show_status(d: Demo) -> None:
    v = d.controller.status()
    d.tl.step("mobikectl status:")
    for name, u in v["uplinks"].items():
        rtt = f"{u['rtt'] * 1000:.2f} ms" if u.get("rtt") is not None else "-"
        d.tl.note(f"  {name:6} {u['class']:5} {'metered' if u['metered'] else 'unmetered':9} {u['health']:7} "
                  f"rtt {rtt:8}  {', '.join(u['addresses'])}  probed every "
                  f"{u['probe_interval']:g} s active / {u['standby_interval']:g} s standby")
    for sa in v["sas"]:
        d.tl.note(f"  IKE_SA {sa['name']} {sa['state']} {sa['local']}:{sa['local_port']} ({sa['uplink']}) -> "
                  f"{sa['remote']}:{sa['remote_port']}, virtual IP {', '.join(sa['vips'])}")
    d.tl.note(f"  chosen: {v['chosen']['uplink']} ({v['why']})")
    d.before = v["sas"][0] if v["sas"] else {}


def fault_blackhole(d: Demo) -> None:
    d.seq = d.controller.last_seq()
    d.fault_at = d.pinger.mark()
    d.lab.impair(d.fault_uplink, "blackhole")
    d.tl.step(f"FAULT: {d.fault_uplink} blackholed: its router silently drops everything; link, carrier, "
              f"addresses and routes stay up (charon alone never notices)", d.fault_at)


def _timeline(d: Demo, ref: float, move: dict | None, report: dict | None, uplinks: tuple[str, ...]) -> list:
    from mobikectl.bench import timeline

    offset = time.time() - time.monotonic()
    entries = timeline.build(d.controller.events(since=d.seq), offset, ref, move, report, uplinks)
    for line in timeline.render(entries, indent="  "):
        d.tl.note(line)
    return entries


def _await_move(d: Demo, uplink: str, since: float, timeout: float, failure: str) -> dict | None:
    """The daemon's confirmed move to `uplink` decided after `since`; None (and the demo
    not ok) when none comes within `timeout`."""
    from mobikectl.bench.controller import confirmed_move_to
    from mobikectl.errors import Unavailable

    try:
        view = d.controller.wait(lambda v: confirmed_move_to(v, uplink, since) is not None,
                                 timeout, f"a move to {uplink}")
    except Unavailable as exc:
        d.ok = False
        d.tl.step(f"{failure}: {exc.message}")
        return None
    return confirmed_move_to(view, uplink, since)


def observe_failover(d: Demo) -> None:
    d.moved = _await_move(d, d.standby_uplink, d.fault_at, 10.0, "the controller did NOT move the SA")
    if d.moved is None:
        return
    measure_gap(d)
    d.tl.step("the move, t = 0 at the fault (events from the daemon, gap from the 100 Hz ping):")
    entries = _timeline(d, d.fault_at, d.moved, d.report, (d.fault_uplink,))
    sa = d.controller.status()["sas"][0]
    same = sa["spis"] == d.before.get("spis")
    d.tl.note(f"now: IKE_SA {sa['local']} ({sa['uplink']}) -> {sa['remote']}, "
              f"{'the same IKE SPIs (a MOBIKE move, no new SA)' if same else 'NEW IKE SPIs'}, "
              f"virtual IP {', '.join(sa['vips'])}")
    d.result["failover"] = {**d.result.get("failover", {}), "to": sa["uplink"], "same_ike_sa": same,
                            "timeline": [e.to_json() for e in entries]}
    d.ok = d.ok and sa["uplink"] == d.standby_uplink


def clear_and_failback(d: Demo) -> None:
    from mobikectl.bench.seqping import SeqPing

    d.seqping = SeqPing(d.lab, d.lab.vip(), hz=20).start()
    d.seq = d.controller.last_seq()
    d.clear_at = time.monotonic()
    d.lab.clear()
    d.tl.step(f"clear: {d.fault_uplink}'s router forwards again; 20 Hz ping through the tunnel counts lost pings",
              d.clear_at)
    d.tl.note(f"the controller fails back once {d.fault_uplink} answers again and stays up for the hold-down "
              f"({_hold_down(d)})")
    move = _await_move(d, d.fault_uplink, d.clear_at, 60.0, "NO failback")
    if move is None:
        return
    d.lab.wait_tunnel(time.monotonic() + 5)
    _pause(1.0)
    r = d.seqping.stop()
    d.seqping = None
    d.tl.step("the failback, t = 0 at the clear:")
    entries = _timeline(d, d.clear_at, move, None, (d.fault_uplink,))
    d.tl.note(f"pings lost during the failback: {r['lost']} of {r['sent']} at 20 Hz (target 0)")
    sas = d.controller.status()["sas"]
    d.result["failback"] = {"to": sas[0]["uplink"] if sas else None, "lost": r["lost"],
                            "sent": r["sent"], "took_ms": round(move["took"] * 1000, 1) if move.get("took") else None,
                            "timeline": [e.to_json() for e in entries]}
    d.ok = d.ok and d.result["failback"]["to"] == d.fault_uplink


def _hold_down(d: Demo) -> str:
    from mobikectl.policy.load import load_policy

    try:
        pol = load_policy(d.policy) if d.policy else None
    except Exception:  # shown only: the daemon already validated it
        pol = None
    return f"{pol.failback.hold_down:g} s" if pol else "the policy's"


def controller_down(d: Demo) -> None:
    code = d.controller.stop()
    d.controller = None
    d.tl.step(f"controller stopped (exit {code}); the steering route stays, the SA stays on {d.fault_uplink}")


STEPS: list[Step] = [lab_up, controller_up, show_status, start_traffic, fault_blackhole, observe_failover,
                     clear_and_failback, controller_down]


# --- charon alone (the first demo) ---------------------------------------------------------
def show_tunnel(d: Demo) -> None:
    (sa,) = d.lab.list_sas(t.RW)
    d.before = sa
    d.tl.step(f"tunnel up: IKE_SA {sa['name']} {sa['state']} {sa['local_host']}:{sa['local_port']} "
              f"({uplink_of(sa['local_host'])}) -> {sa['remote_host']}:{sa['remote_port']}, virtual IP {sa['local_vips'][0]}")
    d.tl.note(f"IKE SPIs {sa['initiator_spi']}_i {sa['responder_spi']}_r; "
              + "; ".join(f"CHILD_SA {c['name']} SPIs {c['spi_in']}_i {c['spi_out']}_o" for c in sa["children"]))


def listen_charon(d: Demo) -> None:
    from mobikectl.lab.sas import EventListener

    d.listener = EventListener(d.lab.vici_path(t.RW))


def fault_link_down(d: Demo) -> None:
    d.fault_at = d.pinger.mark()
    d.lab.impair(d.fault_uplink, "down")
    d.tl.step(f"FAULT: {d.fault_uplink} down (link set down; the kernel flushes its routes)", d.fault_at)


def observe_move(d: Demo) -> None:
    deadline = time.monotonic() + 10
    rekey_deadline = None
    for name, msg, at in d.listener.events(deadline):
        if name == "ike-update" and d.moved is None:
            old = next((v for v in msg.values() if isinstance(v, dict)), {})
            d.moved = msg
            d.tl.step(f"charon moved the IKE_SA with MOBIKE: ike-update {1000 * (at - d.fault_at):.0f} ms after the fault", at)
            d.tl.note(f"{old.get('local-host')}:{old.get('local-port')} ({uplink_of(old.get('local-host'))}) -> "
                      f"{msg.get('local-host')}:{msg.get('local-port')} ({uplink_of(msg.get('local-host'))}); "
                      f"gateway {msg.get('remote-host')}:{msg.get('remote-port')}")
            rekey_deadline = time.monotonic() + 2
        elif name == "child-rekey":
            child = next((v for v in msg.values() if isinstance(v, dict)), {})
            new = next(iter((child.get("child-sas") or {}).values()), {})
            d.tl.step(f"CHILD_SA rekeyed after the move (kernel-libipsec cannot update SAs in place): "
                      f"new SPIs {new.get('new', {}).get('spi-in', '?')}_i", at)
            break
        if rekey_deadline and time.monotonic() > rekey_deadline:
            break
    if d.moved is None:
        d.ok = False
        d.tl.step("charon did NOT move the IKE_SA within 10 s")
        return
    (sa,) = d.lab.list_sas(t.RW)
    same = (sa["initiator_spi"], sa["responder_spi"]) == (d.before["initiator_spi"], d.before["responder_spi"])
    d.tl.note(f"list-sas: local {sa['local_host']}:{sa['local_port']}, "
              f"{'same IKE SPIs (the same IKE_SA, no re-authentication)' if same else 'NEW IKE SPIs'}")
    d.result["failover"] = {"to": uplink_of(sa["local_host"]), "same_ike_sa": same}


def clear(d: Demo) -> None:
    d.lab.clear()
    d.tl.step(f"clear: {d.fault_uplink} up again, addresses and routes restored (charon alone stays on wwan0)")


CHARON_ALONE_STEPS: list[Step] = [lab_up, show_tunnel, start_traffic, listen_charon, fault_link_down,
                                  observe_move, measure_gap, clear]


def run_demo(lab, steps: list[Step] = STEPS, keep: bool = False, tl: Timeline | None = None,
             profile: str = "controller", policy: str | None = None) -> Demo:
    d = Demo(lab=lab, tl=tl or Timeline(), profile=profile, policy=policy)
    try:
        for step in steps:
            step(d)
    finally:
        for proc in (d.pinger, d.seqping):
            if proc is not None:
                proc.kill()
        if d.listener is not None:
            d.listener.close()
        if d.controller is not None:
            d.controller.stop()
            d.tl.step("controller stopped")
        if not keep:
            lab.down()
            d.tl.step("lab down: namespaces, charons and state removed")
    return d


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--name", default="demo", show_default=True, help="Lab name used by the demo.")
@click.option("--keep", is_flag=True, help="Leave the lab up at the end (mobikectl lab down --name demo).")
@click.option("--charon-alone", is_flag=True,
              help="The first demo instead: charon by itself (stock profile, no controller), wlan0 link down.")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Controller policy.  [default: policies/lab.toml, the defaults with a 10 s failback hold-down]")
@click.option("--json", "as_json", is_flag=True, help='Timeline on stderr; one JSON document on stdout ("schema": 1).')
def demo(name: str, keep: bool, charon_alone: bool, policy: str | None, as_json: bool) -> None:
    """The controller keeps the tunnel up: wlan0 is blackholed (no link event: charon alone
    never recovers), the controller moves the SA to wwan0 within about a second, then fails
    back after the fault is cleared and the hold-down has passed. About 40 s. The lab is
    torn down at the end, also on Ctrl-C, SIGTERM or errors."""
    from mobikectl.bench.controller import LAB_POLICY
    from mobikectl.lab.api import Lab
    from mobikectl.lab.netns import require_root

    require_root("mobikectl demo")
    lab = Lab(name)
    signal.signal(signal.SIGTERM, _interrupt)  # teardown runs on SIGTERM as on Ctrl-C
    out = sys.stderr if as_json else sys.stdout
    tl = Timeline(out)
    if charon_alone:
        print("mobikectl demo --charon-alone: what charon does by itself when the laptop's Wi-Fi goes down",
              file=out, flush=True)
        d = run_demo(lab, CHARON_ALONE_STEPS, keep=keep, tl=tl, profile="stock")
    else:
        policy = policy or str(LAB_POLICY)
        print("mobikectl demo: the controller keeps the tunnel on a working uplink when Wi-Fi dies silently",
              file=out, flush=True)
        d = run_demo(lab, STEPS, keep=keep, tl=tl, profile="controller", policy=policy)
    fo, fb = d.result.get("failover", {}), d.result.get("failback", {})
    gap = fo.get("gap_ms")
    summary = (f"summary: {d.fault_uplink} {'down' if charon_alone else 'blackholed'} -> moved to "
               f"{fo.get('to', '-')} with MOBIKE, tunnel gap {'-' if gap is None else f'{gap:.0f} ms'}")
    if not charon_alone:
        summary += (f"; failback to {fb.get('to', '-')} after the hold-down, "
                    f"{fb.get('lost', '-')} pings lost at 20 Hz")
    print(summary + f"; {'ok' if d.ok else 'FAILED'}", file=out, flush=True)
    if as_json:
        click.echo(json.dumps({"schema": 1, "mode": "charon-alone" if charon_alone else "controller",
                               "ok": d.ok, **d.result}, indent=2, sort_keys=True))
    if not d.ok:
        raise NotOk("the demo did not show what it should (see above)")
