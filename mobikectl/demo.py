"""`mobikectl demo`: the README's main job, on the lab, with a readable timeline.

Until the controller exists it shows what charon does by itself: the tunnel comes up over
Wi-Fi, traffic flows through it at 100 Hz, Wi-Fi goes down, charon moves the IKE_SA to
cellular with MOBIKE (the `ike-update` event), and the gap in the traffic is measured.

The demo is a list of step functions over one context, so steps can be swapped: the
controller's demo will replace `fault_link_down` with a blackhole and add a failback.
"""

from __future__ import annotations

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
    profile: str = "stock"
    pinger: object = None
    listener: object = None
    before: dict = field(default_factory=dict)
    fault_at: float = 0.0
    moved: dict | None = None
    report: dict | None = None
    ok: bool = True


Step = Callable[[Demo], None]


def uplink_of(address: str | None) -> str:
    for u in t.UPLINKS.values():
        if u.rw_addr == address or u.rw_addr6 == address:
            return u.name + (f", behind {u.nat.upper()}" if u.nat else "")
    return "?"


def lab_up(d: Demo) -> None:
    d.tl.step(f"lab up: laptop rw with uplinks {', '.join(UPLINKS)}; gateway {t.GW_ADDR}; "
              f"protected host {t.SRV_ADDR}; rw's charon profile {d.profile}")
    parts: list[str] = []
    d.lab.up(uplinks=list(UPLINKS), profile=d.profile, progress=lambda s, secs: parts.append(f"{s} {secs:.2f}s"))
    d.tl.note(", ".join(parts) or "already up")


def show_tunnel(d: Demo) -> None:
    (sa,) = d.lab.list_sas(t.RW)
    d.before = sa
    d.tl.step(f"tunnel up: IKE_SA {sa['name']} {sa['state']} {sa['local_host']}:{sa['local_port']} "
              f"({uplink_of(sa['local_host'])}) -> {sa['remote_host']}:{sa['remote_port']}, virtual IP {sa['local_vips'][0]}")
    d.tl.note(f"IKE SPIs {sa['initiator_spi']}_i {sa['responder_spi']}_r; "
              + "; ".join(f"CHILD_SA {c['name']} SPIs {c['spi_in']}_i {c['spi_out']}_o" for c in sa["children"]))


def start_traffic(d: Demo) -> None:
    from mobikectl.lab.pinger import Pinger
    from mobikectl.lab.sas import EventListener

    vip = d.lab.vip()
    d.pinger = Pinger(d.lab, src=vip, hz=100, duration=120).start()
    d.listener = EventListener(d.lab.vici_path(t.RW))
    d.tl.step(f"traffic: ping {vip} -> {t.SRV_ADDR} at 100 Hz through the tunnel (gap meter running)")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        time.sleep(0.05)


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


def measure_gap(d: Demo) -> None:
    ok = d.lab.wait_tunnel(time.monotonic() + 10)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        time.sleep(0.05)
    d.report = r = d.pinger.stop()
    d.pinger = None
    d.tl.step(f"tunnel gap: {r['max_gap_ms']:.0f} ms (longest silence after the fault; "
              f"{r['received']}/{r['sent']} replies in {r['duration_s']:.1f} s)")
    flowing = ok and r["recovered"]
    d.tl.note(f"traffic {'flows' if flowing else 'does NOT flow'} after the move: "
              f"{r['replies_after_mark']} replies since the fault")
    d.ok = d.ok and flowing


def clear(d: Demo) -> None:
    d.lab.clear()
    d.tl.step(f"clear: {d.fault_uplink} up again, addresses and routes restored")


STEPS: list[Step] = [lab_up, show_tunnel, start_traffic, fault_link_down, observe_move, measure_gap, clear]


def run_demo(lab, steps: list[Step] = STEPS, keep: bool = False, tl: Timeline | None = None,
             profile: str = "stock") -> Demo:
    d = Demo(lab=lab, tl=tl or Timeline(), profile=profile)
    try:
        for step in steps:
            step(d)
    finally:
        if d.pinger is not None:
            d.pinger.kill()
        if d.listener is not None:
            d.listener.close()
        if not keep:
            lab.down()
            d.tl.step("lab down: namespaces, charons and state removed")
    return d


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--name", default="demo", show_default=True, help="Lab name used by the demo.")
@click.option("--keep", is_flag=True, help="Leave the lab up at the end (mobikectl lab down --name demo).")
@click.option("--profile", type=click.Choice(["stock", "controller"]), default="stock", show_default=True,
              help="rw's charon profile: stock shows charon alone (strongSwan's roaming defaults).")
def demo(name: str, keep: bool, profile: str) -> None:
    """Show charon's own MOBIKE move in the lab: tunnel up over wlan0, wlan0 down, the move
    to wwan0, the traffic gap. The lab is torn down at the end, also on Ctrl-C or errors."""
    from mobikectl.lab.api import Lab
    from mobikectl.lab.netns import require_root

    require_root("mobikectl demo")
    lab = Lab(name)
    signal.signal(signal.SIGTERM, _interrupt)  # teardown runs on SIGTERM as on Ctrl-C
    click.echo("mobikectl demo: what charon does by itself when the laptop's Wi-Fi goes down")
    d = run_demo(lab, keep=keep, profile=profile)
    r = d.report or {}
    moved = d.moved or {}
    click.echo(f"summary: uplink {d.fault_uplink} down -> charon moved to {moved.get('local-host', '-')} with MOBIKE; "
               f"tunnel gap {r.get('max_gap_ms', float('nan')):.0f} ms; "
               f"{'traffic flows' if d.ok else 'traffic does NOT flow'}")
    if not d.ok:
        raise NotOk("the tunnel did not recover after the fault")
